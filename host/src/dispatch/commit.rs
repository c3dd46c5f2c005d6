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
