//! One partition's pipeline, shared by both buses: records start in offset order (different
//! keys in parallel up to the handler's concurrency), finish in any order, and the committed
//! offset follows the first record that has not finished (an in-order watermark).
//!
//! When a record's effects cannot be applied ([`Handled::Rerun`]), nothing new starts; once
//! every started record has settled, that record and every later one not yet committed start
//! again, in order. The first of them runs alone, to its end, before the others start: whatever
//! went wrong (e.g. a message the broker refused together with the others of its batch)
//! happens again without company, or not at all. A record is kept in memory until its offset
//! is committed, so a rerun needs nothing from the broker; `max_pending` bounds how many are
//! kept.
//!
//! A source may rewind (Kafka re-delivers from the committed offset after a partition was
//! revoked and assigned again): the pipeline then lets its started records settle and drops
//! what it kept, and goes on from the re-delivered record.

use std::collections::{HashSet, VecDeque};

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use tokio_util::sync::CancellationToken;

use super::{Finish, Handled, Record, RecordHandler};

/// Where a partition's records come from and where its progress goes.
pub(super) trait PartitionSource: Send {
    /// The next record in offset order; `None` once the partition has no more for this
    /// consumer (e.g. it was revoked). Must be cancel-safe: a dropped call loses no record.
    fn next(&mut self) -> BoxFuture<'_, Option<Record>>;

    /// Every record up to and including `offset` is finished.
    fn commit(&mut self, offset: i64);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Waiting,
    Starting,
    Finishing,
    Done,
}

struct Entry {
    record: Record,
    stage: Stage,
}

/// Runs `source`'s records through `handler` until `shutdown` or the end of the partition, then
/// waits for every started record to settle.
pub(super) async fn drive(
    mut source: impl PartitionSource,
    handler: RecordHandler,
    shutdown: CancellationToken,
) {
    let mut entries: VecDeque<Entry> = VecDeque::new();
    let mut starting = FuturesUnordered::new();
    let mut finishing = FuturesUnordered::new();
    let mut rerun_from: Option<i64> = None;
    // The record that runs alone after a rerun, until it is done.
    let mut alone: Option<i64> = None;
    // A record from before the last one read: the source went back to it.
    let mut rewound: Option<Record> = None;
    let mut last_read: Option<i64> = None;
    let (mut stopping, mut open) = (false, true);
    loop {
        if !stopping && rerun_from.is_none() && rewound.is_none() {
            match alone {
                Some(offset) => start_alone(&mut entries, offset, &handler, &mut starting),
                None => start_eligible(&mut entries, &handler, &mut starting),
            }
        }
        let idle = starting.is_empty() && finishing.is_empty();
        if idle && (stopping || (!open && entries.is_empty())) {
            return;
        }
        let can_read = open
            && !stopping
            && rerun_from.is_none()
            && rewound.is_none()
            && entries.len() < handler.max_pending;
        tokio::select! {
            _ = shutdown.cancelled(), if !stopping => stopping = true,
            Some((offset, finish)) = starting.next(), if !starting.is_empty() => {
                set_stage(&mut entries, offset, Stage::Finishing);
                finishing.push(async move { (offset, finish.wait().await) });
            }
            Some((offset, handled)) = finishing.next(), if !finishing.is_empty() => match handled {
                Handled::Commit => {
                    set_stage(&mut entries, offset, Stage::Done);
                    if alone == Some(offset) {
                        alone = None;
                    }
                }
                Handled::Rerun => {
                    rerun_from = Some(rerun_from.map_or(offset, |from: i64| from.min(offset)));
                }
                Handled::Stop => stopping = true,
            },
            record = source.next(), if can_read => match record {
                Some(record) if last_read.is_some_and(|last| record.offset <= last) => {
                    rewound = Some(record);
                }
                Some(record) => {
                    last_read = Some(record.offset);
                    entries.push_back(Entry { record, stage: Stage::Waiting });
                }
                None => open = false,
            },
        }
        if rewound.is_some() && starting.is_empty() && finishing.is_empty() {
            let record = rewound.take().expect("checked");
            tracing::info!(
                topic = record.topic,
                partition = record.partition,
                offset = record.offset,
                "partition re-delivered from an earlier offset; going on from there"
            );
            entries.clear();
            (rerun_from, alone) = (None, None);
            last_read = Some(record.offset);
            entries.push_back(Entry {
                record,
                stage: Stage::Waiting,
            });
            continue;
        }
        if let Some(from) = rerun_from
            && starting.is_empty()
            && finishing.is_empty()
        {
            for entry in entries.iter_mut().filter(|e| e.record.offset >= from) {
                entry.stage = Stage::Waiting;
            }
            rerun_from = None;
            alone = Some(from);
        }
        let mut finished = None;
        while entries.front().is_some_and(|e| e.stage == Stage::Done) {
            finished = entries.pop_front().map(|e| e.record.offset);
        }
        if let Some(offset) = finished {
            source.commit(offset);
        }
    }
}

