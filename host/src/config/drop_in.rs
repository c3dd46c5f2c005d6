//! Drop-in deployment: every `<name>.wasm` in the plugins folder is a plugin, and an optional
//! `<name>.toml` beside it binds it (its own `[plugin.<name>]`, `[[subscription]]` and
//! `[[route]]` tables). A drop-in plugin without a `[plugin.<name>]` table anywhere gets the
//! defaults.

use std::path::{Path, PathBuf};

use super::Config;
use super::error::ConfigError;
use super::raw::RawConfig;
use super::source::quote_key;
use super::validate::validate;

/// The `.wasm` files in `dir`, by plugin name, sorted. A missing folder has none.
pub(crate) fn components(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wasm") && p.is_file())
        .filter_map(|p| Some((p.file_stem()?.to_str()?.to_string(), p)))
        .collect();
    found.sort();
    found
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        file: path.to_owned(),
        error,
    })
}

/// Loads `main` merged with the drop-in files of its plugins folder.
pub(crate) fn load(main: &Path) -> Result<Config, ConfigError> {
    let text = read(main)?;
    // The plugins folder is a setting of the main file, so validate it alone first.
    let plugins_dir = validate(RawConfig::parse(&text, main)?, main)?
        .runtime
        .plugins_dir;
    let mut raw = RawConfig::parse(&text, main)?;
    for (name, wasm) in components(&plugins_dir) {
        let binding = wasm.with_extension("toml");
        if binding.is_file() {
            raw.merge(RawConfig::parse_drop_in(&read(&binding)?, &binding, &name)?)?;
        }
        if !raw.plugin.keys().any(|k| k.get_ref().0 == name) {
            let implicit = format!("[plugin.{}]\n", quote_key(&name));
            raw.merge(RawConfig::parse(&implicit, &binding)?)?;
        }
    }
    validate(raw, main)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn drop_ins_add_plugins_and_wiring() {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("plugins");
        std::fs::create_dir(&plugins).unwrap();
        write(
            dir.path(),
            "main.toml",
            "[[topic]]\nname = \"in\"\n[plugin.main]\n",
        );
        write(&plugins, "main.wasm", "");
        write(&plugins, "bare.wasm", "");
        write(&plugins, "bound.wasm", "");
        write(
            &plugins,
            "bound.toml",
            "[plugin.bound]\nlimits = { timeout_ms = 7 }\n[[route]]\nmethod = \"GET\"\npath = \"/b\"\nplugin = \"bound\"\n[[subscription]]\ntopic = \"in\"\nplugin = \"bound\"\n",
        );
        write(&plugins, "orphan.toml", "this is not even toml");

        let config = load(&dir.path().join("main.toml")).unwrap();
        let names: Vec<_> = config.plugins.keys().map(String::as_str).collect();
        assert_eq!(names, ["bare", "bound", "main"]);
        assert_eq!(config.plugins["bare"].path, plugins.join("bare.wasm"));
        assert_eq!(config.plugins["bound"].limits.timeout.as_millis(), 7);
        assert_eq!(config.routes[0].path, "/b");
        assert_eq!(config.subscriptions[0].plugin, "bound");
    }

    #[test]
    fn a_drop_in_may_only_bind_its_own_plugin_and_errors_name_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("plugins");
        std::fs::create_dir(&plugins).unwrap();
        write(dir.path(), "main.toml", "[plugin.other]\n");
        write(&plugins, "mine.wasm", "");
        write(
            &plugins,
            "mine.toml",
            "[[route]]\nmethod = \"GET\"\npath = \"/x\"\nplugin = \"other\"\n",
        );
        let err = load(&dir.path().join("main.toml")).unwrap_err().summary();
        assert_eq!(
            err,
            format!(
                "{}:4:10: a drop-in file may only bind its own plugin \"mine\", not \"other\"",
                plugins.join("mine.toml").display()
            )
        );

        write(&plugins, "mine.toml", "[server]\nlisten = \"0.0.0.0:1\"\n");
        let err = load(&dir.path().join("main.toml")).unwrap_err().summary();
        assert!(
            err.contains("mine.toml:1:") && err.contains("server"),
            "{err}"
        );
    }
}
