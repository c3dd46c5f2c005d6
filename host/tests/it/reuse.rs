//! Instance strategies as a user sees them: a fresh instance per request by default, and with
//! `instance = "reuse"` one instance serving several requests (state left in guest memory is
//! visible to the next), replaced after `reuse_inputs` or at once after a trap.

use crate::common::{self, TestHost};

fn config() -> String {
    let testkit = common::plugin_wasm("testkit");
    let plugin = |name: &str, extra: &str| {
        format!(
            "[plugin.{name}]\npath = \"{}\"\nlimits = {{ memory_mib = 32, timeout_ms = 1000 }}\n{extra}\n\
             [[route]]\nmethod = \"GET\"\npath = \"/{name}/{{op}}\"\nplugin = \"{name}\"\n",
            testkit.display()
        )
    };
    plugin("fresh", "") + &plugin("reused", "instance = \"reuse\"\nreuse_inputs = 3")
}

/// What `op` of `plugin` answers, one request after the other.
async fn answers(host: &TestHost, plugin: &str, op: &str, times: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..times {
        let response = host.get(&format!("/{plugin}/{op}")).await;
        seen.push(format!(
            "{} {}",
            response.status().as_u16(),
            response.text().await.unwrap()
        ));
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_instance_serves_each_request_unless_the_plugin_reuses_them() {
    let host = TestHost::start(&config()).await;
    assert_eq!(
        answers(&host, "fresh", "calls", 3).await,
        ["200 1", "200 1", "200 1"],
        "by default nothing one request leaves in guest memory reaches the next"
    );
    assert_eq!(
        answers(&host, "reused", "calls", 5).await,
        ["200 1", "200 2", "200 3", "200 1", "200 2"],
        "one instance serves reuse_inputs = 3 requests, then a new one takes over"
    );
    let trapped = host.get("/reused/trap").await;
    assert_eq!(trapped.status().as_u16(), 500);
    assert_eq!(
        answers(&host, "reused", "calls", 2).await,
        ["200 1", "200 2"],
        "an instance that trapped is not used again"
    );
}