/// Starts waiting records in offset order while fewer than `concurrency` are starting, skipping
/// a record whose key has an earlier record that has not finished starting.
fn start_eligible(
    entries: &mut VecDeque<Entry>,
    handler: &RecordHandler,
    starting: &mut FuturesUnordered<BoxFuture<'static, (i64, Finish)>>,
) {
    let free = handler.concurrency.saturating_sub(starting.len());
    if free == 0 {
        return;
    }
    let eligible: Vec<usize> = if handler.concurrency == 1 {
        // One at a time: the first waiting record, keys do not matter.
        entries
            .iter()
            .position(|e| e.stage == Stage::Waiting)
            .into_iter()
            .collect()
    } else {
        let mut busy_keys: HashSet<Option<&[u8]>> = HashSet::new();
        let mut eligible = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let key = entry.record.key.as_deref();
            match entry.stage {
                Stage::Starting => {
                    busy_keys.insert(key);
                }
                // A key seen here for the first time has nothing earlier still starting.
                Stage::Waiting if eligible.len() < free && busy_keys.insert(key) => {
                    eligible.push(index);
                }
                _ => {}
            }
        }
        eligible
    };
    for index in eligible {
        let entry = &mut entries[index];
        entry.stage = Stage::Starting;
        let offset = entry.record.offset;
        let start = handler.start(entry.record.clone());
        starting.push(Box::pin(async move { (offset, start.await) }));
    }
}

/// Starts the record at `offset` if it waits; nothing else.
fn start_alone(
    entries: &mut VecDeque<Entry>,
    offset: i64,
    handler: &RecordHandler,
    starting: &mut FuturesUnordered<BoxFuture<'static, (i64, Finish)>>,
) {
    if let Ok(index) = entries.binary_search_by_key(&offset, |e| e.record.offset)
        && entries[index].stage == Stage::Waiting
    {
        entries[index].stage = Stage::Starting;
        let start = handler.start(entries[index].record.clone());
        starting.push(Box::pin(async move { (offset, start.await) }));
    }
}

