//! The `eventhost` binary as a user runs it: `check` exit codes, the start-up summary, one log
//! line per failed input, and a clean exit on SIGTERM.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::HostProcess;

const BIN: &str = env!("CARGO_BIN_EXE_eventhost");

/// Writes a config into `dir` whose plugins folder holds copies of hello and testkit.
fn write_config(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for name in ["hello", "testkit"] {
        std::fs::copy(
            crate::common::plugin_wasm(name),
            plugins.join(format!("{name}.wasm")),
        )
        .unwrap();
    }
    let file = dir.join("eventhost.toml");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[state]\npath = \"{}\"\n[runtime]\nplugins_dir = \"plugins\"\n{body}",
        dir.join("state.redb").display(),
    );
    std::fs::write(&file, text).unwrap();
    file
}

const HELLO_AND_TESTKIT: &str = r#"
[plugin.hello]
[plugin.testkit]
limits = { memory_mib = 32, timeout_ms = 1000 }

[[route]]
method = "GET"
path = "/hello/{name}"
plugin = "hello"

[[route]]
method = "GET"
path = "/t/{op}"
plugin = "testkit"
"#;

#[test]
fn check_accepts_a_valid_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), HELLO_AND_TESTKIT);
    let out = Command::new(BIN).arg("check").arg(&file).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("valid") && stdout.contains("plugin hello"),
        "{stdout}"
    );
}

#[test]
fn check_rejects_bad_toml_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(
        dir.path(),
        "[[route]]\nmethod = \"GET\"\npath = \"/x\"\nplugin = \"nope\"\n",
    );
    let out = Command::new(BIN).arg("check").arg(&file).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:10:", file.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("plugin \"nope\" is not defined") && stderr.contains("| plugin = \"nope\""),
        "{stderr}"
    );
}

#[test]
fn check_rejects_a_plugin_without_the_handler_its_binding_needs() {
    let dir = tempfile::tempdir().unwrap();
    let body = "[[topic]]\nname = \"in\"\n[plugin.hello]\n[[subscription]]\ntopic = \"in\"\nplugin = \"hello\"\n";
    let file = write_config(dir.path(), body);
    let out = Command::new(BIN).arg("check").arg(&file).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("subscription[0]")
            && stderr.contains("does not export eventhost:plugin/message-handler"),
        "{stderr}"
    );
}

#[test]
fn check_rejects_a_file_that_is_not_a_component() {
    let dir = tempfile::tempdir().unwrap();
    let core_module = dir.path().join("core.wasm");
    std::fs::write(&core_module, b"\0asm\x01\0\0\0").unwrap();
    let body = format!("[plugin.core]\npath = \"{}\"\n", core_module.display());
    let file = write_config(dir.path(), &body);
    let out = Command::new(BIN).arg("check").arg(&file).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("plugin.core") && stderr.contains("not a component"),
        "{stderr}"
    );
}

#[test]
fn a_missing_plugin_file_says_how_components_get_there() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("plugins/cart.wasm");
    let body = format!("[plugin.cart]\npath = \"{}\"\n", missing.display());
    let file = write_config(dir.path(), &body);
    for command in ["check", "run"] {
        let out = Command::new(BIN).arg(command).arg(&file).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{command}: {stderr}");
        assert!(
            stderr.contains(&format!("cannot read {}", missing.display()))
                && stderr.contains("no such file")
                && stderr.contains("make shop-plugins"),
            "{command}: {stderr}"
        );
    }
}

/// Starts `eventhost run FILE ARGS...` with logs at info, written beside `file`.
async fn start_run(file: &Path, args: &[&str]) -> HostProcess {
    let log = file.with_extension("log");
    HostProcess::start(file, args, "info", &log).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_logs_one_json_object_per_line_with_the_input_and_its_trace() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), HELLO_AND_TESTKIT);
    let host = start_run(&file, &["--log-format", "json"]).await;
    let url = &host.url;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client = reqwest::Client::new();
    let logged = client
        .get(format!("{url}/t/log"))
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(logged.status(), 200);
    let stderr = host.stop().await;
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    // The plugin's own log line, inside its input's span.
    let plugin_line = lines
        .iter()
        .find(|l| l["span"]["trace_id"] == trace)
        .unwrap_or_else(|| panic!("no line with the trace id in:\n{stderr}"));
    assert_eq!(plugin_line["span"]["plugin"], "testkit", "{plugin_line}");
    assert_eq!(plugin_line["span"]["input"], "GET /t/log", "{plugin_line}");
    assert!(plugin_line["level"].is_string(), "{plugin_line}");
}

