//! Rebalance handover: a partition taken away from this consumer is released only once the
//! records it already handed to the partition's pipeline have finished (up to
//! [`HANDOVER_WAIT`]). Its next owner, on this host or another, then starts after them: it
//! neither runs them a second time nor overtakes them, so per-key order holds across the move.
//!
//! The partition pipelines report what they take and what finished; the consumer's rebalance
//! callback waits here before librdkafka lets the partitions go.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Longest a rebalance waits for a revoked partition's records; whatever is still running
/// then finishes late (the next owner may run it too: at-least-once, and exactly-once
/// subscriptions refuse the second claim in the store).
pub(super) const HANDOVER_WAIT: Duration = Duration::from_secs(20);

/// Per partition of a consumer: the last offset handed to its pipeline and the last one up to
/// which everything finished.
#[derive(Default)]
pub(super) struct Handover {
    partitions: Mutex<HashMap<(String, i32), (i64, i64)>>,
    finished: Condvar,
    /// The consumer is shutting down: its pipelines stop taking and finishing records, and
    /// what they did not finish stays uncommitted for the next owner.
    closed: std::sync::atomic::AtomicBool,
}

impl Handover {
    /// The pipeline took the record at `offset`.
    pub(super) fn taken(&self, topic: &str, partition: i32, offset: i64) {
        let mut partitions = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        let entry = partitions
            .entry((topic.to_string(), partition))
            .or_insert((offset, offset - 1));
        entry.0 = entry.0.max(offset);
    }

    /// Every record up to `offset` finished.
    pub(super) fn finished(&self, topic: &str, partition: i32, offset: i64) {
        let mut partitions = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = partitions.get_mut(&(topic.to_string(), partition)) {
            entry.1 = entry.1.max(offset);
            self.finished.notify_all();
        }
    }

    /// Stops waiting for anything: the consumer is shutting down.
    pub(super) fn close(&self) {
        let _state = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        (self.closed).store(true, std::sync::atomic::Ordering::SeqCst);
        self.finished.notify_all();
    }

    /// Waits until every record taken from `partitions` finished, or `within` passed, then
    /// forgets them (they start afresh if assigned again); returns the partitions still busy.
    pub(super) fn release(
        &self,
        partitions: &[(String, i32)],
        within: Duration,
    ) -> Vec<(String, i32)> {
        let deadline = Instant::now() + within;
        let mut state = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        let busy = |state: &HashMap<(String, i32), (i64, i64)>| -> Vec<(String, i32)> {
            partitions
                .iter()
                .filter(|p| state.get(*p).is_some_and(|(taken, done)| done < taken))
                .cloned()
                .collect()
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let closed = self.closed.load(std::sync::atomic::Ordering::SeqCst);
            if busy(&state).is_empty() || left.is_zero() || closed {
                break;
            }
            state = match self.finished.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        let still = busy(&state);
        for partition in partitions {
            state.remove(partition);
        }
        still
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn one(topic: &str, partition: i32) -> Vec<(String, i32)> {
        vec![(topic.to_string(), partition)]
    }

    #[test]
    fn a_partition_whose_records_finished_is_released_at_once() {
        let handover = Handover::default();
        handover.taken("t", 0, 5);
        handover.taken("t", 0, 6);
        handover.finished("t", 0, 6);
        let started = Instant::now();
        assert!(
            handover
                .release(&one("t", 0), Duration::from_secs(5))
                .is_empty()
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(
            handover
                .release(&one("t", 9), Duration::from_secs(5))
                .is_empty(),
            "never taken"
        );
    }

    #[test]
    fn a_revoked_partition_waits_for_its_last_record() {
        let handover = Arc::new(Handover::default());
        handover.taken("t", 1, 10);
        handover.taken("t", 1, 11);
        handover.finished("t", 1, 10);
        let finishing = handover.clone();
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            finishing.finished("t", 1, 11);
        });
        let started = Instant::now();
        assert!(
            handover
                .release(&one("t", 1), Duration::from_secs(10))
                .is_empty()
        );
        assert!(started.elapsed() >= Duration::from_millis(150), "it waited");
        late.join().unwrap();
    }

    #[test]
    fn a_record_that_does_not_finish_holds_the_release_only_until_the_limit() {
        let handover = Handover::default();
        handover.taken("t", 2, 3);
        let busy = handover.release(&one("t", 2), Duration::from_millis(50));
        assert_eq!(busy, one("t", 2));
        handover.taken("t", 2, 1);
        assert_eq!(
            handover.release(&one("t", 2), Duration::from_millis(50)),
            one("t", 2),
            "assigned again, it starts afresh from where it is delivered"
        );
    }
}
