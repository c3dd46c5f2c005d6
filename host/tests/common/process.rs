//! The real `eventhost` binary as a child process, for tests of what a user runs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

const BIN: &str = env!("CARGO_BIN_EXE_eventhost");

/// How long a host may take to print its first line: compiling a plugin that embeds an
/// interpreter takes ~20 s on two busy cores.
const START: Duration = Duration::from_secs(120);

/// `eventhost run`, killed with SIGKILL if the test ends before it stopped it.
pub struct HostProcess {
    child: Child,
    /// The URL of its `eventhost listening on URL` line.
    pub url: String,
    /// Where its stderr (its log) goes.
    log: PathBuf,
    /// Its stdout after the first line.
    stdout: mpsc::UnboundedReceiver<String>,
}

impl HostProcess {
    /// Runs `eventhost run CONFIG ARGS...` with `RUST_LOG=filter` and its log in `log`, and
    /// waits for its `eventhost listening on URL` line.
    pub async fn start(config: &Path, args: &[&str], filter: &str, log: &Path) -> HostProcess {
        let mut child = Command::new(BIN)
            .arg("run")
            .arg(config)
            .args(args)
            .env("RUST_LOG", filter)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).expect("log file created"))
            .spawn()
            .expect("eventhost spawns");
        // Read on a thread of its own, so the host never blocks on a full pipe.
        let (lines, stdout) = mpsc::unbounded_channel();
        let mut reader = BufReader::new(child.stdout.take().expect("stdout piped"));
        std::thread::spawn(move || {
            let mut line = String::new();
            while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
                if lines.send(std::mem::take(&mut line)).is_err() {
                    let _ = std::io::copy(&mut reader, &mut std::io::sink());
                }
            }
        });
        let mut host = HostProcess {
            child,
            url: String::new(),
            log: log.to_path_buf(),
            stdout,
        };
        let first = host.next_line(START).await;
        match first.trim().strip_prefix("eventhost listening on ") {
            Some(url) => host.url = url.to_string(),
            None => panic!(
                "eventhost did not start (first line {first:?}):\n{}",
                host.log_tail()
            ),
        }
        host
    }

    /// The next line the host prints on stdout.
    async fn next_line(&mut self, within: Duration) -> String {
        match tokio::time::timeout(within, self.stdout.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => panic!("eventhost closed its stdout:\n{}", self.log_tail()),
            Err(_) => panic!(
                "eventhost printed nothing within {within:?}:\n{}",
                self.log_tail()
            ),
        }
    }

    /// The next `count` lines of stdout, such as the start-up summary after the first line.
    pub async fn stdout_lines(&mut self, count: usize) -> Vec<String> {
        let mut lines = Vec::with_capacity(count);
        for _ in 0..count {
            lines.push(self.next_line(Duration::from_secs(30)).await);
        }
        lines
    }

    /// The file its log goes to.
    pub fn log(&self) -> &Path {
        &self.log
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn exited(&mut self) -> bool {
        self.child.try_wait().expect("exit status").is_some()
    }

    /// SIGTERM, then a clean exit (code 0) within 30 s; returns the log.
    pub async fn stop(mut self) -> String {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(sent.success(), "SIGTERM sent");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("exit status") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the host did not exit within 30 s of SIGTERM:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert_eq!(
            status.code(),
            Some(0),
            "the host exited with {status}:\n{log}"
        );
        log
    }

    /// `kill -9`: no shutdown hook, no final commit.
    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL sent");
        let status = self.child.wait().expect("exit status");
        assert!(
            status.code().is_none(),
            "the host had already exited with {status} before the kill:\n{}",
            self.log_tail()
        );
    }

    /// The last lines of the host's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- last lines of {} ---\n{}",
            self.log.display(),
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
