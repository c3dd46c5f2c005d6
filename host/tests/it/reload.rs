//! Hot reload and drop-in deployment: plugins appear, change and disappear while the host
//! runs; bad files never replace a good version; swaps under load lose and double nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{collect, eventually, header, plugin_wasm};
use eventhost::app::{Host, RunningHost};
use eventhost::config::Config;
use eventhost::runtime::{OutMessage, version_of};

/// A host watching its config and plugins folder, in a temporary directory.
struct Watched {
    running: Option<RunningHost>,
    plugins: PathBuf,
    url: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
    _process: tokio::sync::RwLockReadGuard<'static, ()>,
}

impl Watched {
    async fn start(main: &str, plugins: &[(&str, &str)]) -> Watched {
        crate::common::init_logs();
        let process = crate::common::share_process().await;
        let dir = tempfile::tempdir().unwrap();
        let plugins_dir = dir.path().join("plugins");
        std::fs::create_dir(&plugins_dir).unwrap();
        for (file, dist) in plugins {
            std::fs::copy(plugin_wasm(dist), plugins_dir.join(file)).unwrap();
        }
        let config = dir.path().join("eventhost.toml");
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace_ms = 30000\n[state]\npath = \"state.redb\"\n[runtime]\nplugins_dir = \"plugins\"\n{main}"
        );
        std::fs::write(&config, text).unwrap();
        let loaded = Config::load_deployment(&config).unwrap_or_else(|e| panic!("{e}"));
        let host = Host::build(loaded)
            .await
            .expect("host builds")
            .reload_from(config);
        let running = host.start().await.expect("host starts");
        let url = format!("http://{}", running.addr);
        Watched {
            running: Some(running),
            plugins: plugins_dir,
            url,
            client: reqwest::Client::new(),
            _dir: dir,
            _process: process,
        }
    }

    fn host(&self) -> &RunningHost {
        self.running.as_ref().unwrap()
    }

    /// Writes a plugin file the way deployment tools should: a temporary name, then a rename.
    fn put(&self, file: &str, bytes: &[u8]) {
        let temp = self.plugins.join(format!(".{file}.partial"));
        std::fs::write(&temp, bytes).unwrap();
        std::fs::rename(&temp, self.plugins.join(file)).unwrap();
    }

    fn remove(&self, file: &str) {
        std::fs::remove_file(self.plugins.join(file)).unwrap();
    }

    fn version(&self, plugin: &str) -> Option<String> {
        self.host()
            .dispatcher()
            .registry()
            .get(plugin)
            .map(|p| p.info.version.clone())
    }

    async fn wait_for_version(&self, plugin: &str, expected: Option<&str>) {
        // Compiling a plugin that embeds an interpreter (Python, JavaScript) takes ~20 s on two
        // busy cores when the compiled-code cache does not have it yet.
        eventually(
            Duration::from_secs(90),
            &format!("{plugin} at version {expected:?}"),
            || async { (self.version(plugin).as_deref() == expected).then_some(()) },
        )
        .await;
    }

    async fn status(&self, path: &str) -> u16 {
        self.client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn admin(&self, plugin: &str) -> serde_json::Value {
        let listing: serde_json::Value = self
            .client
            .get(format!("{}/admin/plugins", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        listing["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == plugin)
            .cloned()
            .unwrap_or_default()
    }

    async fn stop(mut self) {
        self.running
            .take()
            .unwrap()
            .stop()
            .await
            .expect("clean stop");
    }
}

fn dist(name: &str) -> Vec<u8> {
    std::fs::read(plugin_wasm(name)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_in_plugin_deploys_and_removing_it_undeploys() {
    let main =
        "[[topic]]\nname = \"in\"\npartitions = 1\n[[topic]]\nname = \"out\"\npartitions = 1\n";
    let host = Watched::start(main, &[]).await;
    assert_eq!(host.status("/drop/ada").await, 404);

    std::fs::write(
        host.plugins.join("hello.toml"),
        "[[route]]\nmethod = \"GET\"\npath = \"/drop/{name}\"\nplugin = \"hello\"\n",
    )
    .unwrap();
    host.put("hello.wasm", &dist("hello"));
    eventually(Duration::from_secs(30), "the dropped-in route", || async {
        (host.status("/drop/ada").await == 200).then_some(())
    })
    .await;

    let bus = host.host().dispatcher().bus().clone();
    let (out, _stop) = collect(&bus, "out", "observer");
    std::fs::write(
        host.plugins.join("testkit.toml"),
        "[plugin.testkit]\npublish = [\"out\"]\nconfig = { forward_to = \"out\" }\n[[subscription]]\ntopic = \"in\"\nplugin = \"testkit\"\n",
    )
    .unwrap();
    host.put("testkit.wasm", &dist("testkit"));
    host.wait_for_version("testkit", Some(&version_of(&dist("testkit"))))
        .await;
    let send = |text: &str| OutMessage {
        topic: "in".into(),
        key: None,
        value: text.as_bytes().to_vec(),
        headers: vec![],
    };
    bus.publish(vec![send("record:first")]).await.unwrap();
    eventually(
        Duration::from_secs(30),
        "the dropped-in subscription",
        || async {
            out.lock()
                .unwrap()
                .iter()
                .any(|r| r.value == b"first")
                .then_some(())
        },
    )
    .await;
    let status = host.admin("testkit").await;
    assert_eq!(
        status["subscriptions"],
        serde_json::json!(["in (group testkit)"]),
        "{status}"
    );
    assert_eq!(
        host.admin("hello").await["routes"],
        serde_json::json!(["GET /drop/{name}"])
    );

    host.remove("hello.wasm");
    eventually(Duration::from_secs(30), "the route to go away", || async {
        (host.status("/drop/ada").await == 404).then_some(())
    })
    .await;

    host.remove("testkit.wasm");
    host.wait_for_version("testkit", None).await;
    bus.publish(vec![send("record:while-away")]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !out.lock().unwrap().iter().any(|r| r.value == b"while-away"),
        "a removed plugin consumed"
    );
    // Back again, it resumes from its group's committed offset: the message waited for it.
    host.put("testkit.wasm", &dist("testkit"));
    eventually(
        Duration::from_secs(30),
        "the backlog after redeploying",
        || async {
            out.lock()
                .unwrap()
                .iter()
                .any(|r| r.value == b"while-away")
                .then_some(())
        },
    )
    .await;
    let forwarded: Vec<_> = out
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.value.clone())
        .collect();
    assert_eq!(
        forwarded,
        [b"first".to_vec(), b"while-away".to_vec()],
        "each input handled once"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_cannot_load_makes_the_host_not_ready_until_it_is_fixed() {
    let main =
        "[plugin.testkit]\n[[route]]\nmethod = \"GET\"\npath = \"/t/{op}\"\nplugin = \"testkit\"\n";
    let host = Watched::start(main, &[("testkit.wasm", "testkit")]).await;
    let readyz = || async {
        let response = (host.client.get(format!("{}/readyz", host.url)).send().await).unwrap();
        let status = response.status().as_u16();
        (status, response.json::<serde_json::Value>().await.unwrap())
    };
    assert_eq!(
        readyz().await,
        (200, serde_json::json!({"status": "ready"}))
    );

    // A new drop-in that is not a component: configured, but nothing can serve it.
    host.put("broken.wasm", b"\0asm\x01\0\0\0");
    let body = eventually(Duration::from_secs(30), "not ready", || async {
        let (status, body) = readyz().await;
        (status == 503).then_some(body)
    })
    .await;
    assert_eq!(body["status"], "not ready");
    assert_eq!(
        body["reasons"],
        serde_json::json!(["plugin broken is not loaded"]),
        "{body}"
    );
    let metrics = (host
        .client
        .get(format!("{}/metrics", host.url))
        .send()
        .await)
        .unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains(r#"eventhost_plugin_loads_total{plugin="broken",outcome="rejected"}"#),
        "{metrics}"
    );
    // Live all along, and the other plugin keeps serving.
    assert_eq!(host.status("/healthz").await, 200);
    assert_eq!(host.status("/t/ok").await, 200);

    host.put("broken.wasm", &dist("hello"));
    eventually(Duration::from_secs(30), "ready again", || async {
        (readyz().await.0 == 200).then_some(())
    })
    .await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_leaves_the_old_version_serving_and_a_later_good_one_loads() {
    let main = "[[topic]]\nname = \"in\"\npartitions = 1\n[plugin.testkit]\n[[route]]\nmethod = \"GET\"\npath = \"/t/{op}\"\nplugin = \"testkit\"\n[[subscription]]\ntopic = \"in\"\nplugin = \"testkit\"\n";
    let host = Watched::start(main, &[("testkit.wasm", "testkit")]).await;
    let good = version_of(&dist("testkit"));
    assert_eq!(host.version("testkit").as_deref(), Some(good.as_str()));

    let testkit = dist("testkit");
    let bad: [(&str, Vec<u8>, &str); 3] = [
        (
            "truncated",
            testkit[..testkit.len() / 2].to_vec(),
            "not a valid component",
        ),
        (
            "core module",
            b"\0asm\x01\0\0\0".to_vec(),
            "core wasm module",
        ),
        ("wrong world", dist("hello"), "message-handler"),
    ];
    for (what, bytes, reason) in bad {
        host.put("testkit.wasm", &bytes);
        let error = eventually(
            Duration::from_secs(30),
            &format!("the {what} file to be rejected"),
            || async {
                let error = host.admin("testkit").await["last_load_error"]
                    .as_str()?
                    .to_string();
                error.contains(reason).then_some(error)
            },
        )
        .await;
        assert!(!error.is_empty());
        assert_eq!(
            host.version("testkit").as_deref(),
            Some(good.as_str()),
            "{what} replaced the good version"
        );
        assert_eq!(
            host.status("/t/ok").await,
            200,
            "the old version stopped serving after the {what} file"
        );
    }

    // A file written in two steps, without the rename: the half-written state is never loaded.
    let payment = dist("payment");
    let path = host.plugins.join("testkit.wasm");
    std::fs::write(&path, &payment[..payment.len() / 2]).unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    std::fs::write(&path, &payment).unwrap();
    host.wait_for_version("testkit", Some(&version_of(&payment)))
        .await;

    host.put("testkit.wasm", &testkit);
    host.wait_for_version("testkit", Some(&good)).await;
    assert_eq!(
        host.admin("testkit").await["last_load_error"],
        serde_json::Value::Null
    );
    assert_eq!(host.status("/t/ok").await, 200);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_the_main_config_rebinds_routes_and_reconfigures_plugins() {
    let main = "[plugin.testkit]\nconfig = { greeting = \"v1\" }\n[[route]]\nmethod = \"GET\"\npath = \"/t/{op}\"\nplugin = \"testkit\"\n";
    let host = Watched::start(main, &[("testkit.wasm", "testkit")]).await;
    let config_value = |path: &'static str| {
        let (client, url) = (host.client.clone(), host.url.clone());
        async move {
            let response = client.get(format!("{url}{path}")).send().await.ok()?;
            let body: serde_json::Value = response.json().await.ok()?;
            body["value"].as_str().map(str::to_string)
        }
    };
    assert_eq!(
        config_value("/t/config?key=greeting").await.as_deref(),
        Some("v1")
    );
    let version = host.version("testkit");

    let file = host.plugins.parent().unwrap().join("eventhost.toml");
    let edited = std::fs::read_to_string(&file)
        .unwrap()
        .replace("greeting = \"v1\"", "greeting = \"v2\"")
        .replace("/t/{op}", "/u/{op}");
    std::fs::write(&file, edited).unwrap();
    eventually(
        Duration::from_secs(30),
        "the edited route and config",
        || async {
            (config_value("/u/config?key=greeting").await.as_deref() == Some("v2")).then_some(())
        },
    )
    .await;
    assert_eq!(host.status("/t/ok").await, 404, "the old route is gone");
    assert_eq!(
        host.version("testkit"),
        version,
        "same code, so the same version"
    );

    // A broken edit changes nothing.
    std::fs::write(&file, "[plugin.testkit\n").unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(host.status("/u/ok").await, 200);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_of_file_events_settle_on_the_last_file_and_free_old_versions() {
    let main = "[plugin.a]\n[plugin.b]\n[[route]]\nmethod = \"GET\"\npath = \"/a/{name}\"\nplugin = \"a\"\n[[route]]\nmethod = \"GET\"\npath = \"/b/{name}\"\nplugin = \"b\"\n";
    let host = Watched::start(main, &[("a.wasm", "hello"), ("b.wasm", "hello")]).await;
    let first_a = Arc::downgrade(&host.host().dispatcher().registry().get("a").unwrap());
    let (hello, catalog) = (dist("hello"), dist("catalog"));
    for round in 0..=30 {
        let (a, b) = if round % 2 == 0 {
            (&catalog, &hello)
        } else {
            (&hello, &catalog)
        };
        host.put("a.wasm", a);
        host.put("b.wasm", b);
        tokio::time::sleep(Duration::from_millis(if round % 5 == 0 { 300 } else { 20 })).await;
    }
    // The last round wrote catalog to a and hello to b.
    host.wait_for_version("a", Some(&version_of(&catalog)))
        .await;
    host.wait_for_version("b", Some(&version_of(&hello))).await;
    assert_eq!(host.status("/b/x").await, 200);
    eventually(
        Duration::from_secs(10),
        "the first version of a to be freed",
        || async { (first_a.upgrade().is_none()).then_some(()) },
    )
    .await;
    host.stop().await;
}

/// Orders with totals 50.00 and 150.00 and a valid card: rules v1 accepts both, v2 fails 150.
fn order(i: usize) -> OutMessage {
    let total = if i.is_multiple_of(2) {
        "50.00"
    } else {
        "150.00"
    };
    let body = serde_json::json!({
        "orderId": format!("o-{i}"), "total": total, "name": "Ada",
        "creditCard": {"number": "4123987754646678", "expiration": "04/29", "nameOnCard": "Ada L"},
        "billingAddress": "1 Loop St"
    });
    OutMessage {
        topic: String::new(),
        key: Some(format!("o-{i}").into_bytes()),
        value: body.to_string().into_bytes(),
        headers: vec![],
    }
}

/// A payment plugin build to swap in: its component in plugins/dist and the `rules` label its
/// results carry; labels ending in `v2` fail the orders above 100.00.
#[derive(Clone, Copy)]
struct PaymentBuild {
    dist: &'static str,
    label: &'static str,
}

const RULES_V1: PaymentBuild = PaymentBuild {
    dist: "payment",
    label: "v1",
};
const RULES_V2: PaymentBuild = PaymentBuild {
    dist: "payment-v2",
    label: "v2",
};

/// Starts the payment plugin as `builds[0]`, then swaps in the next build of `builds` (round
/// robin) four times while at least `min_count` orders flow. Every order must get exactly one
/// result, decided wholly by the version that stamped it.
async fn swap_payment_under_load(
    bus_section: &str,
    suffix: &str,
    min_count: usize,
    builds: &[PaymentBuild],
) {
    let (orders, payments) = (format!("orders{suffix}"), format!("payments{suffix}"));
    let main = format!(
        "{bus_section}\n[[topic]]\nname = \"{orders}\"\npartitions = 3\n[[topic]]\nname = \"{payments}\"\npartitions = 3\n\
         [plugin.payment]\npublish = [\"{payments}\"]\nconfig = {{ payments_topic = \"{payments}\" }}\n\
         [[subscription]]\ntopic = \"{orders}\"\nplugin = \"payment\"\ngroup = \"payment{suffix}\"\n"
    );
    let host = Watched::start(&main, &[("payment.wasm", builds[0].dist)]).await;
    let components: Vec<Vec<u8>> = builds.iter().map(|b| dist(b.dist)).collect();
    // Each version's hash, and the build it is.
    let by_version: BTreeMap<String, PaymentBuild> = components
        .iter()
        .zip(builds)
        .map(|(bytes, build)| (version_of(bytes), *build))
        .collect();
    let bus = host.host().dispatcher().bus().clone();
    let (results, _stop) = collect(&bus, &payments, &format!("observer{suffix}"));

    // Orders flow in paced batches until the last swap is done and at least `min_count` went
    // out, so every version gets orders even when one takes long to compile.
    let swapping = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let producer = {
        let (bus, orders, swapping) = (bus.clone(), orders.clone(), swapping.clone());
        tokio::spawn(async move {
            let mut sent = 0;
            while sent < min_count || swapping.load(std::sync::atomic::Ordering::Relaxed) {
                let messages = (sent..sent + 20)
                    .map(|i| OutMessage {
                        topic: orders.clone(),
                        ..order(i)
                    })
                    .collect();
                bus.publish(messages).await.expect("orders published");
                sent += 20;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            sent
        })
    };
    let swaps = 4;
    for swap in 1..=swaps {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let bytes = &components[swap % builds.len()];
        host.put("payment.wasm", bytes);
        host.wait_for_version("payment", Some(&version_of(bytes)))
            .await;
    }
    // The last version decides orders for a second too.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    swapping.store(false, std::sync::atomic::Ordering::Relaxed);
    let count = producer.await.unwrap();

    let records = eventually(
        Duration::from_secs(180),
        &format!("{count} payment results"),
        || async {
            let seen = results.lock().unwrap();
            (seen.len() >= count).then(|| seen.clone())
        },
    )
    .await;
    let mut per_order: BTreeMap<String, usize> = BTreeMap::new();
    let mut changes_per_partition: BTreeMap<i32, (Option<String>, usize)> = BTreeMap::new();
    for record in &records {
        let result: serde_json::Value = serde_json::from_slice(&record.value).unwrap();
        *per_order
            .entry(result["orderId"].as_str().unwrap().to_string())
            .or_default() += 1;
        let version = header(record, "eventhost-plugin-version").expect("version header");
        // The decision matches the version that stamped it: no input ran half on one version.
        let big = result["orderId"]
            .as_str()
            .unwrap()
            .trim_start_matches("o-")
            .parse::<usize>()
            .unwrap()
            % 2
            == 1;
        let build = by_version
            .get(&version)
            .unwrap_or_else(|| panic!("an unknown version produced {result}"));
        let capped = build.label.ends_with("v2");
        let expected = if big && capped { "FAILED" } else { "COMPLETED" };
        assert_eq!(
            (result["rules"].as_str(), result["status"].as_str()),
            (Some(build.label), Some(expected)),
            "{result}"
        );
        let (last, changes) = changes_per_partition.entry(record.partition).or_default();
        if last.as_deref() != Some(version.as_str()) {
            *changes += usize::from(last.is_some());
            *last = Some(version);
        }
    }
    assert_eq!(per_order.len(), count, "every order got a result");
    assert!(
        per_order.values().all(|n| *n == 1),
        "an order got two results"
    );
    let versions: BTreeSet<_> = records
        .iter()
        .filter_map(|r| header(r, "eventhost-plugin-version"))
        .collect();
    let all: BTreeSet<_> = by_version.keys().cloned().collect();
    assert_eq!(versions, all, "every version decided some orders");
    for (partition, (_, changes)) in changes_per_partition {
        assert!(
            changes <= swaps,
            "partition {partition} switched versions {changes} times for {swaps} swaps"
        );
    }
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_rules_swap_while_orders_flow_on_the_embedded_bus() {
    swap_payment_under_load("", "", 3000, &[RULES_V1, RULES_V2]).await;
}

/// The Rust payment plugin is replaced by the Python one, then the Go one, then Rust again and
/// Python again, while orders flow: each result names the language that decided it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_swaps_between_languages_while_orders_flow() {
    let python = PaymentBuild {
        dist: "payment-py",
        label: "py-v1",
    };
    let go = PaymentBuild {
        dist: "payment-go",
        label: "go-v1",
    };
    swap_payment_under_load("", "-languages", 1500, &[RULES_V1, python, go]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_rules_swap_while_orders_flow_on_kafka() {
    let suffix = crate::common::unique("");
    let bus = crate::common::kafka_bus();
    swap_payment_under_load(&bus, &suffix, 3000, &[RULES_V1, RULES_V2]).await;
}
