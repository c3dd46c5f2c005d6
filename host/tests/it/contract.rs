//! The contract test kit as a user runs it: `eventhost test PLUGIN.wasm CASES...`. The payment
//! cases (plugins/cases/payment.toml) must pass against the payment plugin in each of its five
//! languages; the kit must fail, with a readable difference, when a plugin does something else.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_eventhost");

/// The payment plugin in Rust, JavaScript, Python, Go and C.
const PAYMENT_PLUGINS: [&str; 5] = [
    "payment",
    "payment-js",
    "payment-py",
    "payment-go",
    "payment-c",
];

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn kit(plugin: &Path, cases: &Path) -> Output {
    Command::new(BIN)
        .arg("test")
        .arg(plugin)
        .arg(cases)
        .output()
        .expect("eventhost runs")
}

fn report(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn case_count(file: &Path) -> usize {
    eventhost::contract::case::load(file)
        .unwrap_or_else(|e| panic!("{e:#}"))
        .len()
}

#[test]
fn the_payment_cases_pass_in_every_language() {
    let cases = repo_file("plugins/cases/payment.toml");
    let total = case_count(&cases);
    assert!(total >= 30, "only {total} payment cases");
    for plugin in PAYMENT_PLUGINS {
        let out = kit(&crate::common::plugin_wasm(plugin), &cases);
        let text = report(&out);
        assert_eq!(out.status.code(), Some(0), "{plugin}:\n{text}");
        assert!(
            text.lines()
                .any(|l| l == format!("{total} passed, 0 failed")),
            "{plugin}:\n{text}"
        );
    }
}

#[test]
fn state_writes_and_every_failure_kind_are_checked() {
    let cases = repo_file("host/tests/contract/testkit.toml");
    let out = kit(&crate::common::plugin_wasm("testkit"), &cases);
    let text = report(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let total = case_count(&cases);
    assert!(
        text.contains(&format!("{total} passed, 0 failed")),
        "{text}"
    );
}

#[test]
fn a_plugin_that_does_otherwise_fails_with_a_readable_difference() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = dir.path().join("wrong.toml");
    std::fs::write(
        &cases,
        r#"
[defaults]
publish = ["payments"]

[[case]]
name = "right"
message = { value = '{"orderId":"o-1","total":"1","creditCard":{"number":"4"}}' }
expect = { outcome = "ok", output = [{ topic = "payments", key = "o-1", fields = { status = "COMPLETED" } }] }

[[case]]
name = "expects the wrong status and state"
message = { value = '{"orderId":"o-1","total":"1","creditCard":{"number":"5"}}' }
expect = { outcome = "ok", state = { paid = "yes" }, output = [{ topic = "payments", key = "o-2", fields = { status = "COMPLETED" } }] }

[[case]]
name = "expects the wrong outcome"
message = { value = "nope" }
expect = { outcome = "ok" }
"#,
    )
    .expect("case file");
    let out = kit(&crate::common::plugin_wasm("payment"), &cases);
    let text = report(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for line in [
        "  pass  right",
        "  FAIL  expects the wrong status and state",
        r#"        output[0].key: expected "o-2", got "o-1""#,
        r#"        output[0].value.status: expected "COMPLETED", got "FAILED""#,
        r#"        state[paid]: expected "yes", not written"#,
        "  FAIL  expects the wrong outcome",
        "1 passed, 2 failed",
    ] {
        // Case lines end with the time taken, e.g. `  pass  right  (0.7ms)`.
        let found = text
            .lines()
            .any(|l| l == line || l.starts_with(&format!("{line}  (")));
        assert!(found, "no line {line:?} in:\n{text}");
    }
    assert!(
        text.contains("outcome: expected ok, got invalid (order is not JSON"),
        "{text}"
    );
}

#[test]
fn a_malformed_case_file_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = dir.path().join("typo.toml");
    std::fs::write(
        &cases,
        "[[case]]\nname = \"typo\"\nmessage = { value = \"x\" }\nexpect = { outcome = \"ok\", ouptut = [] }\n",
    )
    .expect("case file");
    let out = kit(&crate::common::plugin_wasm("payment"), &cases);
    let text = report(&out);
    assert_eq!(out.status.code(), Some(64), "{text}");
    assert!(text.contains("typo.toml: typo"), "{text}");
    assert!(text.contains("ouptut"), "{text}");
}

/// The Go and C plugins are wrapped with WASI's preview1 adapter of the host's own wasmtime
/// release: bumping wasmtime in Cargo.lock must bump `ADAPTER_VERSION` in plugins/tools.sh.
#[test]
fn the_preview1_adapter_is_the_hosts_wasmtime_release() {
    let read = |path: &str| std::fs::read_to_string(repo_file(path)).expect(path);
    let lock = read("Cargo.lock");
    let wasmtime = lock
        .split("[[package]]")
        .find(|p| p.contains("\nname = \"wasmtime\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|v| v.trim_matches('"').to_string())
        .expect("wasmtime in Cargo.lock");
    let tools = read("plugins/tools.sh");
    assert!(
        tools
            .lines()
            .any(|l| l == format!("ADAPTER_VERSION={wasmtime}")),
        "plugins/tools.sh must pin ADAPTER_VERSION={wasmtime}"
    );
}
