//! Host tests of the ramfs: every call's answers, in Linux's error numbers, and the counts
//! (inodes, pages) that show nothing leaks.

use super::*;
use crate::fs::pages::HeapPages;

fn fresh() -> (RamFs, &'static HeapPages) {
    fresh_with(Limits::default())
}

fn fresh_with(limits: Limits) -> (RamFs, &'static HeapPages) {
    // Each test its own source, so the counts of parallel tests do not mix.
    let pages: &'static HeapPages = Box::leak(Box::new(HeapPages::new()));
    (RamFs::new(pages, limits), pages)
}

fn create(fs: &RamFs, path: &str) -> Arc<OpenFile> {
    fs.open(path, O_RDWR | O_CREAT, 0o644)
        .unwrap_or_else(|e| panic!("create {path}: {e}"))
}

fn read_to_end(file: &OpenFile) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1000];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// The (name, d_type, d_ino) of every record, checking each record's layout on the way.
fn parse_dirents(buf: &[u8]) -> Vec<(String, u8, u64)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let ino = u64::from_ne_bytes(buf[at..at + 8].try_into().unwrap());
        let reclen = u16::from_ne_bytes(buf[at + 16..at + 18].try_into().unwrap()) as usize;
        assert_eq!(reclen % 8, 0, "record length {reclen} not a multiple of 8");
        let name_bytes = &buf[at + 19..at + reclen];
        let nul = name_bytes
            .iter()
            .position(|&b| b == 0)
            .expect("name NUL-terminated");
        out.push((
            String::from_utf8(name_bytes[..nul].to_vec()).unwrap(),
            buf[at + 18],
            ino,
        ));
        at += reclen;
    }
    out
}

#[test]
fn write_then_read_back_across_pages() {
    let (fs, _) = fresh();
    let file = create(&fs, "/data");
    let bytes: Vec<u8> = (0..3 * PAGE_SIZE + 123)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    assert_eq!(file.write(&bytes), Ok(bytes.len()));
    assert_eq!(file.size(), bytes.len() as u64);
    assert_eq!(file.seek(0, SEEK_SET), Ok(0));
    assert_eq!(read_to_end(&file), bytes);
    assert_eq!(fs.read_all("/data").unwrap(), bytes);
    assert_eq!(fs.usage().pages, 4);
}

#[test]
fn two_opens_have_their_own_offsets_and_append_writes_at_the_end() {
    let (fs, _) = fresh();
    let a = create(&fs, "/f");
    a.write(b"hello").unwrap();
    let b = fs.open("/f", O_RDONLY, 0).unwrap();
    let mut buf = [0u8; 3];
    assert_eq!(b.read(&mut buf), Ok(3));
    assert_eq!(&buf, b"hel");
    let c = fs.open("/f", O_WRONLY | O_APPEND, 0).unwrap();
    a.seek(0, SEEK_SET).unwrap();
    c.write(b"!!").unwrap();
    assert_eq!(fs.read_all("/f").unwrap(), b"hello!!");
    assert_eq!(b.read(&mut buf), Ok(3));
    assert_eq!(&buf, b"lo!");
}

#[test]
fn seek_whences_and_holes() {
    let (fs, _) = fresh();
    let f = create(&fs, "/sparse");
    assert_eq!(f.seek(2 * PAGE_SIZE as i64 + 10, SEEK_SET), Ok(8202));
    f.write(b"x").unwrap();
    assert_eq!(f.size(), 8203);
    assert_eq!(fs.usage().pages, 1, "a hole takes no page");
    let all = fs.read_all("/sparse").unwrap();
    assert!(all[..8202].iter().all(|&b| b == 0));
    assert_eq!(all[8202], b'x');
    assert_eq!(f.seek(-3, SEEK_END), Ok(8200));
    assert_eq!(f.seek(2, SEEK_CUR), Ok(8202));
    assert_eq!(f.seek(-9000, SEEK_CUR).err(), Some(Errno::EINVAL));
    assert_eq!(f.seek(0, 7).err(), Some(Errno::EINVAL));
}

