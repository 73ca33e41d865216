//! The Raspberry Pi 4 SD card (chapter 28): what tools/sdcard-image puts on the card, read back
//! with sfdisk and mtools and checked against its MANIFEST.txt and the files it was made from;
//! and tools/flash's refusals, tried against a made-up /sys and /proc so no real disk is near.
//!
//! Needs `make rpi4` and `tools/setup --rpi-firmware` first (`make test` does both). Booting the
//! card's kernel is in tests/boot.rs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh, empty directory under target/sdcard-test/ (tests run in parallel: one each).
fn scratch(name: &str) -> PathBuf {
    let dir = root().join("target/sdcard-test").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} does not start: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sha256(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path));
    text(&out).split_whitespace().next().unwrap().to_string()
}

/// mtools on the FAT inside an image file, at a byte offset, with no floppy sanity checks.
fn mtools(tool: &str, card: &Path, offset: u64) -> Command {
    let mut cmd = Command::new(tool);
    cmd.env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(format!("{}@@{offset}", card.display()));
    cmd
}

/// The four MBR partition entries as (type, first sector, sectors), read from the bytes.
fn mbr_partitions(card: &Path) -> Vec<(u8, u32, u32)> {
    let bytes = std::fs::read(card).unwrap();
    assert_eq!(bytes[510..512], [0x55, 0xaa], "no MBR signature");
    (0..4)
        .map(|i| {
            let e = &bytes[0x1be + 16 * i..0x1be + 16 * (i + 1)];
            let word = |at: usize| u32::from_le_bytes(e[at..at + 4].try_into().unwrap());
            (e[4], word(8), word(12))
        })
        .collect()
}

