//! Pins the configuration error messages and checks the example configurations load.
//!
//! Each `tests/config/invalid/<case>.toml` must fail to load with exactly the one line in
//! `<case>.err`, where the fixture's own path is written `{file}`; each
//! `tests/config/valid/*.toml` must load.
//!
//! Run with: `cargo test -p eventhost --test it config_fixtures`.
//! After an intended message change, rewrite the `.err` files with
//! `EVENTHOST_BLESS=1 cargo test -p eventhost --test it config_fixtures` and review the diff.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use eventhost::bus::{Limit, Retention};
use eventhost::config::{Allowed, BusConfig, Config, StateConfig};

fn fixture_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/config")
        .join(kind)
}

/// The files in `tests/config/<kind>/` ending in `.<ext>`, sorted.
fn fixtures(kind: &str, ext: &str) -> Vec<PathBuf> {
    let dir = fixture_dir(kind);
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("readable fixture dir").path())
        .filter(|path| path.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

fn name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn invalid_fixtures_fail_with_their_pinned_message() {
    let bless = std::env::var_os("EVENTHOST_BLESS").is_some();
    let cases = fixtures("invalid", "toml");
    assert!(
        !cases.is_empty(),
        "no fixtures in {}",
        fixture_dir("invalid").display()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let actual = match Config::load(case) {
            Ok(_) => "<loaded without error>".to_owned(),
            Err(err) => err
                .to_string()
                .replace(&case.display().to_string(), "{file}"),
        };
        let pinned = case.with_extension("err");
        if bless {
            fs::write(&pinned, format!("{actual}\n")).expect("writable fixture dir");
            continue;
        }
        match fs::read_to_string(&pinned) {
            Ok(expected) if expected.trim_end() == actual => {}
            Ok(expected) => failures.push(format!(
                "{}\n  expected: {}\n  actual:   {actual}",
                name(case),
                expected.trim_end()
            )),
            Err(e) => failures.push(format!("{}: {e}\n  actual:   {actual}", name(&pinned))),
        }
    }
    for pinned in fixtures("invalid", "err") {
        if !pinned.with_extension("toml").exists() {
            failures.push(format!("{} has no .toml beside it", name(&pinned)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} invalid fixtures differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn valid_fixtures_load() {
    let cases = fixtures("valid", "toml");
    assert!(
        cases.len() >= 3,
        "expected the minimal, full and kafka fixtures"
    );
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| Config::load(case).err())
        .map(|err| err.to_string())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn full_fixture_has_its_values_and_defaults() {
    let file = fixture_dir("valid").join("full.toml");
    let config = Config::load(&file).expect("full.toml loads");
    let dir = fixture_dir("valid");
    assert_eq!(config.file, file);
    assert_eq!(config.server.static_dir, Some(dir.join("web")));
    let cors = config.server.cors.as_ref().expect("[server.cors]");
    assert_eq!(
        cors.origins,
        Allowed::Only(vec!["http://localhost:4200".into()])
    );
    assert_eq!(cors.methods, ["GET", "POST", "DELETE"]);
    assert_eq!(cors.max_age, Some(Duration::from_secs(600)));
    assert!(cors.credentials);
    assert_eq!(
        config.state,
        StateConfig::Embedded {
            path: dir.join("data/state.redb")
        }
    );
    assert_eq!(
        config.telemetry.otlp_endpoint.as_deref(),
        Some("http://127.0.0.1:4318"),
        "without the trailing slash"
    );
    assert_eq!(config.telemetry.service_name, "coolstore");
    let BusConfig::Kafka(kafka) = &config.bus else {
        panic!("expected a kafka bus, got {:?}", config.bus);
    };
    assert_eq!(kafka.options["linger.ms"], "5");

    let payment = &config.plugins["payment"];
    assert_eq!(payment.path, dir.join("plugins/payment.wasm"));
    assert_eq!(payment.publish, ["payments"]);
    assert_eq!(payment.config["processing_delay_ms"], "5000");
    assert_eq!(payment.limits.timeout, Duration::from_secs(10));

    let sub = &config.subscriptions[0];
    assert_eq!(
        (sub.group.as_str(), sub.dead_letter.as_str()),
        ("payment-service", "orders.dlq")
    );
    assert_eq!(sub.retry.attempts, 5);
    assert_eq!(sub.retry.backoff, Duration::from_millis(200));
    // The order service's subscriptions use the default dead-letter topics.
    assert_eq!(config.topics["payments.dlq"].partitions, 1);
    assert_eq!(
        config.topics["orders.dlq"].retention,
        Retention {
            bytes: Limit::At(1 << 20),
            age: Limit::Unlimited,
        }
    );
    assert_eq!(config.topics["orders"].retention, Retention::default());
    assert!(
        config
            .routes
            .iter()
            .any(|r| r.path == "/api/cart/checkout/{cartId}")
    );
}