fn set_stage(entries: &mut VecDeque<Entry>, offset: i64, stage: Stage) {
    // Offsets ascend, but a partition may skip some (compaction, transactions).
    if let Ok(index) = entries.binary_search_by_key(&offset, |e| e.record.offset) {
        entries[index].stage = stage;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use futures::FutureExt;
    use tokio::sync::mpsc;

    use super::*;

    /// A partition of fixed records that reports every commit (also to a log, if any).
    struct Fixed {
        records: VecDeque<Record>,
        commits: mpsc::UnboundedSender<i64>,
        log: Option<Log>,
    }

    impl PartitionSource for Fixed {
        fn next(&mut self) -> BoxFuture<'_, Option<Record>> {
            // Taken when polled, not when called: a dropped call must lose nothing.
            async move {
                match self.records.pop_front() {
                    Some(record) => Some(record),
                    None => std::future::pending().await,
                }
            }
            .boxed()
        }

        fn commit(&mut self, offset: i64) {
            if let Some(log) = &self.log {
                note(log, offset, "commit");
            }
            let _ = self.commits.send(offset);
        }
    }

    fn records(keys: &[&str]) -> VecDeque<Record> {
        keys.iter()
            .enumerate()
            .map(|(offset, key)| Record {
                topic: "t".into(),
                partition: 0,
                offset: offset as i64,
                key: Some(key.as_bytes().to_vec()),
                value: Vec::new(),
                headers: Vec::new(),
                timestamp_ms: None,
            })
            .collect()
    }

    type KeyedOffset = (Vec<u8>, i64);

    /// What a test handler saw: (offset, event) in the order they happened.
    type Log = Arc<Mutex<Vec<(i64, &'static str)>>>;

    fn note(log: &Log, offset: i64, event: &'static str) {
        log.lock().unwrap().push((offset, event));
    }

    async fn run(
        keys: &[&str],
        handler: RecordHandler,
        until_committed: i64,
        log: Option<Log>,
    ) -> Vec<i64> {
        let (commits, mut committed) = mpsc::unbounded_channel();
        let source = Fixed {
            records: records(keys),
            commits,
            log,
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(drive(source, handler, shutdown.clone()));
        let mut seen = Vec::new();
        while seen.last() != Some(&until_committed) {
            let offset = tokio::time::timeout(Duration::from_secs(10), committed.recv())
                .await
                .expect("commits progress")
                .expect("the pipeline runs");
            seen.push(offset);
        }
        shutdown.cancel();
        task.await.unwrap();
        seen
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_starts_before_the_previous_one_finished_and_offsets_commit_in_order() {
        let log: Log = Arc::default();
        let handler = {
            let log = log.clone();
            RecordHandler::pipelined(1, 16, move |record| {
                let log = log.clone();
                async move {
                    note(&log, record.offset, "start");
                    // Earlier records take longer to finish than later ones.
                    let wait = Duration::from_millis(100 * (5 - record.offset as u64));
                    Finish::later(async move {
                        tokio::time::sleep(wait).await;
                        note(&log, record.offset, "finish");
                        Handled::Commit
                    })
                }
                .boxed()
            })
        };
        let commits = run(&["a", "a", "a", "a", "a"], handler, 4, None).await;
        let log = log.lock().unwrap().clone();
        let starts: Vec<i64> = log.iter().filter(|e| e.1 == "start").map(|e| e.0).collect();
        assert_eq!(starts, [0, 1, 2, 3, 4], "records start in offset order");
        let first_finish = log.iter().position(|e| e.1 == "finish").unwrap();
        assert_eq!(
            first_finish, 5,
            "every record started before the first finished"
        );
        // Record 4 finished first, but nothing commits until record 0 has.
        assert_eq!(commits, [4], "one commit once the first record finished");
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_that_cannot_commit_runs_again_with_every_later_one_and_nothing_commits_past_it()
     {
        let log: Log = Arc::default();
        let failures = Arc::new(Mutex::new(1));
        let handler = {
            let (log, failures) = (log.clone(), failures.clone());
            RecordHandler::pipelined(1, 16, move |record| {
                let (log, failures) = (log.clone(), failures.clone());
                async move {
                    note(&log, record.offset, "start");
                    Finish::later(async move {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        let mut failures = failures.lock().unwrap();
                        if record.offset == 1 && *failures > 0 {
                            *failures -= 1;
                            return Handled::Rerun;
                        }
                        Handled::Commit
                    })
                }
                .boxed()
            })
        };
        run(&["a", "b", "c", "d"], handler, 3, Some(log.clone())).await;
        let log = log.lock().unwrap().clone();
        let rerun = log.iter().rposition(|e| *e == (1, "start")).unwrap();
        assert!(
            log[..rerun].iter().all(|e| e.1 != "commit" || e.0 < 1),
            "no offset past the failed record commits before it ran again: {log:?}"
        );
        let starts: Vec<i64> = log.iter().filter(|e| e.1 == "start").map(|e| e.0).collect();
        assert_eq!(
            starts,
            [0, 1, 2, 3, 1, 2, 3],
            "the failed record and every later one ran again, in order"
        );
        let second_start_of_2 = log.iter().rposition(|e| *e == (2, "start")).unwrap();
        assert!(
            log[rerun..second_start_of_2].contains(&(1, "commit")),
            "the failed record ran alone to its end before the next one started: {log:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn different_keys_start_together_and_one_key_keeps_its_order() {
        let running = Arc::new(Mutex::new(HashMap::<Vec<u8>, usize>::new()));
        let order: Arc<Mutex<Vec<KeyedOffset>>> = Arc::default();
        let peak = Arc::new(Mutex::new(0usize));
        let handler = {
            let (running, order, peak) = (running.clone(), order.clone(), peak.clone());
            RecordHandler::pipelined(64, 256, move |record| {
                let (running, order, peak) = (running.clone(), order.clone(), peak.clone());
                async move {
                    let key = record.key.clone().unwrap();
                    {
                        let mut running = running.lock().unwrap();
                        let same_key = running.entry(key.clone()).or_default();
                        assert_eq!(*same_key, 0, "one key runs one record at a time");
                        *same_key += 1;
                        let total: usize = running.values().sum();
                        let mut peak = peak.lock().unwrap();
                        *peak = (*peak).max(total);
                    }
                    order.lock().unwrap().push((key.clone(), record.offset));
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    *running.lock().unwrap().get_mut(&key).unwrap() -= 1;
                    Finish::now(Handled::Commit)
                }
                .boxed()
            })
        };
        let keys: Vec<String> = (0..100).map(|i| format!("k{}", i % 10)).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let started = tokio::time::Instant::now();
        let commits = run(&keys, handler, 99, None).await;
        assert!(commits.windows(2).all(|w| w[0] < w[1]), "commits ascend");
        assert_eq!(*peak.lock().unwrap(), 10, "all ten keys ran at once");
        // Ten rounds of 5 s, not a hundred.
        assert!(started.elapsed() < Duration::from_secs(60));
        let order = order.lock().unwrap();
        for key in 0..10 {
            let key = format!("k{key}").into_bytes();
            let offsets: Vec<i64> = order.iter().filter(|e| e.0 == key).map(|e| e.1).collect();
            assert!(offsets.windows(2).all(|w| w[0] < w[1]), "per-key order");
            assert_eq!(offsets.len(), 10);
        }
    }

    /// Delivers 0..=3, then once 1 is committed, goes back to 2 (as Kafka does from the
    /// committed offset when a partition is taken away and given back).
    struct Rewinding {
        records: VecDeque<Record>,
        committed: Vec<i64>,
        rewound: bool,
    }

    impl PartitionSource for Rewinding {
        fn next(&mut self) -> BoxFuture<'_, Option<Record>> {
            async move {
                if self.records.is_empty() && !self.rewound && self.committed.contains(&1) {
                    // Record 2 is still running: the pipeline must let it settle first.
                    self.rewound = true;
                    self.records = records(&["a", "a", "a", "a"]);
                    self.records.retain(|r| r.offset >= 2);
                }
                match self.records.pop_front() {
                    Some(record) => Some(record),
                    None if self.rewound && self.committed.last() == Some(&3) => None,
                    None => std::future::pending().await,
                }
            }
            .boxed()
        }

        fn commit(&mut self, offset: i64) {
            self.committed.push(offset);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_source_that_goes_back_is_followed_from_where_it_went() {
        let log: Log = Arc::default();
        let handler = {
            let log = log.clone();
            RecordHandler::pipelined(1, 16, move |record| {
                let log = log.clone();
                async move {
                    note(&log, record.offset, "start");
                    // Record 2 is slow, so the source goes back while it runs.
                    let wait = if record.offset == 2 { 50 } else { 10 };
                    Finish::later(async move {
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                        Handled::Commit
                    })
                }
                .boxed()
            })
        };
        let source = Rewinding {
            records: records(&["a", "a", "a", "a"]),
            committed: Vec::new(),
            rewound: false,
        };
        let shutdown = CancellationToken::new();
        tokio::time::timeout(Duration::from_secs(10), drive(source, handler, shutdown))
            .await
            .expect("the pipeline follows the source to its end");
        let starts: Vec<i64> = log.lock().unwrap().iter().map(|e| e.0).collect();
        assert_eq!(
            starts,
            [0, 1, 2, 3, 2, 3],
            "the re-delivered records ran again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopped_record_is_never_committed() {
        let handler = RecordHandler::pipelined(1, 16, |record| {
            async move {
                let handled = if record.offset == 2 {
                    Handled::Stop
                } else {
                    Handled::Commit
                };
                Finish::now(handled)
            }
            .boxed()
        });
        let (commits, mut committed) = mpsc::unbounded_channel();
        let source = Fixed {
            records: records(&["a", "a", "a", "a"]),
            commits,
            log: None,
        };
        // The pipeline ends by itself after the stop.
        drive(source, handler, CancellationToken::new()).await;
        let mut seen = Vec::new();
        while let Ok(offset) = committed.try_recv() {
            seen.push(offset);
        }
        assert_eq!(
            seen.last(),
            Some(&1),
            "commits stop below the stopped record"
        );
    }
}
