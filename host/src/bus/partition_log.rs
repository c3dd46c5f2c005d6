//! One partition of the embedded bus: its records in offset order, where each consumer group
//! stands, and retention.
//!
//! Offsets never go back and are never reused: dropping records moves the partition's start
//! offset up, and the next record appended still gets the end offset. Records are dropped
//! - once every group that consumes the topic has committed past them,
//! - oldest first while the partition holds more than its byte limit (the newest record always
//!   stays), and
//! - once they are older than the age limit.
//!
//! A group counts from the moment it joins (subscribes). It keeps its position when its
//! subscription stops, so a restarted subscription resumes where it was; until then it holds
//! records back, as far as size and age retention let it. A group that never joined holds back
//! nothing: when it joins, it starts at the earliest kept record, as Kafka's
//! `auto.offset.reset=earliest` does. Retention, not consumption, decides what it finds.

use std::collections::{HashMap, VecDeque};
use std::mem::size_of;
use std::sync::Arc;
use std::time::Duration;

use super::Record;

/// Retention limits with the bus's defaults filled in; `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Limits {
    /// Most bytes the partition keeps, counted by [`footprint`].
    pub(super) bytes: Option<u64>,
    /// How long a record is kept after it was published.
    pub(super) age: Option<Duration>,
}

/// What a reader finds at an offset.
#[derive(Debug)]
pub(super) enum Fetch {
    /// The record at that offset.
    Record(Arc<Record>),
    /// Nothing yet: the offset is the end of the log.
    End,
    /// Retention dropped it; the earliest kept record is at `start`.
    Dropped { start: i64 },
}

/// See the module docs.
pub(super) struct PartitionLog {
    records: VecDeque<Arc<Record>>,
    /// The offset of `records[0]`, or the end offset when no record is kept.
    start: i64,
    /// Sum of the kept records' [`footprint`]s.
    bytes: u64,
    limits: Limits,
    /// Group → the next offset it reads (its committed position).
    groups: HashMap<String, i64>,
}

impl PartitionLog {
    pub(super) fn new(limits: Limits) -> Self {
        PartitionLog {
            records: VecDeque::new(),
            start: 0,
            bytes: 0,
            limits,
            groups: HashMap::new(),
        }
    }

    /// The offset of the earliest kept record (the end offset when none is kept).
    pub(super) fn start(&self) -> i64 {
        self.start
    }

    /// The offset the next appended record gets.
    pub(super) fn end(&self) -> i64 {
        self.start + self.records.len() as i64
    }

    /// The kept records' estimated memory, in bytes.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The kept records, oldest first.
    pub(super) fn records(&self) -> impl Iterator<Item = &Arc<Record>> {
        self.records.iter()
    }

    /// Appends `record` at the end offset, which it returns, then applies size and age
    /// retention.
    pub(super) fn append(&mut self, mut record: Record, now_ms: i64) -> i64 {
        let offset = self.end();
        record.offset = offset;
        self.bytes += footprint(&record);
        self.records.push_back(Arc::new(record));
        self.enforce(now_ms);
        offset
    }

    /// The record at `offset`, or why there is none.
    pub(super) fn fetch(&self, offset: i64) -> Fetch {
        if offset < self.start {
            return Fetch::Dropped { start: self.start };
        }
        match self.records.get((offset - self.start) as usize) {
            Some(record) => Fetch::Record(record.clone()),
            None => Fetch::End,
        }
    }

    /// Adds `group` to the readers of this partition, at the earliest kept record unless it
    /// has a position already, and returns its position.
    pub(super) fn join(&mut self, group: &str) -> i64 {
        match self.groups.get(group) {
            Some(next) => *next,
            None => {
                self.groups.insert(group.to_string(), self.start);
                self.start
            }
        }
    }

    /// The position of `group`: the next offset it reads.
    pub(super) fn position(&self, group: &str) -> Option<i64> {
        self.groups.get(group).copied()
    }

    /// Every group holding records of this partition, with its position.
    pub(super) fn positions(&self) -> impl Iterator<Item = (&str, i64)> {
        self.groups
            .iter()
            .map(|(group, next)| (group.as_str(), *next))
    }

    /// Records that `group` is done with everything before `next`, and drops the records every
    /// group is done with.
    pub(super) fn commit(&mut self, group: &str, next: i64, now_ms: i64) {
        self.groups.insert(group.to_string(), next);
        let done = self.groups.values().copied().min().unwrap_or(self.start);
        let mut dropped = 0;
        while self.start < done && self.pop_front() {
            dropped += 1;
        }
        if dropped > 0 {
            self.shrink();
        }
        self.enforce(now_ms);
    }

    /// Moves `group` to `next`, within the kept records, and returns where it went: an
    /// operator's rewind (or skip) of a group that is not reading now.
    pub(super) fn seek(&mut self, group: &str, next: i64, now_ms: i64) -> i64 {
        let next = next.clamp(self.start, self.end());
        self.commit(group, next, now_ms);
        next
    }