/// `eventhost tail` on the embedded bus goes through the running host: it shows a message a
/// plugin published, with its key, the host's headers and the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_shows_a_produced_message() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), HELLO_AND_TESTKIT);
    let text = std::fs::read_to_string(&file).unwrap();
    let text = text.replace(
        "[plugin.testkit]\n",
        "[plugin.testkit]\npublish = [\"events\"]\n",
    );
    let more = "[[topic]]\nname = \"events\"\npartitions = 2\n\n[[route]]\nmethod = \"POST\"\npath = \"/t/{op}\"\nplugin = \"testkit\"\n";
    std::fs::write(&file, format!("{text}\n{more}")).unwrap();
    let host = start_run(&file, &[]).await;
    let url = host.url.clone();
    let client = reqwest::Client::new();
    let published = client
        .post(format!("{url}/t/publish?topic=events&key=k-1"))
        .body(r#"{"hello":"tail"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        published.status(),
        200,
        "{}",
        published.text().await.unwrap()
    );
    let port = url.rsplit(':').next().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        let mut tail = Command::new(BIN);
        tail.args([
            "tail",
            "events",
            "--from-beginning",
            "--count",
            "1",
            "--config",
        ]);
        tail.arg(&file);
        // The host listens on a port of its own choosing: point the config at it.
        let text = std::fs::read_to_string(&file).unwrap();
        let text = text.replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
        std::fs::write(&file, text).unwrap();
        tail.output().unwrap()
    });
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("tail ends after one record")
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.starts_with("events/"), "{printed}");
    for part in [
        "key k-1",
        "eventhost-plugin: testkit",
        "eventhost-id: http/",
        "\"hello\": \"tail\"",
    ] {
        assert!(printed.contains(part), "{part} missing from:\n{printed}");
    }
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_prints_a_summary_logs_failures_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), HELLO_AND_TESTKIT);
    let mut host = start_run(&file, &[]).await;
    let url = host.url.clone();
    let summary = host.stdout_lines(8).await.concat();
    assert!(
        summary.contains("hello")
            && summary.contains("testkit")
            && summary.contains("/hello/{name}"),
        "{summary}"
    );
    assert!(
        summary.contains("memory 32 MiB, timeout 1000 ms"),
        "{summary}"
    );

    let client = reqwest::Client::new();
    let hello = client.get(format!("{url}/hello/ada")).send().await.unwrap();
    assert_eq!(hello.status(), 200);
    let trapped = client.get(format!("{url}/t/trap")).send().await.unwrap();
    assert_eq!(trapped.status(), 500);

    let stderr = host.stop().await;
    let failure_line = stderr
        .lines()
        .find(|l| l.contains("input failed"))
        .unwrap_or_else(|| panic!("no failure line in:\n{stderr}"));
    for part in ["plugin=testkit", "GET /t/trap", "trapped"] {
        assert!(
            failure_line.contains(part),
            "{part} missing from: {failure_line}"
        );
    }
    assert!(stderr.contains("SIGTERM received"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_says_which_plugins_came_from_the_compiled_code_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("compiled");
    let body = format!("cache_dir = \"{}\"\n{HELLO_AND_TESTKIT}", cache.display());
    let file = write_config(dir.path(), &body);
    let plugin_lines = |summary: Vec<String>| -> Vec<String> {
        summary
            .into_iter()
            .filter(|line| line.contains("hello.wasm") || line.contains("testkit.wasm"))
            .collect()
    };

    let mut host = start_run(&file, &[]).await;
    let first = plugin_lines(host.stdout_lines(8).await);
    let stderr = host.stop().await;
    assert_eq!(first.len(), 2, "{first:?}");
    for line in &first {
        assert!(line.contains(", compiled in "), "{line}");
    }
    assert!(stderr.contains("component compiled in"), "{stderr}");

    let mut host = start_run(&file, &[]).await;
    let second = plugin_lines(host.stdout_lines(8).await);
    host.stop().await;
    assert_eq!(second.len(), 2, "{second:?}");
    for line in &second {
        assert!(
            line.contains(", from the compiled-code cache in "),
            "{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_lists_the_running_host_from_its_own_admin_address() {
    let dir = tempfile::tempdir().unwrap();
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let file = write_config(dir.path(), HELLO_AND_TESTKIT);
    let text = std::fs::read_to_string(&file).unwrap().replacen(
        "[server]\n",
        &format!("[server]\nadmin_listen = \"{admin}\"\n"),
        1,
    );
    std::fs::write(&file, text).unwrap();
    let host = start_run(&file, &[]).await;
    let url = host.url.clone();
    let hello = reqwest::get(format!("{url}/hello/ada")).await.unwrap();
    assert_eq!(hello.status(), 200);
    assert_eq!(
        reqwest::get(format!("{url}/admin/plugins"))
            .await
            .unwrap()
            .status(),
        404,
        "admin routes leaked onto the public address"
    );

    let out = Command::new(BIN)
        .arg("plugins")
        .arg(&file)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    host.stop().await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let version = eventhost::runtime::version_of(
        &std::fs::read(crate::common::plugin_wasm("hello")).unwrap(),
    );
    let hello_line = table
        .lines()
        .find(|l| l.starts_with("hello"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(hello_line.contains(&version), "{table}");
    let handled: u64 = hello_line
        .split_whitespace()
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(handled, 1, "{table}");
    assert!(table.contains("GET /hello/{name}"), "{table}");
}
