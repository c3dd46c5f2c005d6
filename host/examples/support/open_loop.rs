//! Open-loop load: calls started at a fixed rate whatever the earlier ones do, as independent
//! clients arrive, so a slow answer delays no later call.

use std::time::{Duration, Instant};

/// Starts `call(n)` `rate` times a second for `phase`, each on time, and returns the results in
/// the order the calls started.
pub async fn at_rate<T, F>(rate: u32, phase: Duration, mut call: impl FnMut(usize) -> F) -> Vec<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = Instant::now() + phase;
    let mut started = Vec::new();
    while Instant::now() < end {
        ticks.tick().await;
        started.push(tokio::spawn(call(started.len())));
    }
    let mut results = Vec::with_capacity(started.len());
    for task in started {
        if let Ok(result) = task.await {
            results.push(result);
        }
    }
    results
}