#[test]
fn sd_card_image_holds_one_fat32_partition_whose_files_match_its_manifest() {
    let dir = scratch("contents");
    let card = dir.join("sdcard.img");
    let made = run(Command::new(root().join("tools/sdcard-image"))
        .arg("--out")
        .arg(&card));
    assert!(
        text(&made).contains("FAT32 boot partition"),
        "{}",
        text(&made)
    );

    // The table: one partition of type 0x0c (FAT32, LBA), aligned to 1 MiB, inside the file.
    let parts = mbr_partitions(&card);
    let (kind, start, sectors) = parts[0];
    assert_eq!(kind, 0x0c, "partition 1 type");
    assert!(
        start > 0 && start % 2048 == 0,
        "partition 1 starts at sector {start}"
    );
    assert!(
        u64::from(start + sectors) * 512 <= std::fs::metadata(&card).unwrap().len(),
        "partition 1 runs past the end of the image"
    );
    assert!(
        parts[1..].iter().all(|p| *p == (0, 0, 0)),
        "more than one partition: {parts:?}"
    );
    // sfdisk reads the same table.
    let table = text(&run(Command::new("sfdisk").arg("--dump").arg(&card)));
    let line = format!("start={start:>12}, size={sectors:>12}, type=c");
    assert!(table.contains(&line), "no {line:?} in:\n{table}");

    // The file system is a clean FAT32: fsck.fat on the partition cut out of the image.
    let offset = u64::from(start) * 512;
    let partition = dir.join("partition.img");
    run(Command::new("dd")
        .arg(format!("if={}", card.display()))
        .arg(format!("of={}", partition.display()))
        .args([
            "bs=512",
            &format!("skip={start}"),
            &format!("count={sectors}"),
        ])
        .args(["conv=sparse", "status=none"]));
    let fsck = text(&run(Command::new("fsck.fat").arg("-n").arg(&partition)));
    assert!(fsck.contains(" files, "), "{fsck}");
    let boot_sector = std::fs::read(&partition).unwrap();
    assert_eq!(&boot_sector[82..90], b"FAT32   ", "not a FAT32 boot sector");

    // The manifest: one line per file, "name sha256 origin".
    let manifest_path = dir.join("MANIFEST.txt");
    run(mtools("mcopy", &card, offset)
        .args(["-n", "::MANIFEST.txt"])
        .arg(&manifest_path));
    let manifest_text = std::fs::read_to_string(&manifest_path).unwrap();
    let manifest: BTreeMap<String, (String, String)> = manifest_text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next().unwrap().to_string();
            let sum = words.next().expect("a checksum").to_string();
            (name, (sum, words.collect::<Vec<_>>().join(" ")))
        })
        .collect();

    // Every file the card needs, from where it was made.
    let commit = text(&run(Command::new("git").current_dir(root()).args([
        "describe",
        "--always",
        "--dirty",
        "--abbrev=12",
    ])))
    .trim()
    .to_string();
    let firmware = std::fs::read_to_string(root().join("build/rpi-firmware/SOURCE")).unwrap();
    let kernel_pkg =
        std::fs::read_to_string(root().join("build/dtb/bcm2711-rpi-4-b.dtb.source")).unwrap();
    let quartet = format!("built by quartet, commit {commit}");
    let expected = [
        (
            "start4.elf",
            "build/rpi-firmware/start4.elf",
            firmware.trim(),
        ),
        (
            "fixup4.dat",
            "build/rpi-firmware/fixup4.dat",
            firmware.trim(),
        ),
        (
            "raspi-firmware.copyright",
            "build/rpi-firmware/raspi-firmware.copyright",
            firmware.trim(),
        ),
        (
            "bcm2711-rpi-4-b.dtb",
            "build/dtb/bcm2711-rpi-4-b.dtb",
            kernel_pkg.trim(),
        ),
        (
            "bcm2711-rpi-400.dtb",
            "build/dtb/bcm2711-rpi-400.dtb",
            kernel_pkg.trim(),
        ),
        (
            "bcm2711-rpi-cm4.dtb",
            "build/dtb/bcm2711-rpi-cm4-io.dtb",
            kernel_pkg.trim(),
        ),
        ("config.txt", "build/rpi4/config.txt", quartet.as_str()),
        ("kernel8.img", "build/rpi4/kernel8.img", quartet.as_str()),
    ];
    assert_eq!(
        manifest.keys().collect::<Vec<_>>(),
        {
            let mut names: Vec<_> = expected.iter().map(|e| e.0).collect();
            names.sort();
            names
        },
        "the manifest's files:\n{manifest_text}"
    );
    assert!(firmware.starts_with("raspi-firmware "), "{firmware}");
    assert!(kernel_pkg.starts_with("linux-image-"), "{kernel_pkg}");

    // What is on the card is exactly the manifest's files and the manifest itself.
    let listing = text(&run(mtools("mdir", &card, offset).args(["-b", "::"])));
    let mut on_card: Vec<_> = listing
        .lines()
        .map(|l| l.trim_start_matches("::/").to_string())
        .collect();
    on_card.sort();
    let mut listed: Vec<_> = manifest.keys().cloned().collect();
    listed.push("MANIFEST.txt".to_string());
    listed.sort();
    assert_eq!(on_card, listed, "mdir -b said:\n{listing}");

    for (name, made_from, origin) in expected {
        let copy = dir.join(name);
        run(mtools("mcopy", &card, offset)
            .args(["-n", &format!("::{name}")])
            .arg(&copy));
        let (sum, said) = &manifest[name];
        assert_eq!(
            &sha256(&copy),
            sum,
            "{name} on the card vs its manifest line"
        );
        assert_eq!(
            &sha256(&root().join(made_from)),
            sum,
            "{name} on the card vs {made_from}"
        );
        assert!(
            said.contains(origin),
            "{name}: manifest says {said:?}, want {origin:?}"
        );
    }
}

/// A made-up machine for tools/flash: DIR/sys, DIR/proc and DIR/dev, with the disks a test adds.
struct FakeMachine {
    dir: PathBuf,
    image: PathBuf,
}

/// One disk as sysfs shows it.
struct Disk<'a> {
    name: &'a str,
    removable: u8,
    sectors: u64,
    vendor: &'a str,
    model: &'a str,
    /// For mmcblk disks: SD for a card, MMC for soldered eMMC.
    mmc_type: Option<&'a str>,
    partitions: &'a [&'a str],
}

const CARD_READER: Disk = Disk {
    name: "sdz",
    removable: 1,
    sectors: 62_333_952,
    vendor: "Generic ",
    model: "STORAGE DEVICE  ",
    mmc_type: None,
    partitions: &["sdz1", "sdz2"],
};

