//! A fleet: several hosts sharing one PostgreSQL store.
//!
//! A plugin deployed to the store (`eventhost deploy`) reaches every host: each one writes the
//! deployed components into its plugins folder, where its watcher swaps them in exactly as it
//! does a file dropped there by hand. Components are stored once per content hash (their
//! version). Each host also reports itself (id, address, serving versions) every few seconds,
//! for `eventhost plugins`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::runtime::{Registry, version_of};
use crate::state::PostgresStore;

/// How often a host looks for newly deployed versions.
const SYNC_EVERY: Duration = Duration::from_millis(250);

/// How often a host reports itself.
const REPORT_EVERY: Duration = Duration::from_secs(2);

/// A host not heard of for this long is no longer listed.
const GONE_AFTER_SECS: f64 = 10.0;

/// One host of the fleet, as it reported itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostReport {
    /// The host's id (see [`host_id`]).
    pub id: String,
    /// Where it serves HTTP.
    pub url: String,
    /// Plugin name → the version it serves.
    pub plugins: BTreeMap<String, String>,
}

/// The id of a host listening on `listen`: `EVENTHOST_HOST_ID` when set, else the machine's
/// name and the port, which stay the same across restarts (the process id when the port is
/// picked at start).
pub fn host_id(listen: std::net::SocketAddr) -> String {
    if let Ok(id) = std::env::var("EVENTHOST_HOST_ID")
        && !id.trim().is_empty()
    {
        return id;
    }
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into());
    match listen.port() {
        0 => format!("{name}:pid-{}", std::process::id()),
        port => format!("{name}:{port}"),
    }
}

/// Stores `bytes` as plugin `name`'s component and makes it the deployed version; returns the
/// version.
pub async fn deploy(store: &PostgresStore, name: &str, bytes: Vec<u8>) -> anyhow::Result<String> {
    let version = version_of(&bytes);
    let (name, stored) = (name.to_string(), version.clone());
    store
        .with_client(move |mut client| async move {
            let tx = client.transaction().await?;
            tx.execute(
                "INSERT INTO eventhost_components (version, component) VALUES ($1, $2) \
                 ON CONFLICT (version) DO NOTHING",
                &[&stored, &bytes],
            )
            .await?;
            tx.execute(
                "INSERT INTO eventhost_deployments (name, version) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version, deployed_at = now()",
                &[&name, &stored],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await?;
    Ok(version)
}

/// Plugin name → deployed version.
pub async fn deployed(store: &PostgresStore) -> anyhow::Result<BTreeMap<String, String>> {
    store
        .with_client(|client| async move {
            let rows = client
                .query("SELECT name, version FROM eventhost_deployments", &[])
                .await?;
            Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
        })
        .await
}

/// The hosts heard of lately, by id.
pub async fn hosts(store: &PostgresStore) -> anyhow::Result<Vec<HostReport>> {
    store
        .with_client(|client| async move {
            let rows = client
                .query(
                    "SELECT id, url, plugins FROM eventhost_hosts \
                     WHERE seen_at > now() - make_interval(secs => $1) ORDER BY id",
                    &[&GONE_AFTER_SECS],
                )
                .await?;
            rows.iter()
                .map(|row| {
                    Ok(HostReport {
                        id: row.get(0),
                        url: row.get(1),
                        plugins: serde_json::from_str(row.get(2))?,
                    })
                })
                .collect()
        })
        .await
}

async fn report(store: &PostgresStore, host: HostReport) -> anyhow::Result<()> {
    let plugins = serde_json::to_string(&host.plugins)?;
    store
        .with_client(move |client| async move {
            client
                .execute(
                    "INSERT INTO eventhost_hosts (id, url, plugins) VALUES ($1, $2, $3) \
                     ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, \
                     plugins = EXCLUDED.plugins, seen_at = now()",
                    &[&host.id, &host.url, &plugins],
                )
                .await?;
            Ok(())
        })
        .await
}

async fn forget(store: &PostgresStore, id: String) -> anyhow::Result<()> {
    store
        .with_client(move |client| async move {
            client
                .execute("DELETE FROM eventhost_hosts WHERE id = $1", &[&id])
                .await?;
            Ok(())
        })
        .await
}

/// Where plugin `name`'s component goes: its configured file, else `<plugins_dir>/<name>.wasm`.
fn target(config: &Config, name: &str) -> PathBuf {
    match config.plugins.get(name) {
        Some(plugin) => plugin.path.clone(),
        None => config.runtime.plugins_dir.join(format!("{name}.wasm")),
    }
}

/// Writes every deployed component whose file is missing or differs; returns the names written.
pub async fn sync(store: &PostgresStore, config: &Config) -> anyhow::Result<Vec<String>> {
    let mut written = Vec::new();
    for (name, version) in deployed(store).await? {
        let path = target(config, &name);
        let current = tokio::fs::read(&path).await.ok();
        if current.is_some_and(|bytes| version_of(&bytes) == version) {
            continue;
        }
        let wanted = version.clone();
        let bytes: Vec<u8> = store
            .with_client(move |client| async move {
                let row = client
                    .query_one(
                        "SELECT component FROM eventhost_components WHERE version = $1",
                        &[&wanted],
                    )
                    .await?;
                Ok(row.get(0))
            })
            .await?;
        write_atomically(&path, &bytes)
            .await
            .with_context(|| format!("writing {}", path.display()))?;
        tracing::info!(plugin = %name, %version, "deployed from the store");
        written.push(name);
    }
    Ok(written)
}

/// Writes `bytes` beside `path` under a name the watcher ignores, then renames it into place,
/// so the watcher never sees half a file.
async fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    tokio::fs::write(&partial, bytes).await?;
    tokio::fs::rename(&partial, path).await
}

/// Keeps this host in step with the fleet until `stop`: syncs deployed components into the
/// plugins folder and reports the host.
pub fn spawn(
    store: Arc<PostgresStore>,
    config: Config,
    registry: Arc<Registry>,
    me: HostReport,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut reported = None::<(tokio::time::Instant, BTreeMap<String, String>)>;
        loop {
            if let Err(e) = sync(&store, &config).await {
                tracing::warn!("syncing deployed plugins: {e:#}");
            }
            let plugins: BTreeMap<String, String> = (registry.all().into_iter())
                .map(|(plugin, _)| (plugin.info.name.clone(), plugin.info.version.clone()))
                .collect();
            // Now when a version changed, else every few seconds to show it is alive.
            let due = reported
                .as_ref()
                .is_none_or(|(at, last)| at.elapsed() >= REPORT_EVERY || *last != plugins);
            if due {
                let host = HostReport {
                    plugins: plugins.clone(),
                    ..me.clone()
                };
                if let Err(e) = report(&store, host).await {
                    tracing::warn!("reporting to the fleet: {e:#}");
                }
                reported = Some((tokio::time::Instant::now(), plugins));
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(SYNC_EVERY) => {}
            }
        }
        if let Err(e) = forget(&store, me.id).await {
            tracing::warn!("leaving the fleet: {e:#}");
        }
    })
}
