//! The contract test kit behind `eventhost test PLUGIN.wasm CASES...`: runs cases (see
//! [`case`]) against any component through the host's own runtime, one fresh instance per
//! input exactly as `run` would, and reports each difference (see [`check`]).
//!
//! The same case files hold for a plugin in any language: they speak only of inputs, config,
//! outputs, failures and state writes, which is all the contract lets a plugin do.

pub mod case;
mod check;
mod store;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::runtime::{
    Delivery, HttpRequest, LoadedPlugin, Message, PluginInfo, Runtime, RuntimeSettings, unreadable,
    version_of,
};
use case::Case;
use check::Observed;
use store::MemoryStore;

/// How many cases passed and failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Cases whose expectations all held.
    pub passed: usize,
    /// Cases with at least one difference.
    pub failed: usize,
}

/// Runs the cases of `case_paths` (files, or folders of `.toml` files) against the component at
/// `plugin` and writes the report to `out`. An error means the run could not happen (a missing
/// file, a malformed case, a component that does not load); failed cases are in the summary.
pub async fn run(
    plugin: &Path,
    case_paths: &[PathBuf],
    out: &mut impl Write,
) -> anyhow::Result<Summary> {
    let mut cases = Vec::new();
    for file in case::files(case_paths)? {
        cases.extend(case::load(&file)?);
    }
    anyhow::ensure!(!cases.is_empty(), "no cases found in {case_paths:?}");

    let store = Arc::new(MemoryStore::default());
    let largest_memory = cases.iter().map(|c| c.memory_mib).max().unwrap_or(64);
    let settings = RuntimeSettings {
        max_memory_bytes: largest_memory << 20,
        max_instances: 4,
        cache_dir: None,
        max_message_bytes: None,
        guest_threads: None,
    };
    let runtime = Runtime::new(settings, store.clone())?;
    let name = plugin
        .file_stem()
        .map_or("plugin".into(), |s| s.to_string_lossy().into_owned());
    let start = Instant::now();
    let bytes = std::fs::read(plugin).map_err(|e| unreadable(plugin, e));
    let bytes = bytes.with_context(|| format!("cannot load {}", plugin.display()))?;
    let info = PluginInfo {
        name,
        version: version_of(&bytes),
        source: plugin.to_path_buf(),
        publish: Default::default(),
        config: Default::default(),
        memory_bytes: largest_memory << 20,
        timeout: Duration::from_secs(10),
        budget: Default::default(),
        concurrency: 1,
        cloudevents: None,
        reuse: None,
    };
    let loaded = runtime
        .load(info, &bytes)
        .with_context(|| format!("cannot load {}", plugin.display()))?;
    writeln!(
        out,
        "{} (version {}, loaded in {:.2?}): {} cases",
        plugin.display(),
        loaded.info.version,
        start.elapsed(),
        cases.len()
    )?;

    let mut summary = Summary::default();
    for case in &cases {
        let observed = run_case(&runtime, &store, &loaded, case).await?;
        let diffs = check::differences(&case.expect, &observed)
            .with_context(|| format!("case {:?}", case.name))?;
        let took = format!("{:.1?}", observed.elapsed);
        if diffs.is_empty() {
            summary.passed += 1;
            writeln!(out, "  pass  {}  ({took})", case.name)?;
        } else {
            summary.failed += 1;
            writeln!(out, "  FAIL  {}  ({took})", case.name)?;
            for diff in diffs {
                writeln!(out, "        {diff}")?;
            }
        }
    }
    writeln!(out, "{} passed, {} failed", summary.passed, summary.failed)?;
    Ok(summary)
}

/// Runs one case on a fresh instance of the plugin configured as the case says.
async fn run_case(
    runtime: &Runtime,
    store: &MemoryStore,
    loaded: &LoadedPlugin,
    case: &Case,
) -> anyhow::Result<Observed> {
    let mut info = (*loaded.info).clone();
    info.config = case.config.clone();
    info.publish = case.publish.iter().cloned().collect();
    info.timeout = Duration::from_millis(case.timeout_ms);
    info.memory_bytes = case.memory_mib << 20;
    let plugin = runtime.reconfigure(loaded, info)?;
    store.reset(&plugin.info.name, &case.state);

    let label: Arc<str> = format!("case {}", case.name).into();
    let start = Instant::now();
    if let Some(input) = &case.message {
        let delivery = Delivery {
            message: Message {
                topic: input.topic.clone(),
                key: input.key.clone().map(String::into_bytes),
                value: input.payload()?.unwrap_or_default(),
                headers: Vec::new(),
            },
            partition: 0,
            offset: 0,
            timestamp_ms: None,
            attempt: input.attempt,
        };
        let invocation = runtime.handle_message(&plugin, &delivery, label).await;
        let (observed, _) = Observed::new(invocation.outcome, invocation.effects, start.elapsed());
        Ok(observed)
    } else if let Some(input) = &case.http {
        let request = HttpRequest {
            method: input.method.clone(),
            path: input.path.clone(),
            query: input.query.clone(),
            route: input.route.clone().unwrap_or_else(|| input.path.clone()),
            params: input.params.clone().into_iter().collect(),
            headers: input.headers.clone().into_iter().collect(),
            body: input.body.clone().into_bytes(),
        };
        let invocation = runtime.handle_http(&plugin, &request, label).await;
        let (mut observed, response) =
            Observed::new(invocation.outcome, invocation.effects, start.elapsed());
        observed.response = response;
        Ok(observed)
    } else {
        anyhow::bail!("case {:?} has no input", case.name)
    }
}
