//! Applying an input's staged effects, in two stages.
//!
//! **Stage**: the input's reads are checked against the current view (durable state plus the
//! writes of earlier inputs still committing), its writes are registered so later inputs read
//! them, and its messages are queued on the bus. This takes the plugin's commit lock briefly
//! and never waits on the network, so the next input can start as soon as it is done.
//!
//! **Settle**: once the bus acknowledged the messages, the writes are applied (grouped with
//! other inputs' writes into one store transaction). Messages are acknowledged before state is
//! written, so a crash in between re-runs the input (at-least-once publishing) rather than
//! losing its messages.
//!
//! A record of an exactly-once subscription queues nothing on the bus: its messages go into
//! the outbox, in the same store transaction as its state writes, and the bus publishes them
//! with its offset once the record is committed (see `bus::transactions`).
//!
//! With a store other hosts write too (PostgreSQL), the host's own check is not the last word:
//! the store checks the reads again when it applies the writes and may refuse them, and the
//! input then runs again. So such an input's messages are not queued at the first stage: they
//! are committed with its writes and relayed to the bus from the store.
//!
//! Both stages run in a task of their own: a caller that goes away (an HTTP client
//! disconnecting) cannot leave a commit half done.

use std::sync::Arc;

use tokio::sync::{OwnedMutexGuard, oneshot};

use super::trace::TRACEPARENT;
use super::{Dispatcher, Input};
use crate::bus::{Acks, BusError};
use crate::runtime::{Effects, OutMessage, PluginInfo};
use crate::state::{ApplyError, Consumed, OutboxEntry, Reads, StateError, StateStore, Ticket};

/// Header naming the plugin that produced a message.
pub const PLUGIN_HEADER: &str = "eventhost-plugin";
/// Header naming the plugin version (content hash) that produced a message.
pub const VERSION_HEADER: &str = "eventhost-plugin-version";
/// Header identifying a message: the input that caused it and its place among that input's
/// messages. A message published again (a re-run after a crash or an outage) has the same id,
/// so consumers can drop duplicates by it.
pub const ID_HEADER: &str = "eventhost-id";

#[derive(Debug, Clone, thiserror::Error)]
pub(super) enum CommitError {
    /// State the input read changed before it could commit: run it again.
    #[error("the state the input read changed")]
    Conflict,
    /// An earlier input of the same plugin could not commit, and this one may have read its
    /// writes: run it again.
    #[error("an earlier input of the same plugin could not commit")]
    Superseded,
    /// The bus failed or refused a message; nothing of the input's state writes was applied.
    #[error(transparent)]
    Bus(BusError),
    /// The store failed; nothing of the input's state writes was applied.
    #[error(transparent)]
    Store(StateError),
    /// The task applying the effects ended before it reported.
    #[error("the commit task failed")]
    TaskFailed,
}

/// A commit past its first stage; resolves once the effects are applied (or cannot be).
pub(super) struct Committing(oneshot::Receiver<Result<(), CommitError>>);

impl Committing {
    /// A commit that had nothing to apply.
    fn done() -> Self {
        let (settled, receiver) = oneshot::channel();
        let _ = settled.send(Ok(()));
        Committing(receiver)
    }

    pub(super) async fn settled(self) -> Result<(), CommitError> {
        self.0.await.unwrap_or(Err(CommitError::TaskFailed))
    }
}

