//! State writes that passed their conflict check but are not durable yet.
//!
//! An input's writes become visible to later inputs as soon as they passed the check
//! ([`PendingStore::register`]), so an input never waits for an earlier one's durable commit to
//! read what it wrote. One writer task applies them, grouping whatever is waiting (from many
//! inputs and plugins) into one store transaction: at low load an input commits alone and at
//! once; under load the cost of a durable commit is shared.
//!
//! Within a namespace, writes are applied in the order they were registered, and a ticket is
//! applied only after every earlier one of its namespace was handed to the writer. If one
//! cannot be applied (its messages were not acknowledged, or the store failed), every later
//! ticket of the namespace fails too ([`ApplyError::Superseded`]): no input commits on top of
//! state that never became durable.
//!
//! A store other hosts write too checks each ticket's reads once more as it applies them, and
//! may refuse a ticket ([`ApplyError::Conflict`]) while applying the rest of the batch.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use tokio::sync::{mpsc, oneshot, watch};

use std::ops::RangeInclusive;

use super::{Batch, Change, Consumed, OutboxEntry, Reads, Refused, StateError, StateStore, Write};
use crate::metrics::Metrics;
use crate::runtime::OutMessage;

/// Most inputs whose writes go into one store transaction.
const MAX_BATCH: usize = 1024;

/// Why a ticket's writes were not applied.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApplyError {
    /// An earlier ticket of the same namespace was not applied; this one may have read its
    /// writes, so it must run again.
    #[error("an earlier input of the same plugin could not commit")]
    Superseded,
    /// Another host changed what this ticket's input read (a shared store only): it must run
    /// again.
    #[error("the state the input read changed on another host")]
    Conflict,
    /// The store failed; nothing of the batch was applied.
    #[error(transparent)]
    Store(#[from] StateError),
}

/// A [`StateStore`] whose reads see registered, not yet durable writes over the store's own.
pub struct PendingStore {
    store: Arc<dyn StateStore>,
    namespaces: Mutex<HashMap<String, Overlay>>,
    /// Serializes hand-offs, so the writer receives each namespace's tickets in order.
    handoff: Mutex<()>,
    writer: OnceLock<mpsc::UnboundedSender<Request>>,
    next_id: AtomicU64,
    /// Tickets that failed so far: a reader that saw none fail while it ran read nothing that
    /// was withdrawn.
    failures: AtomicU64,
    metrics: Arc<Metrics>,
}

/// A registered value and the ticket that wrote it; `None` deletes.
type Version = (u64, Option<Vec<u8>>);

#[derive(Default)]
struct Overlay {
    /// Key → registered values not yet durable, oldest first.
    values: BTreeMap<String, VecDeque<Version>>,
    /// The newest ticket of this namespace.
    last: Option<Arc<Progress>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Registered,
    HandedOff,
    Applied,
    Failed,
}

/// Where a ticket is, for the tickets registered after it.
struct Progress(watch::Sender<Status>);

impl Progress {
    fn new() -> Arc<Self> {
        Arc::new(Progress(watch::channel(Status::Registered).0))
    }

    fn set(&self, status: Status) {
        self.0.send_replace(status);
    }

    fn failed(&self) -> bool {
        *self.0.borrow() == Status::Failed
    }

    /// Waits until the ticket left the registered state; true if it failed.
    async fn handed_off_or_failed(&self) -> bool {
        let mut status = self.0.subscribe();
        match status.wait_for(|s| *s != Status::Registered).await {
            Ok(status) => *status == Status::Failed,
            Err(_) => true,
        }
    }
}

/// One input's registered writes, until they are applied or withdrawn. Dropping it withdraws
/// them.
pub struct Ticket {
    pending: Arc<PendingStore>,
    namespace: String,
    id: u64,
    change: Change,
    progress: Arc<Progress>,
    previous: Option<Arc<Progress>>,
    settled: bool,
}

struct Request {
    change: Change,
    previous: Option<Arc<Progress>>,
    progress: Arc<Progress>,
    done: oneshot::Sender<Result<(), ApplyError>>,
}

