//! The release `eventhost` as a subprocess, for the benchmarks that run it (`overload`,
//! `footprint`): started in a folder of its own, its log in that folder, killed when dropped.

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, bail};

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The host built with the same profile as the benchmark (`make bench`: release).
pub fn binary() -> PathBuf {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    root().join("target").join(profile).join("eventhost")
}

/// Copies `plugins/dist/<name>.wasm` for each of `names` into `dir`.
pub fn copy_plugins(dir: &Path, names: &[&str]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    for name in names {
        let wasm = root().join("plugins/dist").join(format!("{name}.wasm"));
        std::fs::copy(&wasm, dir.join(format!("{name}.wasm")))
            .with_context(|| format!("{} (run make plugins)", wasm.display()))?;
    }
    Ok(())
}

/// A running `eventhost run`, killed when dropped.
pub struct HostProcess {
    child: Child,
    /// Where it answers, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    log: PathBuf,
}

impl HostProcess {
    /// Runs `eventhost run <config> --listen 127.0.0.1:0` in `dir` with `env`, logging to
    /// `dir/host.log`, and waits for its `eventhost listening on` line, printed once plugins are
    /// loaded and subscriptions started.
    pub fn start(dir: &Path, config: &Path, env: &[(&str, &str)]) -> anyhow::Result<HostProcess> {
        let binary = binary();
        let log = dir.join("host.log");
        let mut child = Command::new(&binary)
            .current_dir(dir)
            .arg("run")
            .arg(config)
            .args(["--listen", "127.0.0.1:0"])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
        let mut first = String::new();
        stdout.read_line(&mut first)?;
        // Keep draining, so the host never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let Some(url) = first
            .strip_prefix("eventhost listening on ")
            .map(|rest| rest.split_whitespace().next().unwrap_or_default())
        else {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "eventhost did not start: {first:?}; its log ends:\n{}",
                tail(&std::fs::read_to_string(&log)?)
            );
        };
        let url = url.to_string();
        Ok(HostProcess { child, url, log })
    }

    /// The host's process id.
    #[allow(dead_code, reason = "overload does not read the host's memory")]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The host's log so far.
    pub fn log(&self) -> anyhow::Result<String> {
        std::fs::read_to_string(&self.log).with_context(|| self.log.display().to_string())
    }

    /// Fails when the host has exited, with the end of its log.
    pub fn check(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "eventhost exited ({status}); its log ends:\n{}",
                tail(&self.log()?)
            );
        }
        Ok(())
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