impl FakeMachine {
    fn new(name: &str) -> FakeMachine {
        let dir = scratch(&format!("flash-{name}"));
        for sub in ["sys/block", "sys/class/block", "proc", "dev"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(dir.join("proc/mounts"), "/dev/vda1 / ext4 rw 0 0\n").unwrap();
        std::fs::write(
            dir.join("proc/swaps"),
            "Filename\tType\tSize\tUsed\tPriority\n",
        )
        .unwrap();
        // A small stand-in for the card image: tools/flash copies whatever it is given.
        let image = dir.join("card.img");
        let pattern: Vec<u8> = (0..=255u8).cycle().take(3 * 65536 + 17).collect();
        std::fs::write(&image, pattern).unwrap();
        FakeMachine { dir, image }
    }

    fn add(&self, d: &Disk) {
        use std::os::unix::fs::symlink;
        let disk = self.dir.join("sys/block").join(d.name);
        std::fs::create_dir_all(disk.join("device")).unwrap();
        std::fs::write(disk.join("removable"), format!("{}\n", d.removable)).unwrap();
        std::fs::write(disk.join("size"), format!("{}\n", d.sectors)).unwrap();
        std::fs::write(disk.join("ro"), "0\n").unwrap();
        std::fs::write(disk.join("device/vendor"), format!("{}\n", d.vendor)).unwrap();
        std::fs::write(disk.join("device/model"), format!("{}\n", d.model)).unwrap();
        if let Some(t) = d.mmc_type {
            std::fs::write(disk.join("device/type"), format!("{t}\n")).unwrap();
        }
        symlink(
            format!("../../block/{}", d.name),
            self.dir.join("sys/class/block").join(d.name),
        )
        .unwrap();
        for (i, p) in d.partitions.iter().enumerate() {
            std::fs::create_dir_all(disk.join(p)).unwrap();
            std::fs::write(disk.join(p).join("partition"), format!("{}\n", i + 1)).unwrap();
            symlink(
                format!("../../block/{}/{p}", d.name),
                self.dir.join("sys/class/block").join(p),
            )
            .unwrap();
        }
        // The stand-in for the device node: an empty file the write goes into.
        std::fs::write(self.dir.join("dev").join(d.name), b"").unwrap();
    }

    fn append(&self, file: &str, line: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join(file))
            .unwrap();
        writeln!(f, "{line}").unwrap();
    }

    fn set(&self, path: &str, value: &str) {
        std::fs::write(self.dir.join(path), format!("{value}\n")).unwrap();
    }

    /// tools/flash with these arguments (and the image), typing `typed` at its question.
    fn flash(&self, args: &[&str], typed: &str) -> (bool, String) {
        use std::io::Write;
        let mut child = Command::new(root().join("tools/flash"))
            .args(args)
            .arg(&self.image)
            .env("QUARTET_FLASH_ROOT", &self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tools/flash starts");
        // It may refuse before reading: a closed pipe is fine.
        let _ = child.stdin.take().unwrap().write_all(typed.as_bytes());
        let out = child.wait_with_output().unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), said)
    }

    fn written(&self, disk: &str) -> Vec<u8> {
        std::fs::read(self.dir.join("dev").join(disk)).unwrap()
    }

    /// Refused with `reason`, and nothing written to any disk.
    fn assert_refused(&self, args: &[&str], reason: &str) {
        let (ok, said) = self.flash(args, "sdz\n");
        assert!(!ok, "tools/flash {args:?} was accepted:\n{said}");
        assert!(said.contains("refusing"), "{said}");
        assert!(said.contains(reason), "want {reason:?} in:\n{said}");
        for entry in std::fs::read_dir(self.dir.join("dev")).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(
                std::fs::metadata(&path).unwrap().len(),
                0,
                "{path:?} written"
            );
        }
    }
}

#[test]
fn flash_writes_a_removable_card_only_after_its_name_is_typed_back() {
    let m = FakeMachine::new("card");
    m.add(&CARD_READER);
    let (ok, said) = m.flash(&["--dry-run", "/dev/sdz"], "");
    assert!(ok, "{said}");
    assert!(
        said.contains("/dev/sdz is Generic STORAGE DEVICE, 31.9 GB (29.7 GiB), removable"),
        "{said}"
    );
    assert!(said.contains("nothing written"), "{said}");
    assert!(m.written("sdz").is_empty(), "a dry run wrote");

    let (ok, said) = m.flash(&["/dev/sdz"], "yes\n");
    assert!(!ok, "{said}");
    assert!(said.contains("not confirmed (got 'yes')"), "{said}");
    assert!(m.written("sdz").is_empty(), "written without confirmation");

    let (ok, said) = m.flash(&["/dev/sdz"], "sdz\n");
    assert!(ok, "{said}");
    assert_eq!(m.written("sdz"), std::fs::read(&m.image).unwrap(), "{said}");
}

