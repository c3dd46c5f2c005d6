//! eventhost under test: the release binary as a subprocess, with a generated config that binds
//! the run's input topic to the payment plugin, as the coolstore's Kafka config does.

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, bail};

use crate::Guarantee;
use crate::broker::Topics;

/// How the host is configured beyond the coolstore's payment subscription.
#[derive(Clone, Debug, Default)]
pub struct HostTuning {
    /// Lines added to the `[[subscription]]` table (`EVENTHOST_BENCH_SUB_EXTRA`).
    pub subscription_extra: String,
    /// Lines added to `[bus.options]` (`EVENTHOST_BENCH_BUS_OPTIONS`).
    pub bus_options: String,
    /// The plugin's `processing_delay_ms`: 0 as shipped, 5000 for the workshop's card processing.
    pub processing_delay_ms: u64,
    /// The plugin's `limits.memory_mib`: 32 as shipped; the interpreters' heaps need 64.
    pub memory_mib: u32,
}

/// What the host needs to run a scenario.
pub struct HostRun<'a> {
    pub binary: &'a Path,
    pub plugin: &'a Path,
    pub bootstrap: &'a str,
    pub topics: &'a Topics,
    pub group: &'a str,
    pub guarantee: Guarantee,
    pub tuning: &'a HostTuning,
}

/// A running `eventhost`, killed when dropped. Its config, state and log live in a temporary
/// folder.
pub struct EventhostProcess {
    child: Child,
    dir: tempfile::TempDir,
}

impl EventhostProcess {
    /// Writes the config, starts the host and waits for its `eventhost listening on` line,
    /// printed once plugins are loaded and subscriptions started.
    pub fn start(run: &HostRun<'_>) -> anyhow::Result<EventhostProcess> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("plugins"))?;
        let config = dir.path().join("eventhost.toml");
        std::fs::write(&config, config_toml(run))?;
        let log = File::create(dir.path().join("host.log"))?;
        let mut child = Command::new(run.binary)
            .arg("run")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", run.binary.display()))?;
        let stdout = child.stdout.take().context("the host's stdout")?;
        let mut process = EventhostProcess { child, dir };
        process.wait_until_listening(stdout)?;
        Ok(process)
    }

    fn wait_until_listening(&mut self, stdout: std::process::ChildStdout) -> anyhow::Result<()> {
        let mut stdout = BufReader::new(stdout);
        let mut first = String::new();
        stdout.read_line(&mut first)?;
        // Keep draining, so the host never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        if !first.starts_with("eventhost listening on ") {
            let _ = self.child.kill();
            bail!(
                "eventhost did not start (first line {first:?}); its log:\n{}",
                self.log_tail()
            );
        }
        Ok(())
    }

    /// Fails when the host has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("eventhost exited ({status}); its log:\n{}", self.log_tail());
        }
        Ok(())
    }

    /// The last lines of the host's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("host.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for EventhostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The coolstore's payment binding (`examples/coolstore/eventhost-kafka.toml`) on the run's
/// topics: same limits, same retry policy, the broker's defaults for everything else.
fn config_toml(run: &HostRun<'_>) -> String {
    let Topics {
        input,
        output,
        partitions,
    } = run.topics;
    let exactly_once = match run.guarantee {
        Guarantee::AtLeastOnce => "",
        Guarantee::ExactlyOnce => "exactly_once = true\n",
    };
    let tuning = run.tuning;
    let bus_options = if tuning.bus_options.trim().is_empty() {
        String::new()
    } else {
        format!("[bus.options]\n{}\n", tuning.bus_options)
    };
    format!(
        r#"[server]
listen = "127.0.0.1:0"

[bus]
kind = "kafka"
bootstrap = "{bootstrap}"
client_id = "pipeline-bench"
{exactly_once}
{bus_options}
[state]
path = "state.redb"

[runtime]
plugins_dir = "plugins"

[[topic]]
name = "{input}"
partitions = {partitions}

[[topic]]
name = "{output}"
partitions = {partitions}

[plugin.payment]
path = "{plugin}"
publish = ["{output}"]
config = {{ processing_delay_ms = {delay}, payments_topic = "{output}" }}
limits = {{ memory_mib = {memory_mib}, timeout_ms = 10000 }}

[[subscription]]
topic = "{input}"
plugin = "payment"
group = "{group}"
retry = {{ attempts = 5, backoff_ms = 200 }}
{subscription_extra}
"#,
        bootstrap = run.bootstrap,
        plugin = run.plugin.display(),
        delay = tuning.processing_delay_ms,
        memory_mib = tuning.memory_mib,
        group = run.group,
        subscription_extra = tuning.subscription_extra,
    )
}

/// The release `eventhost` next to this example (`target/release/examples/pipeline` →
/// `target/release/eventhost`), so both come from the same build profile.
pub fn release_binary() -> anyhow::Result<PathBuf> {
    let example = std::env::current_exe()?;
    let binary = example
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("eventhost"))
        .context("the example's folder")?;
    if !binary.exists() {
        bail!(
            "{} is missing: run `cargo build --release --bin eventhost` (make bench does)",
            binary.display()
        );
    }
    Ok(binary)
}
