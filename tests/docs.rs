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

#[test]
fn book_has_its_config_and_every_listed_chapter() {
    assert!(root().join("docs/book.toml").exists());
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
    for chapter in chapters() {
        let name = chapter.file_name().unwrap().to_str().unwrap();
        if name == "introduction.md" || !name.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
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
