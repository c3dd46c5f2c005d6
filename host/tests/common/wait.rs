//! Waiting for a condition with a deadline, instead of sleeping for a fixed time.

use std::future::Future;
use std::time::{Duration, Instant};

/// What one look at a condition found: done with a value, or not yet (with, for `Result`, a
/// progress report for the failure message).
pub trait Poll<T> {
    fn done(self) -> Result<T, Option<String>>;
}

impl<T> Poll<T> for Option<T> {
    fn done(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T> Poll<T> for Result<T, String> {
    fn done(self) -> Result<T, Option<String>> {
        self.map_err(Some)
    }
}

/// Polls `check` until it returns `Some` (or `Ok`), failing the test after `timeout` with
/// `what` and the last `Err` as progress. Checks follow each other quickly at first and then
/// every tenth of the time waited so far, between 20 ms and 200 ms.
pub async fn eventually<T, P, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    P: Poll<T>,
    F: FnMut() -> Fut,
    Fut: Future<Output = P>,
{
    let started = Instant::now();
    loop {
        let progress = match check().await.done() {
            Ok(value) => return value,
            Err(progress) => progress,
        };
        let waited = started.elapsed();
        assert!(
            waited < timeout,
            "timed out after {timeout:?} waiting for {what}{}",
            progress.map(|p| format!(": {p}")).unwrap_or_default()
        );
        let pause = (waited / 10).clamp(Duration::from_millis(20), Duration::from_millis(200));
        tokio::time::sleep(pause).await;
    }
}