#[test]
fn truncate_frees_pages_and_zeroes_the_cut_tail() {
    let (fs, pages) = fresh();
    fs.write_all("/t", &[0xaa; 3 * PAGE_SIZE]).unwrap();
    assert_eq!(pages.outstanding(), 3);
    let f = fs.open("/t", O_RDWR | O_TRUNC, 0).unwrap();
    assert_eq!(f.size(), 0);
    assert_eq!(pages.outstanding(), 0);
    f.write(&[1; 10]).unwrap();
    f.seek(100, SEEK_SET).unwrap();
    f.write(&[2]).unwrap();
    let all = fs.read_all("/t").unwrap();
    assert_eq!(all.len(), 101);
    assert!(all[10..100].iter().all(|&b| b == 0), "old bytes came back");
}

#[test]
fn access_modes_are_enforced() {
    let (fs, _) = fresh();
    fs.write_all("/f", b"abc").unwrap();
    let ro = fs.open("/f", O_RDONLY, 0).unwrap();
    assert_eq!(ro.write(b"x").err(), Some(Errno::EBADF));
    let wo = fs.open("/f", O_WRONLY, 0).unwrap();
    assert_eq!(wo.read(&mut [0; 4]).err(), Some(Errno::EBADF));
    assert_eq!(fs.open("/f", 3, 0).err(), Some(Errno::EINVAL));
    // O_TRUNC with O_RDONLY leaves the file alone, as Linux does on a regular file.
    fs.open("/f", O_RDONLY | O_TRUNC, 0).unwrap();
    assert_eq!(fs.read_all("/f").unwrap(), b"abc");
}

#[test]
fn path_errors_are_linuxs() {
    let (fs, _) = fresh();
    fs.mkdir("/d").unwrap();
    fs.write_all("/d/f", b"1").unwrap();
    let long = "x".repeat(256);
    let cases: &[(&str, u32, Errno)] = &[
        ("/missing", O_RDONLY, Errno::ENOENT),
        ("/missing/f", O_RDWR | O_CREAT, Errno::ENOENT),
        ("/d/f/g", O_RDONLY, Errno::ENOTDIR),
        ("/d/f/", O_RDONLY, Errno::ENOTDIR),
        ("/d/f", O_RDONLY | O_DIRECTORY, Errno::ENOTDIR),
        ("/d", O_WRONLY, Errno::EISDIR),
        ("/d", O_RDONLY | O_CREAT, Errno::EISDIR),
        ("/", O_RDWR | O_CREAT, Errno::EISDIR),
        ("/d/new/", O_RDWR | O_CREAT, Errno::EISDIR),
        ("/d/f", O_RDWR | O_CREAT | O_EXCL, Errno::EEXIST),
        ("", O_RDONLY, Errno::ENOENT),
    ];
    for &(path, flags, errno) in cases {
        assert_eq!(
            fs.open(path, flags, 0).err(),
            Some(errno),
            "open({path:?}, {flags:#o})"
        );
    }
    assert_eq!(
        fs.open(&format!("/{long}"), O_RDONLY, 0).err(),
        Some(Errno::ENAMETOOLONG)
    );
    let name255 = format!("/{}", "y".repeat(255));
    create(&fs, &name255);
    let deep = "/a".repeat(PATH_MAX / 2);
    assert_eq!(fs.open(&deep, O_RDONLY, 0).err(), Some(Errno::ENAMETOOLONG));
    // Dots resolve; `..` at the root stays there.
    assert_eq!(fs.read_all("/d/./../d/f").unwrap(), b"1");
    assert_eq!(fs.read_all("/../../d/f").unwrap(), b"1");
    assert_eq!(
        fs.read_all("d/f").unwrap(),
        b"1",
        "relative paths start at the root"
    );
    assert_eq!(fs.read_all("/d").err(), Some(Errno::EISDIR));
}