impl Dispatcher {
    /// Commits `effects` of `input` that succeeded on `plugin`: resolves after the first stage.
    /// `exclusive` is the plugin's commit lock when the caller already holds it.
    pub(super) async fn commit(
        self: &Arc<Self>,
        plugin: &Arc<PluginInfo>,
        input: &Input<'_>,
        mut effects: Effects,
        exclusive: Option<OwnedMutexGuard<()>>,
        failures_before: u64,
    ) -> Result<Committing, CommitError> {
        let nothing = effects.outbox.is_empty()
            && effects.reads.is_empty()
            && effects.scans.is_empty()
            && effects.writes.is_empty();
        if nothing {
            // Nothing to check, register or publish: done, without a task of its own.
            return Ok(Committing::done());
        }
        // An input that only read one key (say, a GET of one cart) needs no check and no
        // commit of its own once what it read is durable: one read cannot be torn, and if no
        // registered write is left in its namespace and none failed while it ran, the value it
        // saw was or has become durable. Anything else takes the full path below.
        let one_read = effects.outbox.is_empty()
            && effects.writes.is_empty()
            && effects.scans.is_empty()
            && effects.reads.len() == 1;
        if one_read
            && input.consumed.is_none()
            && !self.pending.shared()
            && self.pending.settled(&plugin.name)
            && self.pending.failures() == failures_before
        {
            return Ok(Committing::done());
        }
        let messages = stamp(plugin, input, std::mem::take(&mut effects.outbox));
        let mut produced: Vec<(String, u64)> = Vec::new();
        for message in &messages {
            match produced
                .iter_mut()
                .find(|(topic, _)| *topic == message.topic)
            {
                Some((_, count)) => *count += 1,
                None => produced.push((message.topic.clone(), 1)),
            }
        }
        let (staged_tx, staged) = oneshot::channel();
        let (settled_tx, settled) = oneshot::channel();
        let (this, plugin, consumed) = (self.clone(), plugin.clone(), input.consumed.clone());
        tokio::spawn(async move {
            let staged = this.stage(&plugin, messages, effects, exclusive, consumed);
            let staged = match staged.await {
                Ok(staged) => {
                    let _ = staged_tx.send(Ok(()));
                    staged
                }
                Err(e) => {
                    let _ = staged_tx.send(Err(e));
                    return;
                }
            };
            let settled = staged.settle().await;
            if settled.is_ok() {
                for (topic, count) in produced {
                    this.metrics.produced(&topic, count);
                }
            }
            let _ = settled_tx.send(settled);
        });
        match staged.await {
            Ok(Ok(())) => Ok(Committing(settled)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(CommitError::TaskFailed),
        }
    }

    async fn stage(
        &self,
        plugin: &PluginInfo,
        messages: Vec<OutMessage>,
        effects: Effects,
        exclusive: Option<OwnedMutexGuard<()>>,
        consumed: Option<(Consumed, i64)>,
    ) -> Result<Staged, CommitError> {
        let pure =
            effects.reads.is_empty() && effects.scans.is_empty() && effects.writes.is_empty();
        let ticket = if pure && (consumed.is_none() || messages.is_empty()) {
            None
        } else {
            let _lock = match exclusive {
                Some(lock) => lock,
                None => self.commit_lock(&plugin.name).lock_owned().await,
            };
            let (pending, name) = (self.pending.clone(), plugin.name.clone());
            let reads = Reads {
                keys: effects.reads.into_iter().collect(),
                scans: effects.scans.into_iter().collect(),
            };
            let writes: Vec<_> = effects.writes.into_iter().collect();
            let checked = tokio::task::spawn_blocking(move || {
                for (key, seen) in &reads.keys {
                    if pending.get(&name, key)? != *seen {
                        return Ok(None);
                    }
                }
                for (prefix, seen) in &reads.scans {
                    if pending.scan(&name, prefix)? != *seen {
                        return Ok(None);
                    }
                }
                let ticket = pending.register(&name, writes);
                // Only a store other hosts write needs them again, to check them at commit.
                Ok::<_, StateError>(Some(if pending.shared() {
                    ticket.reading(reads)
                } else {
                    ticket
                }))
            })
            .await;
            match checked {
                Ok(Ok(Some(ticket))) => Some(ticket),
                Ok(Ok(None)) => return Err(CommitError::Conflict),
                Ok(Err(e)) => return Err(CommitError::Store(e)),
                Err(join) => {
                    let failed = StateError::failed("the read check failed");
                    return Err(CommitError::Store(failed(join)));
                }
            }
        };
        if let Some((from, offset)) = consumed {
            let ticket = ticket.map(|ticket| {
                ticket.carrying(OutboxEntry {
                    from,
                    offset,
                    messages,
                })
            });
            return Ok(Staged { acks: None, ticket });
        }
        // With a shared store the commit can still be refused, so the messages of an input that
        // touched state wait in the store, committed with its writes, and are relayed from there.
        let ticket = match ticket {
            Some(ticket) if self.pending.shared() => {
                let ticket = Some(ticket.relaying(messages));
                return Ok(Staged { acks: None, ticket });
            }
            ticket => ticket,
        };
        // A dropped ticket withdraws its writes, so an error here leaves nothing behind.
        let acks = if messages.is_empty() {
            None
        } else {
            Some(self.bus.enqueue(messages).await.map_err(CommitError::Bus)?)
        };
        Ok(Staged { acks, ticket })
    }
}

/// An input past the first stage of its commit.
struct Staged {
    acks: Option<Acks>,
    ticket: Option<Ticket>,
}

impl Staged {
    async fn settle(self) -> Result<(), CommitError> {
        if let Some(acks) = self.acks
            && let Err(e) = acks.await
        {
            if let Some(ticket) = self.ticket {
                ticket.abandon();
            }
            return Err(CommitError::Bus(e));
        }
        match self.ticket {
            None => Ok(()),
            Some(ticket) => ticket.apply().await.map_err(|e| match e {
                ApplyError::Superseded => CommitError::Superseded,
                ApplyError::Conflict => CommitError::Conflict,
                ApplyError::Store(e) => CommitError::Store(e),
            }),
        }
    }
}

/// Adds the producing plugin's name and version, the message's id and the input's span as its
/// trace parent (replacing any a plugin copied over) to every message, and the CloudEvents
/// attributes when the plugin's config asks for them.
fn stamp(plugin: &PluginInfo, input: &Input<'_>, mut messages: Vec<OutMessage>) -> Vec<OutMessage> {
    let traceparent = input.span.traceparent();
    for (n, message) in messages.iter_mut().enumerate() {
        (message.headers).retain(|(name, _)| !name.eq_ignore_ascii_case(TRACEPARENT));
        message
            .headers
            .push((PLUGIN_HEADER.into(), plugin.name.clone().into_bytes()));
        message
            .headers
            .push((VERSION_HEADER.into(), plugin.version.clone().into_bytes()));
        let id = format!("{}#{n}", input.id);
        if let Some(cloudevents) = &plugin.cloudevents {
            cloudevents.stamp_message(&id, &mut message.headers);
        }
        message.headers.push((ID_HEADER.into(), id.into_bytes()));
        (message.headers).push((TRACEPARENT.into(), traceparent.clone().into_bytes()));
    }
    messages
}

/// The commit path against fakes: a bus whose acknowledgements the test releases or fails, and
/// a store that can be made to fail its commits. No plugin runs; each test stages effects as
/// handlers would have.
#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use futures::future::BoxFuture;
    use tokio::sync::{mpsc, watch};
    use tokio::task::JoinHandle;
    use tokio_util::sync::CancellationToken;

