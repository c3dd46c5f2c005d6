//! The client side of the admin routes, for `eventhost plugins`.

use std::net::SocketAddr;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::admin::PluginStatus;

/// Fetches `GET /admin/plugins` from the host at `addr`, sending `token` when given.
pub async fn list(addr: SocketAddr, token: Option<&str>) -> anyhow::Result<Vec<PluginStatus>> {
    // A single plain HTTP/1.0 request: no client library needed for a local admin call.
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .context("connecting")?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!("GET /admin/plugins HTTP/1.0\r\nHost: eventhost\r\n{auth}\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").context("malformed response")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        bail!(
            "unexpected answer: {}",
            head.lines().next().unwrap_or_default()
        );
    }
    #[derive(serde::Deserialize)]
    struct Listing {
        plugins: Vec<PluginStatus>,
    }
    Ok(serde_json::from_str::<Listing>(body)
        .context("malformed plugin list")?
        .plugins)
}

/// A table with one plugin per line, and its wiring and errors indented below.
pub fn table(plugins: &[PluginStatus]) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "{:<12} {:<12} {:<20} {:>8} {:>7}  {}\n",
        "PLUGIN", "VERSION", "LOADED", "HANDLED", "FAILED", "SOURCE"
    );
    for p in plugins {
        let _ = writeln!(
            out,
            "{:<12} {:<12} {:<20} {:>8} {:>7}  {}",
            p.name,
            p.version.as_deref().unwrap_or("-"),
            p.loaded_at.as_deref().unwrap_or("-"),
            p.handled,
            p.failed,
            p.source
        );
        for binding in p.routes.iter().chain(&p.subscriptions) {
            let _ = writeln!(out, "    {binding}");
        }
        if let Some(error) = &p.last_load_error {
            let _ = writeln!(out, "    last load rejected: {error}");
        }
    }
    out
}
