//! The tutorial is part of the product: check that docs/ is a complete mdBook and that every
//! source path a chapter names exists, so the book cannot silently rot as the code moves.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chapters() -> Vec<PathBuf> {
    let summary =
        std::fs::read_to_string(root().join("docs/SUMMARY.md")).expect("docs/SUMMARY.md exists");
    summary
        .lines()
        .filter_map(|l| l.split("](").nth(1).and_then(|r| r.split(')').next()))
        .map(|p| root().join("docs").join(p))
        .collect()
}

/// The value of `key = "value"` in book.toml.
fn book_setting(config: &str, key: &str) -> Option<String> {
    config.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
    })
}

#[test]
fn book_has_its_config_and_every_listed_chapter() {
    // mdBook copies every file under its src into the HTML: the config must live outside docs/.
    let config = std::fs::read_to_string(root().join("book.toml")).expect("book.toml exists");
    assert!(
        !root().join("docs/book.toml").exists(),
        "docs/book.toml would be copied into the HTML output"
    );
    let src = book_setting(&config, "src").expect("book.toml sets src");
    assert_eq!(root().join(&src), root().join("docs"), "book.toml's src");
    let build = book_setting(&config, "build-dir").expect("book.toml sets build-dir");
    assert!(
        !root().join(&build).starts_with(root().join("docs")),
        "the HTML ({build}) must not land among the chapters"
    );
    let chapters = chapters();
    assert!(
        chapters.len() >= 5,
        "SUMMARY.md lists {} chapters",
        chapters.len()
    );
    for c in &chapters {
        assert!(
            c.exists(),
            "SUMMARY.md lists {} but it does not exist",
            c.display()
        );
    }
}

/// Paths like `src/smp.rs` or `tools/setup` that a chapter mentions in backticks.
fn mentioned_paths(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            ["src/", "tools/", "tests/", "docs/", ".ci/"]
                .iter()
                .any(|p| s.starts_with(p))
        })
        .map(|s| {
            s.split([' ', ':', '#'])
                .next()
                .unwrap()
                .trim_end_matches(['.', ','])
                .to_string()
        })
        .collect()
}

#[test]
fn every_path_a_chapter_names_exists() {
    let mut checked = 0;
    for chapter in chapters() {
        let text = std::fs::read_to_string(&chapter).unwrap();
        for path in mentioned_paths(&text) {
            assert!(
                Path::new(&root().join(&path)).exists(),
                "{} mentions `{path}`, which does not exist",
                chapter.display()
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 10,
        "only {checked} code paths named in the whole book"
    );
}

/// The numbered chapters: SUMMARY.md's entries without the introduction and the appendices
/// (the Sources page, the notes from the bench), which are not chapters.
fn numbered_chapters() -> Vec<PathBuf> {
    chapters()
        .into_iter()
        .filter(|c| {
            let name = c.file_name().unwrap().to_string_lossy();
            name.starts_with(|ch: char| ch.is_ascii_digit())
        })
        .collect()
}

#[test]
fn every_chapter_has_the_four_faces() {
    // Concept, code, something to type, what goes wrong, an exercise: the headings say so.
    for chapter in numbered_chapters() {
        let text = std::fs::read_to_string(&chapter).unwrap().to_lowercase();
        for heading in [
            "## the code",
            "## try it",
            "## what goes wrong",
            "## exercise",
        ] {
            assert!(
                text.contains(heading),
                "{} has no `{heading}` section",
                chapter.display()
            );
        }
    }
}

#[test]
fn the_readme_lists_every_chapter_of_the_book() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for chapter in numbered_chapters() {
        let name = chapter.file_name().unwrap().to_str().unwrap();
        assert!(
            readme.contains(&format!("(docs/{name})")),
            "README.md's chapter list lacks docs/{name}"
        );
    }
}

#[test]
fn every_chapter_opens_with_its_box() {
    // Right under the title a learner sees what the chapter teaches, what to type and how long
    // it takes: three blockquote lines, in this order, before anything else.
    let labels = [
        "> **You will learn:** ",
        "> **You will run:** ",
        "> **Time:** about ",
    ];
    let chapters = numbered_chapters();
    assert!(
        chapters.len() >= 20,
        "only {} numbered chapters",
        chapters.len()
    );
    for chapter in chapters {
        let text = std::fs::read_to_string(&chapter).unwrap();
        let opening: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("# "))
            .skip(1)
            .skip_while(|l| l.trim().is_empty())
            .take(labels.len())
            .collect();
        for (i, label) in labels.iter().enumerate() {
            let line = opening.get(i).copied().unwrap_or("");
            assert!(
                line.starts_with(label) && line.len() > label.len() + 3,
                "{}: line {} after the title should start with `{label}` and say something, \
                 found `{line}`",
                chapter.display(),
                i + 1
            );
        }
        let time = opening[2].trim_start_matches(labels[2]);
        assert!(
            time.split(' ').next().unwrap().parse::<u32>().is_ok() && time.contains("minutes"),
            "{}: the time should read `about N minutes`, found `{time}`",
            chapter.display()
        );
    }
}