#[test]
fn mkdir_unlink_rmdir_answer_as_linux_does() {
    let (fs, _) = fresh();
    fs.mkdir("/d").unwrap();
    assert_eq!(fs.mkdir("/d").err(), Some(Errno::EEXIST));
    assert_eq!(fs.mkdir("/").err(), Some(Errno::EEXIST));
    assert_eq!(fs.mkdir("/d/.").err(), Some(Errno::EEXIST));
    assert_eq!(fs.mkdir("/x/y").err(), Some(Errno::ENOENT));
    fs.write_all("/d/f", b"1").unwrap();
    assert_eq!(fs.mkdir("/d/f/g").err(), Some(Errno::ENOTDIR));
    assert_eq!(fs.unlink("/d").err(), Some(Errno::EISDIR));
    assert_eq!(fs.unlink("/").err(), Some(Errno::EISDIR));
    assert_eq!(fs.unlink("/d/nope").err(), Some(Errno::ENOENT));
    assert_eq!(fs.rmdir("/d").err(), Some(Errno::ENOTEMPTY));
    assert_eq!(fs.rmdir("/d/f").err(), Some(Errno::ENOTDIR));
    assert_eq!(fs.rmdir("/").err(), Some(Errno::EBUSY));
    assert_eq!(fs.rmdir("/d/.").err(), Some(Errno::EINVAL));
    fs.unlink("/d/f").unwrap();
    assert_eq!(fs.unlink("/d/f").err(), Some(Errno::ENOENT));
    fs.rmdir("/d").unwrap();
    assert_eq!(fs.stat("/d").err(), Some(Errno::ENOENT));
    assert_eq!(fs.usage().inodes, 1, "only the root is left");
    fs.mkdir_all("/p/q/r").unwrap();
    fs.mkdir_all("/p/q/r").unwrap();
    assert_eq!(fs.stat("/p/q/r").unwrap().0, FileKind::Directory);
}

#[test]
fn an_unlinked_open_file_keeps_its_bytes_until_closed() {
    let (fs, pages) = fresh();
    let f = create(&fs, "/f");
    f.write(&[5; 5000]).unwrap();
    fs.unlink("/f").unwrap();
    assert_eq!(fs.stat("/f").err(), Some(Errno::ENOENT));
    f.seek(0, SEEK_SET).unwrap();
    assert_eq!(read_to_end(&f), vec![5; 5000]);
    assert_eq!(pages.outstanding(), 2);
    drop(f);
    assert_eq!(pages.outstanding(), 0);
    assert_eq!(
        fs.usage(),
        Usage {
            inodes: 1,
            pages: 0,
            source_outstanding: 0
        }
    );
}

#[test]
fn getdents64_lists_dot_dotdot_and_entries_in_linux_layout() {
    let (fs, _) = fresh();
    fs.mkdir("/d").unwrap();
    fs.write_all("/d/a", b"").unwrap();
    fs.mkdir("/d/sub").unwrap();
    let dir = fs.open("/d", O_RDONLY | O_DIRECTORY, 0).unwrap();
    let d_ino = fs.stat("/d").unwrap().2;
    let mut buf = [0u8; 512];
    let n = dir.getdents64(&mut buf).unwrap();
    let entries = parse_dirents(&buf[..n]);
    assert_eq!(
        entries,
        vec![
            (".".into(), 4, d_ino),
            ("..".into(), 4, ROOT_INO),
            ("a".into(), 8, fs.stat("/d/a").unwrap().2),
            ("sub".into(), 4, fs.stat("/d/sub").unwrap().2),
        ]
    );
    // "." takes 19 + 2 bytes, padded to 24.
    assert_eq!(u16::from_ne_bytes([buf[16], buf[17]]), 24);
    assert_eq!(dir.getdents64(&mut buf), Ok(0), "then the end");
    assert_eq!(dir.seek(0, SEEK_SET), Ok(0));
    assert_eq!(dir.getdents64(&mut [0u8; 10]).err(), Some(Errno::EINVAL));
    assert_eq!(dir.read(&mut buf).err(), Some(Errno::EISDIR));
    let file = fs.open("/d/a", O_RDONLY, 0).unwrap();
    assert_eq!(file.getdents64(&mut buf).err(), Some(Errno::ENOTDIR));
}

