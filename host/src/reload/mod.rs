//! Hot reload: watches the main config file and the plugins folder and applies every change to
//! the running deployment (see [`crate::app::Deployment`]).
//!
//! File events are debounced, then the watcher waits until the plugins folder stops changing
//! (sizes and modification times stable), so a file still being copied is not read. A file
//! that is read half-written anyway fails validation and leaves the old version serving; the
//! write's next event loads it once it is complete.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app::Deployment;
use crate::config::Config;

/// How long the folder must be quiet before a batch of events is applied.
const QUIET: Duration = Duration::from_millis(200);
/// How long file sizes and times must stay the same to count as fully written.
const SETTLE: Duration = Duration::from_millis(150);
/// Give up waiting for writes to settle after this long and let validation decide.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

/// Starts watching `main_config` and `plugins_dir`; the task ends when `shutdown` fires.
pub fn spawn(
    main_config: PathBuf,
    plugins_dir: PathBuf,
    deployment: Arc<Deployment>,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    std::fs::create_dir_all(&plugins_dir)
        .with_context(|| format!("creating {}", plugins_dir.display()))?;
    // Events name canonical paths; loading keeps the paths as configured, so plugin sources
    // compare equal to those the host started with.
    let plugins_dir = plugins_dir.canonicalize()?;
    let watched_config = main_config.canonicalize()?;
    // The callback only signals that something relevant changed: one pending signal is all the
    // debounce needs, so events never pile up in memory however fast files change (a state
    // file beside the config changes with every commit).
    let (changed, mut received) = mpsc::channel::<()>(1);
    let relevant = {
        let (config, dir) = (watched_config.clone(), plugins_dir.clone());
        move |event: &notify::Event| {
            !matches!(event.kind, EventKind::Access(_))
                && event.paths.iter().any(|p| {
                    *p == config
                        || (p.parent() == Some(dir.as_path())
                            && p.extension().is_some_and(|e| e == "wasm" || e == "toml"))
                })
        }
    };
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if relevant(&event) => {
                tracing::debug!(kind = ?event.kind, paths = ?event.paths, "change");
                let _ = changed.try_send(());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("file watch error: {e}"),
        })?;
    // Watch the folder holding the config, not the file: editors replace files by renaming.
    let config_dir = watched_config
        .parent()
        .unwrap_or(Path::new("/"))
        .to_path_buf();
    watcher.watch(&config_dir, RecursiveMode::NonRecursive)?;
    watcher.watch(&plugins_dir, RecursiveMode::NonRecursive)?;
    tracing::info!(config = %watched_config.display(), plugins = %plugins_dir.display(), "watching for changes");
    Ok(tokio::spawn(async move {
        let _watcher = watcher; // dropping it stops the events
        while next_burst(&mut received, &shutdown).await {
            settle(|| snapshot(&plugins_dir)).await;
            apply(&main_config, &deployment).await;
        }
    }))
}

/// Waits for a change, then until no other came for [`QUIET`] (the burst is over). False when
/// the watcher stops (`shutdown`, or the events end).
async fn next_burst(received: &mut mpsc::Receiver<()>, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => return false,
        signal = received.recv() => if signal.is_none() { return false },
    }
    let mut quiet_since = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep_until(quiet_since + QUIET) => return true,
            signal = received.recv() => match signal {
                None => return false,
                Some(()) => quiet_since = tokio::time::Instant::now(),
            },
        }
    }
}

/// Reloads the config with its drop-ins and applies it; a bad config changes nothing.
async fn apply(main_config: &Path, deployment: &Deployment) {
    let config = match Config::load_deployment(main_config) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!(
                "config change not applied, the deployment keeps running as it was: {e}"
            );
            return;
        }
    };
    if let Some(current) = deployment.config().await
        && (current.server != config.server
            || current.bus != config.bus
            || current.state != config.state
            || current.runtime != config.runtime
            || current.telemetry != config.telemetry)
    {
        tracing::warn!(
            "changes to [server], [bus], [state], [runtime] or [telemetry] take effect at the next start"
        );
    }
    let report = deployment.apply(config).await;
    tracing::info!(
        loaded = ?report.loaded,
        unloaded = ?report.unloaded,
        rejected = report.failed.len(),
        "configuration reloaded"
    );
}

/// Waits until `snapshot` (the files' sizes and modification times) stays the same for
/// [`SETTLE`], or [`SETTLE_LIMIT`] passed.
async fn settle<S: PartialEq>(mut snapshot: impl FnMut() -> S) {
    let started = tokio::time::Instant::now();
    let mut before = snapshot();
    loop {
        tokio::time::sleep(SETTLE).await;
        let now = snapshot();
        if now == before || started.elapsed() > SETTLE_LIMIT {
            return;
        }
        before = now;
    }
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((e.path(), meta.len(), meta.modified().ok()))
        })
        .collect();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_changes_is_applied_once_it_has_been_quiet_for_a_while() {
        let (changed, mut received) = mpsc::channel(1);
        let shutdown = CancellationToken::new();
        let started = Instant::now();
        tokio::spawn(async move {
            for gap in [0, 100, 150] {
                tokio::time::sleep(Duration::from_millis(gap)).await;
                changed.send(()).await.unwrap();
            }
            // Keep the channel open: a closed one ends the watcher.
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        assert!(next_burst(&mut received, &shutdown).await);
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(250) + QUIET,
            "once, QUIET after the last change of the burst"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_watcher_stops_on_shutdown_while_waiting_or_debouncing() {
        let (changed, mut received) = mpsc::channel(1);
        let shutdown = CancellationToken::new();
        changed.send(()).await.unwrap();
        let stopping = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(QUIET / 2).await;
            stopping.cancel();
        });
        assert!(!next_burst(&mut received, &shutdown).await);
        drop(changed);
        assert!(!next_burst(&mut received, &CancellationToken::new()).await);
    }

    #[tokio::test(start_paused = true)]
    async fn files_count_as_written_once_they_stay_the_same_for_the_settle_time() {
        let started = Instant::now();
        // A file still growing for three looks, then stable.
        let mut sizes = [10, 20, 30, 40, 40, 40].into_iter();
        settle(|| sizes.next()).await;
        assert_eq!(started.elapsed(), SETTLE * 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_file_that_never_settles_is_given_up_on_after_the_limit() {
        let started = Instant::now();
        let mut size = 0;
        settle(|| {
            size += 1;
            size
        })
        .await;
        let waited = started.elapsed();
        assert!(
            waited > SETTLE_LIMIT && waited <= SETTLE_LIMIT + SETTLE,
            "{waited:?}"
        );
    }
}