/// `<!-- exercise-open: "PATTERN" absent from src/FILE -->` in a chapter: the exercise asks for
/// something the code does not do yet, and PATTERN is what doing it would add to FILE. The
/// markers in the book: (chapter, pattern, file).
fn open_exercise_markers() -> Vec<(PathBuf, String, String)> {
    const OPEN: &str = "<!-- exercise-open: \"";
    const ABSENT: &str = "\" absent from ";
    let mut markers = Vec::new();
    for chapter in chapters() {
        let text = std::fs::read_to_string(&chapter).unwrap();
        for (at, _) in text.match_indices(OPEN) {
            let rest = &text[at + OPEN.len()..];
            let end = rest
                .find("-->")
                .expect("an exercise-open marker ends with -->");
            let (pattern, file) = rest[..end].split_once(ABSENT).unwrap_or_else(|| {
                panic!("{}: malformed marker {:?}", chapter.display(), &rest[..end])
            });
            markers.push((
                chapter.clone(),
                pattern.to_string(),
                file.trim().to_string(),
            ));
        }
    }
    markers
}

#[test]
fn no_exercise_asks_for_what_the_code_already_does() {
    let markers = open_exercise_markers();
    let mut done = Vec::new();
    for (chapter, pattern, file) in &markers {
        let source = std::fs::read_to_string(root().join(file)).unwrap_or_else(|_| {
            panic!(
                "{} marks an exercise against {file}, which does not exist",
                chapter.display()
            )
        });
        if source.contains(pattern.as_str()) {
            done.push(format!(
                "{}: {file} contains {pattern:?}, so the exercise is done: replace it",
                chapter.display()
            ));
        }
    }
    assert!(done.is_empty(), "{}", done.join("\n"));
    assert!(
        markers.len() >= 5,
        "only {} exercise-open markers in the book",
        markers.len()
    );
}

/// The prose of a markdown file: no fenced blocks, no inline code, no HTML comments, no headings.
fn prose_lines(text: &str) -> Vec<(usize, String)> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || line.starts_with('#') || line.trim_start().starts_with("<!--") {
            continue;
        }
        let no_code: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        lines.push((n + 1, no_code));
    }
    lines
}

#[test]
fn cross_references_are_links_that_lead_somewhere() {
    let docs = root().join("docs");
    let mut plain = Vec::new();
    let mut links = 0;
    for page in chapters() {
        let text = std::fs::read_to_string(&page).unwrap();
        let name = page.file_name().unwrap().to_str().unwrap().to_string();
        let own: Option<u32> = name.get(..2).and_then(|n| n.parse().ok());
        for (n, line) in prose_lines(&text) {
            // Every relative link to a page of the book names a page that exists.
            for (at, _) in line.match_indices("](") {
                let target = line[at + 2..].split([')', '#']).next().unwrap_or("");
                if target.ends_with(".md") && !target.contains("://") {
                    assert!(
                        docs.join(target).exists(),
                        "{name}:{n}: link to {target}, which does not exist"
                    );
                    links += 1;
                }
            }
            // "chapter 7" in prose is a link ("[chapter 7](07-...)"), unless it is the page itself.
            let lower = line.to_lowercase();
            for (at, _) in lower.match_indices("chapter ") {
                let digits: String = lower[at + 8..]
                    .chars()
                    .take_while(|c| c.is_ascii_digit())
                    .collect();
                let Ok(number) = digits.parse::<u32>() else {
                    continue;
                };
                // Inside a link's text: the last '[' before it is not closed yet.
                let before = &lower[..at];
                let linked = before
                    .rfind('[')
                    .is_some_and(|open| before.rfind(']').is_none_or(|close| close < open));
                if !linked && Some(number) != own {
                    plain.push(format!("{name}:{n}: \"chapter {number}\" is not a link"));
                }
            }
        }
    }
    assert!(plain.is_empty(), "{}", plain.join("\n"));
    assert!(links >= 100, "only {links} links between pages of the book");
}