#[test]
fn flash_refuses_fixed_disks_partitions_and_unknown_devices() {
    let m = FakeMachine::new("fixed");
    m.add(&CARD_READER);
    m.add(&Disk {
        name: "sda",
        removable: 0,
        sectors: 1_000_215_216,
        vendor: "ATA",
        model: "Samsung SSD 870",
        mmc_type: None,
        partitions: &["sda1"],
    });
    m.add(&Disk {
        name: "mmcblk1",
        removable: 0,
        sectors: 61_071_360,
        vendor: "",
        model: "",
        mmc_type: Some("MMC"),
        partitions: &["mmcblk1p1"],
    });
    m.assert_refused(&["--dry-run", "/dev/sda"], "not removable (removable=0)");
    m.assert_refused(&["/dev/sda"], "not removable (removable=0)");
    m.assert_refused(&["/dev/mmcblk1"], "built-in eMMC storage");
    m.assert_refused(
        &["/dev/sdz1"],
        "a partition of /dev/sdz; the image holds its own partition table, so give the whole card: /dev/sdz",
    );
    m.assert_refused(&["/dev/sdy"], "the kernel knows no block device called sdy");
    m.assert_refused(&["sdz"], "give the device's path");
    m.assert_refused(
        &["/dev/disk/../sdz"],
        "is not a disk the kernel names under /dev",
    );
}

#[test]
fn flash_takes_an_sd_card_in_a_built_in_slot() {
    // The MMC layer calls every disk it drives non-removable; an SD card says so by its type.
    let m = FakeMachine::new("mmc-slot");
    m.add(&Disk {
        name: "mmcblk0",
        removable: 0,
        sectors: 31_116_288,
        vendor: "",
        model: "",
        mmc_type: Some("SD"),
        partitions: &["mmcblk0p1"],
    });
    m.set("sys/block/mmcblk0/device/name", "SC16G");
    let (ok, said) = m.flash(&["--dry-run", "/dev/mmcblk0"], "");
    assert!(ok, "{said}");
    assert!(said.contains("/dev/mmcblk0 is SC16G, 15.9 GB"), "{said}");
}

#[test]
fn flash_refuses_a_card_in_use_empty_too_small_or_locked() {
    let m = FakeMachine::new("in-use");
    m.add(&CARD_READER);
    m.append("proc/mounts", "/dev/sdz2 /media/me/rootfs ext4 rw 0 0");
    m.assert_refused(&["/dev/sdz"], "/dev/sdz2 is mounted on /media/me/rootfs");
    m.set("proc/mounts", "/dev/vda1 / ext4 rw 0 0");
    m.append("proc/swaps", "/dev/sdz1 partition 1048572 0 -2");
    m.assert_refused(&["/dev/sdz"], "/dev/sdz1 is in use as swap");
    m.set("proc/swaps", "Filename\tType\tSize\tUsed\tPriority");
    std::fs::create_dir_all(m.dir.join("sys/block/sdz/sdz1/holders/dm-0")).unwrap();
    m.assert_refused(&["/dev/sdz"], "/dev/sdz1 is held by dm-0");
    std::fs::remove_dir_all(m.dir.join("sys/block/sdz/sdz1/holders")).unwrap();

    m.set("sys/block/sdz/size", "0");
    m.assert_refused(&["/dev/sdz"], "it has no medium");
    m.set("sys/block/sdz/size", "100");
    m.assert_refused(&["/dev/sdz"], "it holds 51200 bytes, less than the image's");
    m.set("sys/block/sdz/size", "62333952");
    m.set("sys/block/sdz/ro", "1");
    m.assert_refused(&["/dev/sdz"], "it is read-only");
    m.set("sys/block/sdz/ro", "0");
    // With every problem undone, the same card is taken.
    let (ok, said) = m.flash(&["--dry-run", "/dev/sdz"], "");
    assert!(ok, "{said}");
}