    /// The offset of the first kept record published at or after `ms`; the end offset when
    /// there is none.
    pub(super) fn offset_at(&self, ms: i64) -> i64 {
        self.records
            .iter()
            .find(|r| r.timestamp_ms.is_some_and(|t| t >= ms))
            .map_or(self.end(), |r| r.offset)
    }

    /// Replaces the limits and applies them.
    pub(super) fn set_limits(&mut self, limits: Limits, now_ms: i64) {
        self.limits = limits;
        self.enforce(now_ms);
    }

    /// Applies size and age retention; returns how many records were dropped.
    pub(super) fn enforce(&mut self, now_ms: i64) -> usize {
        let mut dropped = 0;
        if let Some(max) = self.limits.bytes {
            while self.bytes > max && self.records.len() > 1 && self.pop_front() {
                dropped += 1;
            }
        }
        if let Some(age) = self.limits.age {
            let oldest_kept =
                now_ms.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
            while self
                .records
                .front()
                .and_then(|r| r.timestamp_ms)
                .is_some_and(|published| published <= oldest_kept)
                && self.pop_front()
            {
                dropped += 1;
            }
        }
        if dropped > 0 {
            self.shrink();
        }
        dropped
    }

    fn pop_front(&mut self) -> bool {
        match self.records.pop_front() {
            Some(record) => {
                self.bytes -= footprint(&record);
                self.start += 1;
                true
            }
            None => false,
        }
    }

    /// Gives memory back after a burst: the queue's capacity follows its length down.
    fn shrink(&mut self) {
        const MIN_CAPACITY: usize = 64;
        let len = self.records.len();
        if self.records.capacity() > MIN_CAPACITY && len < self.records.capacity() / 4 {
            self.records.shrink_to((len * 2).max(MIN_CAPACITY));
        }
    }
}

