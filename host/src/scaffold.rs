//! `eventhost new --lang LANG NAME`: a plugin folder that builds with one command
//! (`bash build.sh`) and passes its sample contract cases (`eventhost test NAME.wasm
//! cases.toml`). The sample forwards each message to config `output_topic` and answers each
//! request with its body.
//!
//! Templates live in `host/templates/<lang>`; every folder also gets a copy of the contract
//! (`wit/`), the Rust one the SDK (`vendor/sdk`), and the Python, Go and C ones the toolchain
//! installer (`tools.sh`).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// The languages a plugin can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    /// Rust with the repository's SDK (wit-bindgen bindings and one export macro).
    Rust,
    /// JavaScript with componentize-js.
    Js,
    /// Python with componentize-py.
    Python,
    /// Go (standard Go >= 1.24) with a hand-written ABI layer.
    Go,
    /// C with wit-bindgen c, clang and wasi-libc.
    C,
}

/// The contract, copied into every plugin folder.
const WIT: &[(&str, &str)] = &[
    ("config.wit", include_str!("../../wit/config.wit")),
    (
        "http-handler.wit",
        include_str!("../../wit/http-handler.wit"),
    ),
    ("log.wit", include_str!("../../wit/log.wit")),
    (
        "message-handler.wit",
        include_str!("../../wit/message-handler.wit"),
    ),
    ("outbox.wit", include_str!("../../wit/outbox.wit")),
    ("state.wit", include_str!("../../wit/state.wit")),
    ("types.wit", include_str!("../../wit/types.wit")),
    ("worlds.wit", include_str!("../../wit/worlds.wit")),
];

const CASES: &str = include_str!("../templates/cases.toml");
const TOOLS: &str = include_str!("../../plugins/tools.sh");

/// The files of a plugin in `language`: path in the folder, and contents with `{{name}}` and
/// `{{crate}}` to fill in.
fn files(language: Language) -> Vec<(&'static str, &'static str)> {
    let mut files = vec![("cases.toml", CASES)];
    files.extend(match language {
        Language::Rust => vec![
            ("Cargo.toml", include_str!("../templates/rust/Cargo.toml")),
            ("src/lib.rs", include_str!("../templates/rust/lib.rs")),
            ("build.sh", include_str!("../templates/rust/build.sh")),
            // The SDK, as the repository's plugins use it; it reads the contract in ../../wit.
            (
                "vendor/sdk/Cargo.toml",
                include_str!("../../plugins/sdk/Cargo.toml"),
            ),
            (
                "vendor/sdk/src/lib.rs",
                include_str!("../../plugins/sdk/src/lib.rs"),
            ),
            (
                "vendor/sdk/src/bindings.rs",
                include_str!("../../plugins/sdk/src/bindings.rs"),
            ),
            (
                "vendor/sdk/src/export.rs",
                include_str!("../../plugins/sdk/src/export.rs"),
            ),
            (
                "vendor/sdk/src/http.rs",
                include_str!("../../plugins/sdk/src/http.rs"),
            ),
            (
                "vendor/sdk/src/fake.rs",
                include_str!("../../plugins/sdk/src/fake.rs"),
            ),
        ],
        Language::Js => vec![
            ("app.js", include_str!("../templates/js/app.js")),
            ("package.json", include_str!("../templates/js/package.json")),
            ("build.sh", include_str!("../templates/js/build.sh")),
        ],
        Language::Python => vec![
            ("app.py", include_str!("../templates/python/app.py")),
            ("build.sh", include_str!("../templates/python/build.sh")),
            ("tools.sh", TOOLS),
        ],
        // The ABI layer is the Go payment plugin's own, so the two cannot drift apart.
        Language::Go => vec![
            ("main.go", include_str!("../templates/go/main.go")),
            ("go.mod", include_str!("../templates/go/go.mod")),
            ("abi.go", include_str!("../../plugins/go/payment/abi.go")),
            (
                "contract.go",
                include_str!("../../plugins/go/payment/contract.go"),
            ),
            ("build.sh", include_str!("../templates/go/build.sh")),
            ("tools.sh", TOOLS),
        ],
        Language::C => vec![
            ("plugin.c", include_str!("../templates/c/plugin.c")),
            ("build.sh", include_str!("../templates/c/build.sh")),
            ("tools.sh", TOOLS),
        ],
    });
    files
}

/// A plugin name: lower-case letters, digits and `-`, starting with a letter (a valid crate,
/// package, module and file name, and a plugin name in the host's config).
fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid || name.len() > 64 {
        bail!("plugin name {name:?}: use lower-case letters, digits and -, starting with a letter");
    }
    Ok(())
}

/// Creates the folder `parent/name` with a plugin in `language`; returns its path.
pub fn create(language: Language, name: &str, parent: &Path) -> anyhow::Result<PathBuf> {
    check_name(name)?;
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let wit = WIT
        .iter()
        .map(|(file, text)| (format!("wit/{file}"), *text));
    let own = files(language)
        .into_iter()
        .map(|(file, text)| (file.to_string(), text));
    for (file, text) in own.chain(wit) {
        let path = dir.join(&file);
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder)
                .with_context(|| format!("cannot create {}", folder.display()))?;
        }
        let text = text
            .replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"));
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_folder_has_its_sources_the_contract_and_cases() {
        let parent = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dir =
            create(Language::Rust, "my-rules", parent.path()).unwrap_or_else(|e| panic!("{e}"));
        let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        assert!(read("Cargo.toml").contains("name = \"my-rules\""));
        assert!(read("build.sh").contains("release/my_rules.wasm my-rules.wasm"));
        assert!(read("wit/worlds.wit").contains("world plugin"));
        assert!(read("cases.toml").contains("[[case]]"));
        let again = create(Language::Rust, "my-rules", parent.path());
        assert!(again.is_err_and(|e| e.to_string().contains("already exists")));
    }

    #[test]
    fn names_must_suit_every_language() {
        for good in ["a", "payment-rules", "x2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Payment", "2x", "a_b", "a b", "../x"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
