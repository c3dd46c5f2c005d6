//! Several hosts sharing one PostgreSQL store: the coolstore run as three `eventhost run`
//! processes on loopback ports, with requests spread over them, checked as a shopper would
//! through HTTP. Each test has a database of its own (`make test` starts the server).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{HostProcess, eventually, fresh_database, plugins_dir, query, shop_wiring};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);
const VALID_CARD: &str = "4123987754646678";

/// The coolstore's config with its state in the database at `url`, written into `dir`, with
/// the shop's plugins copied into `dir/plugins` (a deployment writes there).
fn cluster_config(dir: &Path, url: &str) -> PathBuf {
    let wiring = shop_wiring(include_str!("../../../examples/coolstore/eventhost.toml"));
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for name in ["catalog", "cart", "payment", "order"] {
        let file = format!("{name}.wasm");
        std::fs::copy(plugins_dir().join(&file), plugins.join(&file)).unwrap();
    }
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[state]\nkind = \"postgres\"\nurl = \"{url}\"\n\n\
         [runtime]\nplugins_dir = \"{plugins}\"\n\n{wiring}",
        plugins = plugins.display(),
        wiring = toml::to_string(&wiring).expect("wiring serializes"),
    );
    let file = dir.join("eventhost.toml");
    std::fs::write(&file, text).unwrap();
    file
}

/// `count` hosts of one config, started one after the other (the first compiles the plugins
/// into the cache the others load from).
async fn start_hosts(config: &Path, count: usize) -> Vec<HostProcess> {
    let mut hosts = Vec::new();
    for n in 0..count {
        let log = config.with_file_name(format!("host-{n}.log"));
        hosts.push(HostProcess::start(config, &[], "info", &log).await);
    }
    hosts
}

async fn send(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let request = reqwest::Client::new().request(method, url);
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn quantity(cart: &Value, item: &str) -> i64 {
    let items = cart["shoppingCartItemList"].as_array().cloned();
    (items.unwrap_or_default().iter())
        .find(|i| i["product"]["itemId"] == item)
        .map_or(0, |i| i["quantity"].as_i64().unwrap_or(0))
}

/// 40 concurrent "add 1" to one cart, spread over three hosts: none is lost, every host
/// answers with all 40, and so does a host started afterwards. Each host names itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_concurrent_adds_to_one_cart_through_three_hosts_all_count() {
    let dir = tempfile::tempdir().unwrap();
    let config = cluster_config(dir.path(), &fresh_database().await);
    let hosts = start_hosts(&config, 3).await;
    let adds = (0..40).map(|n| {
        let url = format!("{}/api/cart/shared/329299/1", hosts[n % 3].url);
        send(reqwest::Method::POST, url, None)
    });
    for (status, body) in futures::future::join_all(adds).await {
        assert_eq!(status, 200, "an add failed: {body}");
    }
    for host in &hosts {
        let (_, cart) = send(
            reqwest::Method::GET,
            format!("{}/api/cart/shared", host.url),
            None,
        )
        .await;
        assert_eq!(
            quantity(&cart, "329299"),
            40,
            "{} answered {cart}",
            host.url
        );
    }
    let mut ids = std::collections::BTreeSet::new();
    for host in &hosts {
        let (_, status) = send(
            reqwest::Method::GET,
            format!("{}/admin/plugins", host.url),
            None,
        )
        .await;
        let id = status["host"]
            .as_str()
            .expect("the host names itself")
            .to_string();
        let metrics = reqwest::get(format!("{}/metrics", host.url)).await.unwrap();
        let metrics = metrics.text().await.unwrap();
        let line = format!("eventhost_host_info{{host=\"{id}\"}} 1");
        assert!(metrics.contains(&line), "{line} in its metrics");
        ids.insert(id);
    }
    assert_eq!(ids.len(), 3, "each host has an id of its own: {ids:?}");
    let late = start_hosts(&config, 1).await.remove(0);
    let (_, cart) = send(
        reqwest::Method::GET,
        format!("{}/api/cart/shared", late.url),
        None,
    )
    .await;
    assert_eq!(
        quantity(&cart, "329299"),
        40,
        "a host started later: {cart}"
    );
    for host in hosts.into_iter().chain([late]) {
        host.stop().await;
    }
}

