//! `eventhost new`: a freshly made plugin of every language builds with its one command and
//! passes its sample contract cases, exactly as a plugin author would run them.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_eventhost");

fn run(command: &mut Command) -> Output {
    command.output().expect("command runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Makes, builds and tests a plugin in `lang` under `parent`.
fn new_plugin_passes_its_cases(lang: &str, parent: &Path) {
    let name = format!("my-{lang}-rules");
    let made = run(Command::new(BIN)
        .args(["new", "--lang", lang, "--dir"])
        .arg(parent)
        .arg(&name));
    assert!(made.status.success(), "{lang}: {}", text(&made));
    let dir = parent.join(&name);
    assert!(
        text(&made).contains(&format!("bash {}/build.sh", dir.display())),
        "{}",
        text(&made)
    );

    let built = run(Command::new("bash").arg(dir.join("build.sh")));
    assert!(built.status.success(), "{lang} build: {}", text(&built));

    let tested = run(Command::new(BIN)
        .arg("test")
        .arg(dir.join(format!("{name}.wasm")))
        .arg(dir.join("cases.toml")));
    let report = text(&tested);
    assert_eq!(tested.status.code(), Some(0), "{lang}: {report}");
    assert!(report.contains("4 passed, 0 failed"), "{lang}: {report}");
}

#[test]
fn a_new_plugin_of_every_language_builds_and_passes_its_cases() {
    let parent = tempfile::tempdir().expect("temp dir");
    for lang in ["rust", "js", "python", "go", "c"] {
        new_plugin_passes_its_cases(lang, parent.path());
    }
}

#[test]
fn a_bad_name_or_an_existing_folder_is_refused() {
    let parent = tempfile::tempdir().expect("temp dir");
    let bad = run(Command::new(BIN)
        .args(["new", "--lang", "go", "--dir"])
        .arg(parent.path())
        .arg("My_Rules"));
    assert_eq!(bad.status.code(), Some(64), "{}", text(&bad));
    assert!(text(&bad).contains("lower-case letters"), "{}", text(&bad));
    std::fs::create_dir(parent.path().join("taken")).expect("folder");
    let taken = run(Command::new(BIN)
        .args(["new", "--lang", "c", "--dir"])
        .arg(parent.path())
        .arg("taken"));
    assert_eq!(taken.status.code(), Some(64), "{}", text(&taken));
    assert!(text(&taken).contains("already exists"), "{}", text(&taken));
}