/// The memory a kept record takes, estimated: its topic, key, value and headers, the fixed
/// size of its structures, and the allocator's overhead per allocation. This is what
/// `retention.bytes` counts on the embedded bus.
pub(super) fn footprint(record: &Record) -> u64 {
    // The record, its `Arc` counters and its slot in the queue.
    const FIXED: usize = size_of::<Record>() + 2 * size_of::<usize>() + size_of::<Arc<Record>>();
    const PER_HEADER: usize = size_of::<(String, Vec<u8>)>();
    // What a general-purpose allocator adds to each block (size class rounding, headers).
    const PER_ALLOCATION: usize = 16;
    let key = record.key.as_deref().unwrap_or_default();
    let mut bytes = FIXED + record.topic.len() + key.len() + record.value.len();
    let mut allocations = 1 + [record.topic.len(), key.len(), record.value.len()]
        .iter()
        .filter(|len| **len > 0)
        .count();
    if !record.headers.is_empty() {
        allocations += 1;
    }
    for (name, value) in &record.headers {
        bytes += PER_HEADER + name.len() + value.len();
        allocations += usize::from(!name.is_empty()) + usize::from(!value.is_empty());
    }
    (bytes + allocations * PER_ALLOCATION) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_LIMITS: Limits = Limits {
        bytes: None,
        age: None,
    };

    fn record(value: &str, published_ms: i64) -> Record {
        Record {
            topic: "t".into(),
            partition: 0,
            offset: -1,
            key: Some(b"k".to_vec()),
            value: value.as_bytes().to_vec(),
            headers: vec![("h".into(), b"v".to_vec())],
            timestamp_ms: Some(published_ms),
        }
    }

    fn log_of(count: usize, limits: Limits) -> PartitionLog {
        let mut log = PartitionLog::new(limits);
        for i in 0..count {
            log.append(record(&format!("v{i}"), 1_000), 1_000);
        }
        log
    }

    fn kept_values(log: &PartitionLog) -> Vec<String> {
        log.records()
            .map(|r| String::from_utf8_lossy(&r.value).into_owned())
            .collect()
    }

    fn fetched_offset(log: &PartitionLog, offset: i64) -> Option<i64> {
        match log.fetch(offset) {
            Fetch::Record(r) => Some(r.offset),
            _ => None,
        }
    }

    #[test]
    fn records_every_group_committed_past_are_dropped() {
        let mut log = log_of(10, NO_LIMITS);
        assert_eq!((log.join("fast"), log.join("slow")), (0, 0));
        log.commit("fast", 8, 1_000);
        assert_eq!(log.start(), 0, "the slow group has read nothing yet");
        log.commit("slow", 3, 1_000);
        assert_eq!(log.start(), 3);
        assert_eq!(kept_values(&log).first().map(String::as_str), Some("v3"));
        log.commit("slow", 10, 1_000);
        assert_eq!((log.start(), log.end()), (8, 10));
        assert_eq!(log.records().count(), 2);
        log.commit("fast", 10, 1_000);
        assert_eq!((log.start(), log.end(), log.bytes()), (10, 10, 0));
    }

    #[test]
    fn offsets_stay_monotonic_after_trimming() {
        let mut log = log_of(5, NO_LIMITS);
        log.join("g");
        log.commit("g", 5, 1_000);
        assert_eq!((log.start(), log.end()), (5, 5));
        assert!(matches!(log.fetch(5), Fetch::End));
        assert_eq!(log.append(record("next", 1_000), 1_000), 5);
        assert_eq!(fetched_offset(&log, 5), Some(5));
        assert!(matches!(log.fetch(4), Fetch::Dropped { start: 5 }));
    }

    #[test]
    fn a_group_that_never_joined_holds_nothing_back_and_joins_at_the_earliest_kept_record() {
        let mut log = log_of(6, NO_LIMITS);
        log.join("first");
        log.commit("first", 4, 1_000);
        assert_eq!(log.start(), 4);
        assert_eq!(
            log.join("late"),
            4,
            "a new group starts at the earliest kept record"
        );
        assert_eq!(log.join("first"), 4, "a known group keeps its position");
        log.commit("first", 6, 1_000);
        assert_eq!(log.start(), 4, "the late group now holds records back");
    }

    #[test]
    fn a_stopped_group_keeps_its_position_and_holds_records_until_size_retention() {
        let one = footprint(&record("v0", 1_000));
        let mut log = log_of(
            3,
            Limits {
                bytes: Some(4 * one),
                age: None,
            },
        );
        log.join("stopped");
        log.commit("stopped", 1, 1_000);
        log.join("running");
        log.commit("running", 3, 1_000);
        assert_eq!(log.start(), 1);
        for i in 3..10 {
            log.append(record(&format!("v{i}"), 1_000), 1_000);
        }
        assert_eq!(
            (log.start(), log.end()),
            (6, 10),
            "size retention still bounds it"
        );
        assert_eq!(log.position("stopped"), Some(1));
        assert!(matches!(log.fetch(1), Fetch::Dropped { start: 6 }));
    }

    #[test]
    fn size_retention_drops_the_oldest_and_keeps_the_newest() {
        let one = footprint(&record("v0", 1_000));
        let log = log_of(
            10,
            Limits {
                bytes: Some(3 * one),
                age: None,
            },
        );
        assert_eq!(kept_values(&log), ["v7", "v8", "v9"]);
        assert_eq!((log.start(), log.end(), log.bytes()), (7, 10, 3 * one));

        let mut tiny = log_of(
            3,
            Limits {
                bytes: Some(1),
                age: None,
            },
        );
        assert_eq!(
            kept_values(&tiny),
            ["v2"],
            "a record larger than the limit stays until the next"
        );
        tiny.append(record("big", 1_000), 1_000);
        assert_eq!(kept_values(&tiny), ["big"]);
    }

    #[test]
    fn age_retention_drops_records_older_than_the_limit() {
        let mut log = PartitionLog::new(Limits {
            bytes: None,
            age: Some(Duration::from_secs(60)),
        });
        log.append(record("old", 1_000), 1_000);
        log.append(record("newer", 31_000), 31_000);
        assert_eq!(log.enforce(60_999), 0);
        assert_eq!(log.enforce(61_000), 1);
        assert_eq!(kept_values(&log), ["newer"]);
        assert_eq!(log.enforce(100_000), 1);
        assert_eq!((log.start(), log.end()), (2, 2));
    }

    #[test]
    fn a_group_behind_retention_finds_its_record_dropped() {
        let mut log = log_of(2, NO_LIMITS);
        log.join("g");
        log.set_limits(
            Limits {
                bytes: None,
                age: Some(Duration::from_millis(10)),
            },
            5_000,
        );
        log.append(record("fresh", 5_000), 5_000);
        assert_eq!(log.position("g"), Some(0));
        assert!(matches!(log.fetch(0), Fetch::Dropped { start: 2 }));
        assert_eq!(fetched_offset(&log, 2), Some(2));
    }

    #[test]
    fn a_group_seeks_back_within_the_kept_records() {
        let mut log = log_of(10, NO_LIMITS);
        log.join("g");
        log.join("other");
        log.commit("other", 2, 1_000);
        log.commit("g", 10, 1_000);
        assert_eq!(log.start(), 2);
        assert_eq!(log.seek("g", 5, 1_000), 5);
        assert_eq!(log.position("g"), Some(5));
        assert_eq!(log.seek("g", 0, 1_000), 2, "no further back than kept");
        assert_eq!(log.seek("g", 99, 1_000), 10, "no further than the end");
        assert_eq!(log.offset_at(1_000), 2);
        assert_eq!(log.offset_at(1_001), 10);
    }

    #[test]
    fn capacity_follows_the_length_down() {
        let mut log = log_of(10_000, NO_LIMITS);
        log.join("g");
        log.commit("g", 9_990, 1_000);
        assert!(log.records.capacity() <= 128, "{}", log.records.capacity());
        assert_eq!(
            log.bytes(),
            log.records().map(|r| footprint(r)).sum::<u64>()
        );
    }
}