/// The workshop's flow with each step on another host: items added through the first, the
/// checkout through the second, the order paid and its status read through the third.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_on_one_host_is_paid_and_seen_on_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database().await;
    let config = cluster_config(dir.path(), &url);
    let hosts = start_hosts(&config, 3).await;
    let [first, second, third] = [&hosts[0].url, &hosts[1].url, &hosts[2].url];
    for (item, quantity) in [("329299", 2), ("165613", 1)] {
        let add = format!("{first}/api/cart/c1/{item}/{quantity}");
        assert_eq!(send(reqwest::Method::POST, add, None).await.0, 200);
    }
    let (_, cart) = send(reqwest::Method::GET, format!("{second}/api/cart/c1"), None).await;
    assert_eq!(
        quantity(&cart, "329299"),
        2,
        "read your writes on another host"
    );
    let order = serde_json::json!({
        "orderId": "o1",
        "name": "Jane Doe",
        "total": "0",
        "creditCard": { "number": VALID_CARD, "expiration": "04/29", "nameOnCard": "Jane G Doe" },
        "billingAddress": "123 Anystreet, Pueblo, CO 32213"
    });
    let checkout = format!("{second}/api/cart/checkout/c1");
    let (status, emptied) = send(reqwest::Method::POST, checkout, Some(order)).await;
    assert_eq!(status, 200, "checkout: {emptied}");
    assert_eq!(emptied["shoppingCartItemList"], serde_json::json!([]));
    let paid = eventually(WAIT, "the order is paid", || async {
        let (_, order) = send(reqwest::Method::GET, format!("{third}/api/orders/o1"), None).await;
        (order["status"] == "COMPLETED").then_some(order)
    })
    .await;
    let total = format!("{:.2}", cart["cartTotal"].as_f64().expect("a cart total"));
    assert_eq!(paid["total"], total.as_str(), "the cart's total: {paid}");
    let (_, orders) = send(reqwest::Method::GET, format!("{first}/api/orders"), None).await;
    let ids: Vec<&Value> = (orders.as_array().unwrap().iter())
        .map(|o| &o["orderId"])
        .collect();
    assert_eq!(ids, ["o1"], "one order, whichever host relayed it");
    let left = query(&url, "SELECT count(*) FROM eventhost_relay").await;
    assert_eq!(left, ["0"], "every relayed message was published");
    for host in hosts {
        host.stop().await;
    }
}

/// The version of `plugin` that the host at `url` serves, from its admin routes.
async fn serving(url: &str, plugin: &str) -> Option<String> {
    let (_, status) = send(reqwest::Method::GET, format!("{url}/admin/plugins"), None).await;
    let plugins = status["plugins"].as_array()?;
    let found = plugins.iter().find(|p| p["name"] == plugin)?;
    found["version"].as_str().map(str::to_string)
}

/// `eventhost deploy` stores a new payment component once; every host serves it shortly
/// after, `eventhost plugins` shows it on each, and a host started afterwards starts with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_deployed_once_serves_on_every_host() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database().await;
    let config = cluster_config(dir.path(), &url);
    let hosts = start_hosts(&config, 3).await;
    let v2 = plugins_dir().join("payment-v2.wasm");
    let deployed = std::time::Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eventhost"))
        .arg("deploy")
        .arg(&config)
        .arg(&v2)
        .args(["--name", "payment"])
        .output()
        .expect("eventhost deploy runs");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "deploy failed: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let version = eventhost::runtime::version_of(&std::fs::read(&v2).unwrap());
    assert!(said.contains(&version), "deploy names the version: {said}");
    for host in &hosts {
        eventually(
            Duration::from_secs(10),
            "the host serves the deployed version",
            || async {
                (serving(&host.url, "payment").await.as_deref() == Some(version.as_str()))
                    .then_some(())
            },
        )
        .await;
    }
    println!(
        "every host served the new version {:?} after the deploy",
        deployed.elapsed()
    );
    // Hosts report a new version within a moment of serving it.
    let listed = eventually(
        Duration::from_secs(5),
        "each host's version is listed",
        || async {
            let listed = std::process::Command::new(env!("CARGO_BIN_EXE_eventhost"))
                .arg("plugins")
                .arg(&config)
                .output()
                .expect("eventhost plugins runs");
            let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
            let payment = listed.lines().find(|l| l.starts_with("payment"))?;
            (payment.matches(&format!("={version}")).count() == 3).then_some(listed)
        },
    )
    .await;
    assert!(
        listed.contains(&format!("payment                  {version}")),
        "{listed}"
    );
    // On another machine: its plugins folder still holds the old payment component.
    let elsewhere = tempfile::tempdir().unwrap();
    let late = start_hosts(&cluster_config(elsewhere.path(), &url), 1)
        .await
        .remove(0);
    assert_eq!(
        serving(&late.url, "payment").await,
        Some(version.clone()),
        "a host started later starts with the deployed version"
    );
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_eventhost"))
        .arg("deploy")
        .arg(&config)
        .arg(&config)
        .args(["--name", "payment"])
        .output()
        .expect("eventhost deploy runs");
    assert!(
        !bad.status.success(),
        "a file that is no component is refused"
    );
    assert_eq!(
        serving(&late.url, "payment").await,
        Some(version),
        "and changes nothing"
    );
    for host in hosts.into_iter().chain([late]) {
        host.stop().await;
    }
}