    use super::super::Kind;
    use super::*;
    use crate::bus::{Bus, GroupPosition, Record, RecordHandler, TailFrom, TopicSpec};
    use crate::dispatch::trace::Span;
    use crate::state::{Batch, EmbeddedStore, PendingStore, Refused};

    const NS: &str = "cart";

    /// A bus that only takes messages: their acknowledgement waits for the test's verdict.
    struct HeldAcks {
        verdict: watch::Receiver<Option<bool>>,
        sent: std::sync::Mutex<Vec<OutMessage>>,
    }

    impl Bus for HeldAcks {
        fn enqueue(&self, messages: Vec<OutMessage>) -> BoxFuture<'_, Result<Acks, BusError>> {
            self.sent.lock().unwrap().extend(messages);
            let mut verdict = self.verdict.clone();
            let acks: Acks = Box::pin(async move {
                match *verdict.wait_for(Option::is_some).await.unwrap() {
                    Some(true) => Ok(()),
                    _ => Err(BusError::unavailable("the broker went away", None)),
                }
            });
            Box::pin(async move { Ok(acks) })
        }

        fn ensure_topics(&self, _: Vec<TopicSpec>) -> BoxFuture<'_, Result<(), BusError>> {
            unreachable!("not used by the commit path")
        }

        fn subscribe(
            &self,
            _: &str,
            _: &str,
            _: RecordHandler,
            _: CancellationToken,
        ) -> Result<JoinHandle<()>, BusError> {
            unreachable!("not used by the commit path")
        }

        fn tail(
            &self,
            _: &str,
            _: TailFrom,
        ) -> BoxFuture<'_, Result<mpsc::Receiver<Record>, BusError>> {
            unreachable!("not used by the commit path")
        }

        fn positions(
            &self,
            _: &str,
            _: &str,
        ) -> BoxFuture<'_, Result<Vec<GroupPosition>, BusError>> {
            unreachable!("not used by the commit path")
        }

        fn offsets_at(&self, _: &str, _: i64) -> BoxFuture<'_, Result<Vec<i64>, BusError>> {
            unreachable!("not used by the commit path")
        }

        fn set_positions(
            &self,
            _: &str,
            _: &str,
            _: Vec<(i32, i64)>,
        ) -> BoxFuture<'_, Result<(), BusError>> {
            unreachable!("not used by the commit path")
        }

        fn read(
            &self,
            _: &str,
            _: i32,
            _: i64,
            _: i64,
        ) -> BoxFuture<'_, Result<Vec<Record>, BusError>> {
            unreachable!("not used by the commit path")
        }
    }

    /// The embedded store, whose commits fail while `failing` is set.
    struct Flaky {
        store: EmbeddedStore,
        failing: AtomicBool,
    }

    impl StateStore for Flaky {
        fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
            self.store.get(namespace, key)
        }

        fn scan(
            &self,
            namespace: &str,
            prefix: &str,
        ) -> Result<Vec<(String, Vec<u8>)>, StateError> {
            self.store.scan(namespace, prefix)
        }

        fn apply_batch(&self, batch: &Batch) -> Result<Refused, StateError> {
            if self.failing.load(Ordering::SeqCst) {
                return Err(StateError::new("disk full"));
            }
            self.store.apply_batch(batch)
        }

        fn outbox(
            &self,
            from: &Consumed,
            offsets: std::ops::RangeInclusive<i64>,
        ) -> Result<Vec<OutboxEntry>, StateError> {
            self.store.outbox(from, offsets)
        }

        fn drop_outbox_below(&self, from: &Consumed, offset: i64) -> Result<(), StateError> {
            self.store.drop_outbox_below(from, offset)
        }
    }

    struct Fixture {
        dispatcher: Arc<Dispatcher>,
        store: Arc<Flaky>,
        bus: Arc<HeldAcks>,
        verdict: watch::Sender<Option<bool>>,
        plugin: Arc<PluginInfo>,
        _dir: tempfile::TempDir,
    }

    impl Fixture {
        /// `cart` holds `count = 1`, durably.
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let store = Arc::new(Flaky {
                store: EmbeddedStore::open(&dir.path().join("state.redb")).unwrap(),
                failing: AtomicBool::new(false),
            });
            store.apply(NS, &[write("count", "1")]).unwrap();
            let pending = PendingStore::new(store.clone(), Arc::default());
            let (verdict, held) = watch::channel(None);
            let bus = Arc::new(HeldAcks {
                verdict: held,
                sent: Default::default(),
            });
            let dispatcher = super::super::dispatcher_for_tests(dir.path(), pending, bus.clone());
            let plugin = Arc::new(PluginInfo {
                name: NS.into(),
                version: "v1".into(),
                source: "cart.wasm".into(),
                publish: ["orders".to_string()].into(),
                config: Default::default(),
                memory_bytes: 1 << 20,
                timeout: std::time::Duration::from_secs(1),
                budget: Default::default(),
                concurrency: 1,
                cloudevents: None,
                reuse: None,
            });
            Fixture {
                dispatcher,
                store,
                bus,
                verdict,
                plugin,
                _dir: dir,
            }
        }

        /// Commits what an input of `cart` staged, through the first stage.
        async fn commit(&self, effects: Effects) -> Result<Committing, CommitError> {
            let input = Input {
                plugin: NS,
                kind: Kind::Http,
                source: "http",
                id: "http/test",
                label: "test".into(),
                span: Span::continuing(None),
                consumed: None,
            };
            let failures = self.dispatcher.pending.failures();
            (self.dispatcher)
                .commit(&self.plugin, &input, effects, None, failures)
                .await
        }

        /// `count` as inputs see it now, and as the store holds it.
        fn count(&self) -> (Option<String>, Option<String>) {
            let text = |v: Option<Vec<u8>>| v.map(|v| String::from_utf8(v).unwrap());
            (
                text(self.dispatcher.pending.get(NS, "count").unwrap()),
                text(self.store.get(NS, "count").unwrap()),
            )
        }
    }

    fn write(key: &str, value: &str) -> (String, Option<Vec<u8>>) {
        (key.into(), Some(value.into()))
    }

    /// An input that read `count` as `seen` and wrote `new`, sending one message if `sends`.
    fn bump(seen: &str, new: &str, sends: bool) -> Effects {
        let mut effects = Effects::default();
        effects.reads.extend([write("count", seen)]);
        effects.writes.extend([write("count", new)]);
        if sends {
            effects.outbox.push(OutMessage {
                topic: "orders".into(),
                key: None,
                value: new.into(),
                headers: Vec::new(),
            });
        }
        effects
    }

    fn both(value: &str) -> (Option<String>, Option<String>) {
        (Some(value.into()), Some(value.into()))
    }

    #[tokio::test]
    async fn an_input_that_read_a_stale_value_conflicts_and_applies_nothing() {
        let f = Fixture::new();
        let first = f.commit(bump("1", "2", false)).await.unwrap();
        first.settled().await.unwrap();
        assert_eq!(f.count(), both("2"));
        let stale = f.commit(bump("1", "3", false)).await;
        assert!(
            matches!(stale, Err(CommitError::Conflict)),
            "it read 1, the store holds 2"
        );
        assert_eq!(f.count(), both("2"), "the stale input wrote nothing");
    }

    #[tokio::test]
    async fn writes_are_seen_while_their_messages_wait_and_land_once_acknowledged() {
        let f = Fixture::new();
        let first = f.commit(bump("1", "2", true)).await.unwrap();
        assert_eq!(
            f.count(),
            (Some("2".into()), Some("1".into())),
            "inputs read the staged write; the store waits for the acknowledgement"
        );
        let second = f.commit(bump("2", "3", false)).await.unwrap();
        f.verdict.send(Some(true)).unwrap();
        first.settled().await.unwrap();
        second.settled().await.unwrap();
        assert_eq!(f.count(), both("3"));
        let sent = f.bus.sent.lock().unwrap();
        let headers: Vec<&str> = sent[0].headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            headers,
            [PLUGIN_HEADER, VERSION_HEADER, ID_HEADER, TRACEPARENT],
            "every message names its plugin, version, id and trace parent"
        );
    }

    #[tokio::test]
    async fn a_lost_message_withdraws_its_writes_and_every_input_that_read_them_runs_again() {
        let f = Fixture::new();
        let first = f.commit(bump("1", "2", true)).await.unwrap();
        let reader = f.commit(bump("2", "3", false)).await.unwrap();
        f.verdict.send(Some(false)).unwrap();
        assert!(matches!(first.settled().await, Err(CommitError::Bus(_))));
        assert!(
            matches!(reader.settled().await, Err(CommitError::Superseded)),
            "it read a write that never became durable"
        );
        assert_eq!(f.count(), both("1"), "neither write is visible or stored");
        let again = f.commit(bump("1", "2", false)).await.unwrap();
        again.settled().await.unwrap();
        assert_eq!(
            f.count(),
            both("2"),
            "the re-run commits on the durable value"
        );
    }

    #[tokio::test]
    async fn a_failed_store_commit_is_reported_and_leaves_the_durable_value() {
        let f = Fixture::new();
        f.store.failing.store(true, Ordering::SeqCst);
        let failed = f.commit(bump("1", "2", false)).await.unwrap();
        match failed.settled().await {
            Err(CommitError::Store(e)) => assert!(e.to_string().contains("disk full"), "{e}"),
            other => panic!("expected a store error, got {other:?}"),
        }
        assert_eq!(f.count(), both("1"));
        f.store.failing.store(false, Ordering::SeqCst);
        let again = f.commit(bump("1", "2", false)).await.unwrap();
        again.settled().await.unwrap();
        assert_eq!(f.count(), both("2"));
    }
}