impl PendingStore {
    /// Pending writes over `store`; the size of each group commit goes to `metrics`.
    pub fn new(store: Arc<dyn StateStore>, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(PendingStore {
            store,
            metrics,
            namespaces: Mutex::default(),
            handoff: Mutex::default(),
            writer: OnceLock::new(),
            next_id: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    /// Makes `writes` visible to every later read of `namespace`. The caller has checked the
    /// input's reads against this view and holds the namespace's commit lock, so registrations
    /// of one namespace happen in check order.
    pub fn register(self: &Arc<Self>, namespace: &str, writes: Vec<Write>) -> Ticket {
        let mut namespaces = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        let overlay = namespaces.entry(namespace.to_string()).or_default();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        for (key, value) in &writes {
            overlay
                .values
                .entry(key.clone())
                .or_default()
                .push_back((id, value.clone()));
        }
        let progress = Progress::new();
        let previous = overlay.last.replace(progress.clone());
        Ticket {
            pending: self.clone(),
            namespace: namespace.to_string(),
            id,
            change: Change {
                namespace: namespace.to_string(),
                writes,
                ..Change::default()
            },
            progress,
            previous,
            settled: false,
        }
    }

    /// How many tickets have failed since the store was opened.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::SeqCst)
    }

    /// Whether `namespace` has no registered writes left to apply: everything read from it now
    /// is durable.
    pub fn settled(&self, namespace: &str) -> bool {
        let namespaces = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        namespaces.get(namespace).is_none_or(|overlay| {
            overlay.values.is_empty()
                && (overlay.last.as_ref()).is_none_or(|last| *last.0.borrow() == Status::Applied)
        })
    }

    /// How many keys hold registered, not yet durable writes.
    pub fn pending_keys(&self) -> usize {
        let namespaces = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        namespaces.values().map(|o| o.values.len()).sum()
    }

    fn newest(&self, namespace: &str, key: &str) -> Option<Option<Vec<u8>>> {
        let namespaces = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        let values = namespaces.get(namespace)?.values.get(key)?;
        values.back().map(|(_, value)| value.clone())
    }

    fn newest_under(&self, namespace: &str, prefix: &str) -> Vec<(String, Option<Vec<u8>>)> {
        let namespaces = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        let Some(overlay) = namespaces.get(namespace) else {
            return Vec::new();
        };
        overlay
            .values
            .range(prefix.to_string()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .filter_map(|(key, values)| Some((key.clone(), values.back()?.1.clone())))
            .collect()
    }

    /// Takes ticket `id`'s values out of the view. Once it is `applied`, the store holds them
    /// and older tickets' values of the same keys are out of date: they go too (their tickets
    /// were applied before, or this one could not have been). Ids grow in registration order.
    fn withdraw(&self, namespace: &str, id: u64, applied: bool) {
        let mut namespaces = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        let Some(overlay) = namespaces.get_mut(namespace) else {
            return;
        };
        overlay.values.retain(|_, values| {
            let mine = values.iter().any(|(ticket, _)| *ticket == id);
            if applied && mine {
                values.retain(|(ticket, _)| *ticket > id);
            } else {
                values.retain(|(ticket, _)| *ticket != id);
            }
            !values.is_empty()
        });
        let idle = overlay.values.is_empty()
            && overlay
                .last
                .as_ref()
                .is_none_or(|last| matches!(*last.0.borrow(), Status::Applied | Status::Failed));
        if idle {
            namespaces.remove(namespace);
        }
    }

    fn writer(self: &Arc<Self>) -> &mpsc::UnboundedSender<Request> {
        self.writer.get_or_init(|| {
            let (sender, requests) = mpsc::unbounded_channel();
            // Weak: the store (and its file lock) goes as soon as the host drops this.
            tokio::spawn(write_batches(Arc::downgrade(self), requests));
            sender
        })
    }
}

impl StateStore for PendingStore {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        match self.newest(namespace, key) {
            Some(value) => Ok(value),
            None => self.store.get(namespace, key),
        }
    }

    fn scan(&self, namespace: &str, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        // Pending values first: one applied in between is then in both, and the newer wins.
        let pending = self.newest_under(namespace, prefix);
        let mut merged: BTreeMap<String, Vec<u8>> =
            self.store.scan(namespace, prefix)?.into_iter().collect();
        for (key, value) in pending {
            match value {
                Some(value) => merged.insert(key, value),
                None => merged.remove(&key),
            };
        }
        Ok(merged.into_iter().collect())
    }

    fn apply_batch(&self, batch: &Batch) -> Result<Refused, StateError> {
        self.store.apply_batch(batch)
    }

    fn shared(&self) -> bool {
        self.store.shared()
    }

    fn outbox(
        &self,
        from: &Consumed,
        offsets: RangeInclusive<i64>,
    ) -> Result<Vec<OutboxEntry>, StateError> {
        self.store.outbox(from, offsets)
    }

    fn drop_outbox_below(&self, from: &Consumed, offset: i64) -> Result<(), StateError> {
        self.store.drop_outbox_below(from, offset)
    }

    fn applied(&self, from: &Consumed, offset: i64) -> Result<bool, StateError> {
        self.store.applied(from, offset)
    }
}

impl Ticket {
    /// Stores `entry` in the outbox in the same transaction as the writes.
    pub fn carrying(mut self, entry: OutboxEntry) -> Self {
        self.change.outbox = Some(entry);
        self
    }

    /// Applies the writes only if `reads` still hold in a shared store.
    pub fn reading(mut self, reads: Reads) -> Self {
        self.change.reads = reads;
        self
    }

    /// Has a shared store keep `messages` with the writes and relay them once committed.
    pub fn relaying(mut self, messages: Vec<OutMessage>) -> Self {
        self.change.relay = messages;
        self
    }

    /// Applies the writes durably, after every earlier ticket of the namespace was handed to
    /// the writer. Fails with [`ApplyError::Superseded`] when an earlier one failed.
    pub async fn apply(mut self) -> Result<(), ApplyError> {
        if let Some(previous) = &self.previous
            && previous.handed_off_or_failed().await
        {
            self.fail();
            return Err(ApplyError::Superseded);
        }
        let (done, result) = oneshot::channel();
        let request = Request {
            change: std::mem::take(&mut self.change),
            previous: self.previous.take(),
            progress: self.progress.clone(),
            done,
        };
        let pending = self.pending.clone();
        let sent = {
            let _order = pending.handoff.lock().unwrap_or_else(|e| e.into_inner());
            self.progress.set(Status::HandedOff);
            pending.writer().send(request).is_ok()
        };
        if !sent {
            self.fail();
            return Err(ApplyError::Store(StateError::new(
                "the state writer stopped",
            )));
        }
        let result = result.await.unwrap_or_else(|_| {
            Err(ApplyError::Store(StateError::new(
                "the state writer stopped",
            )))
        });
        if result.is_err() {
            self.progress.set(Status::Failed);
            self.pending.failures.fetch_add(1, Ordering::SeqCst);
        }
        self.settled = true;
        self.pending
            .withdraw(&self.namespace, self.id, result.is_ok());
        result
    }

    /// Withdraws the writes without applying them; later tickets of the namespace fail.
    pub fn abandon(mut self) {
        self.fail();
    }

    fn fail(&mut self) {
        self.progress.set(Status::Failed);
        self.pending.failures.fetch_add(1, Ordering::SeqCst);
        self.settled = true;
        self.pending.withdraw(&self.namespace, self.id, false);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.settled {
            self.fail();
        }
    }
}

/// The writer task: applies waiting requests in batches, in arrival order.
async fn write_batches(
    pending: Weak<PendingStore>,
    mut requests: mpsc::UnboundedReceiver<Request>,
) {
    while let Some(first) = requests.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        // In order, so a refusal also refuses later tickets of the same batch that follow it.
        let mut accepted = Vec::with_capacity(batch.len());
        for request in batch {
            if request.previous.as_ref().is_some_and(|p| p.failed()) {
                request.progress.set(Status::Failed);
                let _ = request.done.send(Err(ApplyError::Superseded));
            } else {
                accepted.push(request);
            }
        }
        let batch = Batch {
            changes: (accepted.iter_mut())
                .map(|r| std::mem::take(&mut r.change))
                .collect(),
        };
        let Some((store, metrics)) = pending
            .upgrade()
            .map(|p| (p.store.clone(), p.metrics.clone()))
        else {
            return;
        };
        metrics.commit_batch(accepted.len());
        let result = match tokio::task::spawn_blocking(move || store.apply_batch(&batch)).await {
            Ok(Ok(refused)) => Ok(refused),
            Ok(Err(e)) => Err(ApplyError::Store(e)),
            Err(join) => Err(ApplyError::Store(StateError::failed(
                "the state task failed",
            )(join))),
        };
        for (n, request) in accepted.into_iter().enumerate() {
            let outcome = match &result {
                Ok(refused) if refused.contains(&n) => Err(ApplyError::Conflict),
                Ok(_) => Ok(()),
                Err(e) => Err(e.clone()),
            };
            request.progress.set(match outcome {
                Ok(()) => Status::Applied,
                Err(_) => Status::Failed,
            });
            let _ = request.done.send(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::state::EmbeddedStore;

    /// A store that fails every batch while `failing` is set, and counts transactions.
    struct Flaky {
        inner: EmbeddedStore,
        failing: AtomicBool,
        batches: Mutex<Vec<usize>>,
    }

    impl StateStore for Flaky {
        fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
            self.inner.get(namespace, key)
        }
        fn scan(&self, ns: &str, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StateError> {
            self.inner.scan(ns, prefix)
        }
        fn apply_batch(&self, batch: &Batch) -> Result<Refused, StateError> {
            if self.failing.load(Ordering::SeqCst) {
                return Err(StateError::new("disk unavailable"));
            }
            self.batches.lock().unwrap().push(batch.changes.len());
            self.inner.apply_batch(batch)
        }
        fn outbox(
            &self,
            from: &Consumed,
            offsets: RangeInclusive<i64>,
        ) -> Result<Vec<OutboxEntry>, StateError> {
            self.inner.outbox(from, offsets)
        }
        fn drop_outbox_below(&self, from: &Consumed, offset: i64) -> Result<(), StateError> {
            self.inner.drop_outbox_below(from, offset)
        }
    }

    fn flaky() -> (tempfile::TempDir, Arc<Flaky>, Arc<PendingStore>) {
        let dir = tempfile::tempdir().unwrap();
        let flaky = Arc::new(Flaky {
            inner: EmbeddedStore::open(&dir.path().join("s.redb")).unwrap(),
            failing: AtomicBool::new(false),
            batches: Mutex::default(),
        });
        let pending = PendingStore::new(flaky.clone(), Arc::default());
        (dir, flaky, pending)
    }

    fn set(key: &str, value: &str) -> Write {
        (key.into(), Some(value.as_bytes().to_vec()))
    }

    #[tokio::test]
    async fn registered_writes_are_read_before_they_are_durable_and_stay_after() {
        let (_dir, flaky, pending) = flaky();
        let first = pending.register("p", vec![set("a", "1"), set("b", "1")]);
        let second = pending.register("p", vec![set("a", "2"), ("b".into(), None)]);
        assert_eq!(pending.get("p", "a").unwrap(), Some(b"2".to_vec()));
        assert_eq!(
            pending.scan("p", "").unwrap(),
            [("a".into(), b"2".to_vec())]
        );
        assert_eq!(flaky.get("p", "a").unwrap(), None, "nothing durable yet");
        let (a, b) = tokio::join!(first.apply(), second.apply());
        a.unwrap();
        b.unwrap();
        assert_eq!(flaky.get("p", "a").unwrap(), Some(b"2".to_vec()));
        assert_eq!(flaky.get("p", "b").unwrap(), None);
        assert_eq!(
            pending.pending_keys(),
            0,
            "applied writes leave the overlay"
        );
    }

    #[tokio::test]
    async fn once_a_newer_write_is_durable_an_older_pending_one_is_no_longer_read() {
        let (_dir, flaky, pending) = flaky();
        let older = pending.register("p", vec![set("k", "1")]);
        let newer = pending.register("p", vec![set("k", "2")]);
        // Both went into one batch; the newer ticket's owner is the first to hear of it.
        flaky.inner.apply("p", &[set("k", "2")]).unwrap();
        pending.withdraw("p", newer.id, true);
        assert_eq!(pending.get("p", "k").unwrap(), Some(b"2".to_vec()));
        drop((older, newer));
    }

    #[tokio::test]
    async fn when_one_ticket_fails_every_later_one_of_its_namespace_fails_and_others_commit() {
        let (_dir, flaky, pending) = flaky();
        let first = pending.register("p", vec![set("k", "1")]);
        let second = pending.register("p", vec![set("k", "2")]);
        let other = pending.register("q", vec![set("k", "x")]);
        // The first input's messages were not acknowledged.
        first.abandon();
        assert!(matches!(second.apply().await, Err(ApplyError::Superseded)));
        other.apply().await.unwrap();
        assert_eq!(flaky.get("p", "k").unwrap(), None, "nothing of p applied");
        assert_eq!(
            pending.get("p", "k").unwrap(),
            None,
            "and nothing is left visible"
        );
        assert_eq!(flaky.get("q", "k").unwrap(), Some(b"x".to_vec()));
        // The namespace works again for later inputs.
        pending
            .register("p", vec![set("k", "3")])
            .apply()
            .await
            .unwrap();
        assert_eq!(flaky.get("p", "k").unwrap(), Some(b"3".to_vec()));
    }

    #[tokio::test]
    async fn a_store_failure_fails_the_batch_and_the_tickets_after_it() {
        let (_dir, flaky, pending) = flaky();
        flaky.failing.store(true, Ordering::SeqCst);
        let first = pending.register("p", vec![set("k", "1")]);
        let second = pending.register("p", vec![set("k", "2")]);
        assert!(matches!(first.apply().await, Err(ApplyError::Store(_))));
        flaky.failing.store(false, Ordering::SeqCst);
        assert!(matches!(second.apply().await, Err(ApplyError::Superseded)));
        assert_eq!(flaky.get("p", "k").unwrap(), None);
        assert_eq!(pending.pending_keys(), 0);
    }

    #[tokio::test]
    async fn an_outbox_entry_is_stored_with_its_writes_or_not_at_all() {
        let (_dir, flaky, pending) = flaky();
        let from = Consumed {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
        };
        let entry = |offset| OutboxEntry {
            from: from.clone(),
            offset,
            messages: Vec::new(),
        };
        flaky.failing.store(true, Ordering::SeqCst);
        let failed = pending
            .register("p", vec![set("k", "1")])
            .carrying(entry(1));
        assert!(failed.apply().await.is_err());
        flaky.failing.store(false, Ordering::SeqCst);
        assert_eq!(
            flaky.outbox(&from, 0..=9).unwrap(),
            [],
            "nothing of the failed batch"
        );
        let applied = pending
            .register("p", vec![set("k", "2")])
            .carrying(entry(2));
        applied.apply().await.unwrap();
        assert_eq!(flaky.get("p", "k").unwrap(), Some(b"2".to_vec()));
        assert_eq!(flaky.outbox(&from, 0..=9).unwrap(), [entry(2)]);
    }

    /// Read-modify-writes as the dispatcher does them: read through the view, check the read
    /// and register under a lock, apply later. Every increment survives.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn checked_increments_through_the_view_never_lose_an_update() {
        let (_dir, flaky, pending) = flaky();
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (pending, lock) = (pending.clone(), lock.clone());
                tokio::spawn(async move {
                    let mut applies = Vec::new();
                    let mut done = 0;
                    while done < 50 {
                        let seen = pending.get("p", "n").unwrap();
                        let n: u64 = seen
                            .as_ref()
                            .map_or(0, |v| String::from_utf8_lossy(v).parse().unwrap());
                        tokio::task::yield_now().await;
                        let ticket = {
                            let _held = lock.lock().await;
                            if pending.get("p", "n").unwrap() != seen {
                                continue;
                            }
                            pending.register("p", vec![set("n", &(n + 1).to_string())])
                        };
                        applies.push(tokio::spawn(ticket.apply()));
                        done += 1;
                    }
                    for apply in applies {
                        apply.await.unwrap().unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(flaky.get("p", "n").unwrap(), Some(b"400".to_vec()));
    }

    #[tokio::test]
    async fn waiting_inputs_share_one_transaction() {
        let (_dir, flaky, pending) = flaky();
        let tickets: Vec<Ticket> = (0..200)
            .map(|i| pending.register(&format!("p{}", i % 3), vec![set(&format!("k{i}"), "v")]))
            .collect();
        futures::future::try_join_all(tickets.into_iter().map(Ticket::apply))
            .await
            .unwrap();
        let batches = flaky.batches.lock().unwrap().clone();
        assert_eq!(batches.iter().sum::<usize>(), 200);
        assert!(
            batches.len() < 200,
            "200 waiting inputs took {} transactions",
            batches.len()
        );
        assert_eq!(flaky.scan("p0", "").unwrap().len(), 67);
    }
}