#[test]
fn a_listing_resumed_after_removals_neither_repeats_nor_skips() {
    let (fs, _) = fresh();
    for i in 0..20 {
        fs.write_all(&format!("/f{i:02}"), b"").unwrap();
    }
    let dir = fs.open("/", O_RDONLY, 0).unwrap();
    // Room for a few records at a time.
    let mut buf = [0u8; 80];
    let mut seen = Vec::new();
    let mut removed = Vec::new();
    loop {
        let n = dir.getdents64(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        seen.extend(parse_dirents(&buf[..n]).into_iter().map(|e| e.0));
        // Between calls, remove one name already listed and one not yet listed.
        if let Some(done) = seen
            .iter()
            .find(|s| s.starts_with('f') && !removed.contains(*s))
        {
            let done = done.clone();
            fs.unlink(&format!("/{done}")).unwrap();
            removed.push(done);
        }
        let ahead = format!("f{:02}", 19 - removed.len());
        if !seen.contains(&ahead) && fs.unlink(&format!("/{ahead}")).is_ok() {
            removed.push(ahead);
        }
    }
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(unique, seen, "an entry was listed twice");
    for i in 0..20 {
        let name = format!("f{i:02}");
        assert!(
            seen.contains(&name) || removed.contains(&name),
            "{name} stayed but was skipped"
        );
    }
}

#[test]
fn list_gives_names_kinds_and_sizes() {
    let (fs, _) = fresh();
    fs.mkdir("/bin").unwrap();
    fs.write_all("/bin/hello", &[1; 300]).unwrap();
    fs.write_all("/readme", b"hi").unwrap();
    assert_eq!(
        fs.list("/").unwrap(),
        vec![
            ("bin".into(), FileKind::Directory, 0),
            ("readme".into(), FileKind::Regular, 2)
        ]
    );
    assert_eq!(
        fs.list("/bin/hello").unwrap(),
        vec![("hello".into(), FileKind::Regular, 300)]
    );
}

#[test]
fn limits_give_efbig_and_enospc_and_short_writes() {
    let limits = Limits {
        max_file_size: 3 * PAGE_SIZE,
        max_pages: 4,
        max_inodes: 4,
    };
    let (fs, pages) = fresh_with(limits);
    let f = create(&fs, "/big");
    assert_eq!(
        f.write(&[1; 4 * PAGE_SIZE]),
        Ok(3 * PAGE_SIZE),
        "cut at the file limit"
    );
    assert_eq!(f.write(&[1]).err(), Some(Errno::EFBIG));
    let g = create(&fs, "/g");
    assert_eq!(
        g.write(&[2; 2 * PAGE_SIZE]),
        Ok(PAGE_SIZE),
        "short when the fs fills"
    );
    assert_eq!(g.write(&[2]).err(), Some(Errno::ENOSPC));
    create(&fs, "/h");
    assert_eq!(
        fs.open("/i", O_RDWR | O_CREAT, 0).err(),
        Some(Errno::ENOSPC)
    );
    assert_eq!(fs.mkdir("/j").err(), Some(Errno::ENOSPC));
    assert_eq!(pages.outstanding(), 4);
    drop((f, g));
    fs.unlink("/big").unwrap();
    fs.unlink("/g").unwrap();
    assert_eq!(pages.outstanding(), 0);
    assert_eq!(fs.usage().pages, 0);
}

#[test]
fn threads_appending_never_lose_a_record() {
    let (fs, _) = fresh();
    create(&fs, "/log");
    let threads = 4;
    let per_thread = 500;
    std::thread::scope(|s| {
        for t in 0..threads {
            let fs = fs.clone();
            s.spawn(move || {
                let f = fs.open("/log", O_WRONLY | O_APPEND, 0).unwrap();
                for i in 0..per_thread {
                    let record = format!("{t}:{i:05};");
                    assert_eq!(f.write(record.as_bytes()), Ok(record.len()));
                }
            });
        }
    });
    let log = String::from_utf8(fs.read_all("/log").unwrap()).unwrap();
    let records: Vec<&str> = log.split_terminator(';').collect();
    assert_eq!(records.len(), threads * per_thread);
    for t in 0..threads {
        let mine: Vec<&str> = records
            .iter()
            .copied()
            .filter(|r| r.starts_with(&format!("{t}:")))
            .collect();
        let expected: Vec<String> = (0..per_thread).map(|i| format!("{t}:{i:05}")).collect();
        assert_eq!(mine, expected, "thread {t}'s records lost or reordered");
    }
}

#[test]
fn threads_creating_exclusively_let_exactly_one_win() {
    let (fs, _) = fresh();
    for round in 0..200 {
        let path = format!("/race{round}");
        let winners = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    if fs.open(&path, O_RDWR | O_CREAT | O_EXCL, 0).is_ok() {
                        winners.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        assert_eq!(winners.load(Ordering::Relaxed), 1, "round {round}");
    }
}
