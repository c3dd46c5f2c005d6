//! The shared store: PostgreSQL, for several hosts serving one shop.
//!
//! Every host reads and writes the same tables, so the host's own conflict check is not
//! enough. A batch is one serializable transaction that checks each change's reads first and
//! leaves out (refuses) a change whose reads no longer hold: its input runs again. When
//! PostgreSQL aborts the transaction because it raced another host's (a serialization
//! failure), the whole batch runs again.
//!
//! Messages of inputs that touched state are committed with their writes (the relay table)
//! and published from there by one host at a time, in commit order; a host that dies before
//! publishing leaves them to the next.
//!
//! For exactly-once subscriptions, a record's outbox entry is its claim: a second claim of the
//! same record (a host finishing a record of a partition that a rebalance gave to another
//! host, which ran it too) is refused, and so is one below the partition's published mark,
//! where entries were published and dropped. The record then counts as applied.
//!
//! The [`StateStore`] trait is synchronous, as guests call it from inside a call: the store
//! runs its driver on a small runtime of its own and blocks the calling thread on it, as the
//! embedded store blocks on its disk.

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Pool, PoolConfig, Runtime as PoolRuntime, Transaction};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::{IsolationLevel, NoTls};
use tokio_util::sync::CancellationToken;

use super::{Batch, Change, Consumed, OutboxEntry, Refused, StateError, StateStore, outbox};
use crate::bus::Bus;

/// The schema this host creates and understands.
const SCHEMA_VERSION: i32 = 1;

/// Advisory lock ids: one host migrates at a time; one host relays at a time.
const MIGRATE_LOCK: i64 = 0x6576_656e_7468_0001;
const RELAY_LOCK: i64 = 0x6576_656e_7468_0002;

/// Connections per host.
const POOL_SIZE: usize = 16;

/// How often a batch that raced another host's transaction runs again before the store gives
/// up on it.
const MAX_ATTEMPTS: u32 = 50;

/// Most relayed entries published in one go.
const RELAY_BATCH: i64 = 256;

/// How often the relay looks for entries no host has announced (one left by a host that died).
const RELAY_POLL: Duration = Duration::from_secs(1);

/// Keys compare byte by byte (collation "C"), as in the embedded store.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS eventhost_schema (version integer NOT NULL);
CREATE TABLE IF NOT EXISTS eventhost_state (
    namespace text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (namespace, key)
);
CREATE TABLE IF NOT EXISTS eventhost_outbox (
    consumer_group text NOT NULL,
    topic text NOT NULL,
    partition integer NOT NULL,
    record_offset bigint NOT NULL,
    messages bytea NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition, record_offset)
);
CREATE TABLE IF NOT EXISTS eventhost_published (
    consumer_group text NOT NULL,
    topic text NOT NULL,
    partition integer NOT NULL,
    below bigint NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition)
);
CREATE TABLE IF NOT EXISTS eventhost_relay (
    id bigserial PRIMARY KEY,
    messages bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS eventhost_components (
    version text PRIMARY KEY,
    component bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS eventhost_deployments (
    name text PRIMARY KEY,
    version text NOT NULL REFERENCES eventhost_components (version),
    deployed_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS eventhost_hosts (
    id text PRIMARY KEY,
    url text NOT NULL,
    plugins text NOT NULL,
    seen_at timestamptz NOT NULL DEFAULT now()
);
"#;

/// A key's entries under a prefix: `left` keeps the range scan exact for any prefix.
const SCAN: &str = "SELECT key, value FROM eventhost_state \
    WHERE namespace = $1 AND key >= $2 AND left(key, char_length($2)) = $2 ORDER BY key";

/// A [`StateStore`] in a PostgreSQL database that several hosts share.
pub struct PostgresStore {
    pool: Pool,
    /// Taken out on drop, to be shut down without blocking an async caller.
    runtime: Option<tokio::runtime::Runtime>,
    /// Woken when a commit added messages to relay.
    relayed: Arc<Notify>,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/database`) and creates or migrates the
    /// schema.
    pub fn open(url: &str) -> Result<Self, StateError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("eventhost-postgres")
            .enable_all()
            .build()
            .map_err(StateError::failed("cannot start the PostgreSQL driver"))?;
        let config = deadpool_postgres::Config {
            url: Some(url.to_string()),
            pool: Some(PoolConfig::new(POOL_SIZE)),
            ..Default::default()
        };
        let pool = {
            let _entered = runtime.enter();
            config
                .create_pool(Some(PoolRuntime::Tokio1), NoTls)
                .map_err(StateError::failed(format!(
                    "invalid PostgreSQL url {}",
                    redacted(url)
                )))?
        };
        let store = PostgresStore {
            pool,
            runtime: Some(runtime),
            relayed: Arc::default(),
        };
        let (pool, shown) = (store.pool.clone(), redacted(url));
        store.block(async move {
            let mut client = pool.get().await.map_err(StateError::failed(format!(
                "cannot connect to PostgreSQL at {shown}"
            )))?;
            migrate(&mut client).await
        })?;
        Ok(store)
    }

    /// Publishes the relayed messages to `bus` until `stop`: those this host commits and any
    /// another host left behind. Once stopped, it publishes what is left and ends.
    pub fn relay(&self, bus: Arc<dyn Bus>, stop: CancellationToken) -> JoinHandle<()> {
        let (pool, relayed) = (self.pool.clone(), self.relayed.clone());
        self.runtime().spawn(async move {
            let mut wait = Duration::ZERO;
            loop {
                tokio::select! {
                    () = stop.cancelled() => {
                        while let Ok(Relayed::Some) = relay_once(&pool, bus.as_ref()).await {}
                        return;
                    }
                    () = relayed.notified() => {}
                    () = tokio::time::sleep(wait) => {}
                }
                wait = match relay_once(&pool, bus.as_ref()).await {
                    Ok(Relayed::Some) => Duration::ZERO,
                    Ok(Relayed::Nothing) => RELAY_POLL,
                    // Another host is relaying; look again soon, in case it just finished.
                    Ok(Relayed::Busy) => Duration::from_millis(20),
                    Err(e) => {
                        tracing::warn!("relaying messages from PostgreSQL: {e:#}");
                        RELAY_POLL
                    }
                };
            }
        })
    }

    /// Runs `work` with a connection of the pool, on the driver's runtime, for queries of
    /// tables beside the state (the fleet's).
    pub async fn with_client<T, F, Fut>(&self, work: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(deadpool_postgres::Object) -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<T>> + Send,
    {
        let pool = self.pool.clone();
        let task = self
            .runtime()
            .spawn(async move { work(pool.get().await?).await });
        task.await?
    }

    /// The rows of `query` (a prepared statement, kept per connection) for a namespace and a
    /// key or prefix.
    fn rows(
        &self,
        query: &'static str,
        what: &'static str,
        namespace: &str,
        key: &str,
    ) -> Result<Vec<tokio_postgres::Row>, StateError> {
        let (pool, namespace, key) = (self.pool.clone(), namespace.to_string(), key.to_string());
        self.block(async move {
            let client = (pool.get().await).map_err(StateError::failed("cannot connect"))?;
            let statement =
                (client.prepare_cached(query).await).map_err(StateError::failed(what))?;
            (client.query(&statement, &[&namespace, &key]).await).map_err(StateError::failed(what))
        })
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime lives until drop")
    }

    /// Runs `work` on the driver's runtime and waits for it.
    fn block<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, StateError>> + Send + 'static,
    ) -> Result<T, StateError> {
        let task = self.runtime().spawn(work);
        futures::executor::block_on(task)
            .map_err(StateError::failed("the PostgreSQL task failed"))?
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Creates the tables, once per database: hosts starting together take turns.
async fn migrate(client: &mut deadpool_postgres::Client) -> Result<(), StateError> {
    let failed = || StateError::failed("cannot create the schema");
    let tx = client.transaction().await.map_err(failed())?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .await
        .map_err(failed())?;
    // Not a notice per existing table at every start.
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .await
        .map_err(failed())?;
    tx.batch_execute(SCHEMA).await.map_err(failed())?;
    let found = tx
        .query_opt("SELECT max(version) FROM eventhost_schema", &[])
        .await
        .map_err(failed())?
        .and_then(|row| row.get::<_, Option<i32>>(0));
    match found {
        None => {
            tx.execute(
                "INSERT INTO eventhost_schema (version) VALUES ($1)",
                &[&SCHEMA_VERSION],
            )
            .await
            .map_err(failed())?;
        }
        Some(version) if version > SCHEMA_VERSION => {
            return Err(StateError::new(format!(
                "the database has schema version {version}, newer than this host's \
                 {SCHEMA_VERSION}: upgrade the host"
            )));
        }
        Some(_) => {}
    }
    tx.commit().await.map_err(failed())
}

/// `url` without its password, for messages.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{name}:***@{host}")
        }
        _ => url.to_string(),
    }
}

impl StateStore for PostgresStore {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let query = "SELECT value FROM eventhost_state WHERE namespace = $1 AND key = $2";
        let rows = self.rows(query, "cannot read", namespace, key)?;
        Ok(rows.first().map(|row| row.get(0)))
    }

    fn scan(&self, namespace: &str, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        let rows = self.rows(SCAN, "cannot scan", namespace, prefix)?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
    }

    fn apply_batch(&self, batch: &Batch) -> Result<Refused, StateError> {
        if batch.is_empty() && batch.changes.iter().all(|c| c.reads.is_empty()) {
            return Ok(Refused::new());
        }
        let (pool, batch) = (self.pool.clone(), batch.clone());
        let relays = batch.changes.iter().any(|c| !c.relay.is_empty());
        let refused = self.block(async move {
            let mut attempt = 0;
            loop {
                attempt += 1;
                match apply_once(&pool, &batch).await {
                    Ok(refused) => return Ok(refused),
                    Err(e) if retryable(&e) && attempt < MAX_ATTEMPTS => {
                        // Spread out the hosts that raced, so that one of them wins next time.
                        let spread = uuid::Uuid::new_v4().as_u64_pair().0 % (2 + attempt as u64);
                        tokio::time::sleep(Duration::from_millis(spread)).await;
                    }
                    Err(e) => return Err(StateError::failed("cannot commit")(e)),
                }
            }
        })?;
        if relays {
            self.relayed.notify_one();
        }
        Ok(refused)
    }

    fn shared(&self) -> bool {
        true
    }

    fn outbox(
        &self,
        from: &Consumed,
        offsets: RangeInclusive<i64>,
    ) -> Result<Vec<OutboxEntry>, StateError> {
        let (pool, from) = (self.pool.clone(), from.clone());
        self.block(async move {
            let client = pool
                .get()
                .await
                .map_err(StateError::failed("cannot connect"))?;
            let rows = client
                .query(
                    "SELECT record_offset, messages FROM eventhost_outbox \
                     WHERE consumer_group = $1 AND topic = $2 AND partition = $3 \
                     AND record_offset BETWEEN $4 AND $5 ORDER BY record_offset",
                    &[
                        &from.group,
                        &from.topic,
                        &from.partition,
                        offsets.start(),
                        offsets.end(),
                    ],
                )
                .await
                .map_err(StateError::failed("cannot read the outbox"))?;
            rows.iter()
                .map(|row| {
                    Ok(OutboxEntry {
                        from: from.clone(),
                        offset: row.get(0),
                        messages: outbox::decode(row.get(1))?,
                    })
                })
                .collect()
        })
    }

    fn drop_outbox_below(&self, from: &Consumed, offset: i64) -> Result<(), StateError> {
        let (pool, from) = (self.pool.clone(), from.clone());
        self.block(async move {
            let failed = || StateError::failed("cannot trim the outbox");
            let mut client = pool
                .get()
                .await
                .map_err(StateError::failed("cannot connect"))?;
            // The mark moves first: a late claim of a record below it then waits, and fails.
            let tx = client.transaction().await.map_err(failed())?;
            tx.execute(
                "INSERT INTO eventhost_published (consumer_group, topic, partition, below) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (consumer_group, topic, partition) \
                 DO UPDATE SET below = GREATEST(eventhost_published.below, EXCLUDED.below)",
                &[&from.group, &from.topic, &from.partition, &offset],
            )
            .await
            .map_err(failed())?;
            tx.execute(
                "DELETE FROM eventhost_outbox WHERE consumer_group = $1 AND topic = $2 \
                 AND partition = $3 AND record_offset < $4",
                &[&from.group, &from.topic, &from.partition, &offset],
            )
            .await
            .map_err(failed())?;
            tx.commit().await.map_err(failed())
        })
    }

    fn applied(&self, from: &Consumed, offset: i64) -> Result<bool, StateError> {
        let (pool, from) = (self.pool.clone(), from.clone());
        self.block(async move {
            let client = pool
                .get()
                .await
                .map_err(StateError::failed("cannot connect"))?;
            let row = client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM eventhost_outbox WHERE consumer_group = $1 \
                     AND topic = $2 AND partition = $3 AND record_offset = $4) \
                     OR EXISTS (SELECT 1 FROM eventhost_published WHERE consumer_group = $1 \
                     AND topic = $2 AND partition = $3 AND below > $4)",
                    &[&from.group, &from.topic, &from.partition, &offset],
                )
                .await
                .map_err(StateError::failed("cannot read the outbox"))?;
            Ok(row.get(0))
        })
    }
}

/// Why a batch's transaction failed: the database, or the pool before it.
#[derive(Debug, thiserror::Error)]
enum TxError {
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
}

/// A transaction that raced another host's, which PostgreSQL aborted: running it again can
/// succeed.
fn retryable(error: &TxError) -> bool {
    let TxError::Db(error) = error else {
        return false;
    };
    matches!(
        error.code(),
        Some(&SqlState::T_R_SERIALIZATION_FAILURE | &SqlState::T_R_DEADLOCK_DETECTED)
    )
}

/// One attempt at a batch: checks and applies each change in order, in one transaction.
async fn apply_once(pool: &Pool, batch: &Batch) -> Result<Refused, TxError> {
    let mut client = pool.get().await?;
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::Serializable)
        .start()
        .await?;
    let mut refused = Refused::new();
    for (n, change) in batch.changes.iter().enumerate() {
        let applied = holds(&tx, change).await? && claim(&tx, change).await? && {
            write(&tx, change).await?;
            true
        };
        if !applied {
            refused.push(n);
        }
    }
    tx.commit().await?;
    Ok(refused)
}

/// True when everything `change`'s input read is still what it saw.
async fn holds(tx: &Transaction<'_>, change: &Change) -> Result<bool, tokio_postgres::Error> {
    let reads = &change.reads;
    if !reads.keys.is_empty() {
        let keys: Vec<&str> = reads.keys.iter().map(|(key, _)| key.as_str()).collect();
        let rows = tx
            .query(
                "SELECT key, value FROM eventhost_state WHERE namespace = $1 AND key = ANY($2)",
                &[&change.namespace, &keys],
            )
            .await?;
        let now: BTreeMap<String, Vec<u8>> =
            rows.iter().map(|row| (row.get(0), row.get(1))).collect();
        if reads
            .keys
            .iter()
            .any(|(key, seen)| now.get(key) != seen.as_ref())
        {
            return Ok(false);
        }
    }
    for (prefix, seen) in &reads.scans {
        let rows = tx.query(SCAN, &[&change.namespace, prefix]).await?;
        let now: Vec<(String, Vec<u8>)> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
        if now != *seen {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Adds `change`'s outbox entry, if it has one; false when its record was applied already: its
/// entry is there, or it is below what was published. That happens when a host still finishes
/// a record of a partition a rebalance gave to another host, which ran it too.
async fn claim(tx: &Transaction<'_>, change: &Change) -> Result<bool, tokio_postgres::Error> {
    let Some(entry) = &change.outbox else {
        return Ok(true);
    };
    let from = &entry.from;
    let key: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
        [&from.group, &from.topic, &from.partition];
    tx.execute(
        "INSERT INTO eventhost_published (consumer_group, topic, partition, below) \
         VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING",
        &key,
    )
    .await?;
    // Shared: the publisher moving the mark waits for this transaction, or this one sees its
    // move (or fails to serialize, and runs again).
    let below: i64 = tx
        .query_one(
            "SELECT below FROM eventhost_published \
             WHERE consumer_group = $1 AND topic = $2 AND partition = $3 FOR SHARE",
            &key,
        )
        .await?
        .get(0);
    if entry.offset < below {
        return Ok(false);
    }
    let added = tx
        .execute(
            "INSERT INTO eventhost_outbox \
             (consumer_group, topic, partition, record_offset, messages) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (consumer_group, topic, partition, record_offset) DO NOTHING",
            &[
                &from.group,
                &from.topic,
                &from.partition,
                &entry.offset,
                &outbox::encode(&entry.messages),
            ],
        )
        .await?;
    Ok(added == 1)
}

/// Applies `change`: its writes (the last of each key) and relayed messages.
async fn write(tx: &Transaction<'_>, change: &Change) -> Result<(), tokio_postgres::Error> {
    let last: BTreeMap<&str, Option<&[u8]>> = (change.writes.iter())
        .map(|(key, value)| (key.as_str(), value.as_deref()))
        .collect();
    let (mut keys, mut values, mut gone) = (Vec::new(), Vec::new(), Vec::new());
    for (key, value) in last {
        match value {
            Some(value) => {
                keys.push(key);
                values.push(value);
            }
            None => gone.push(key),
        }
    }
    if !keys.is_empty() {
        tx.execute(
            "INSERT INTO eventhost_state (namespace, key, value) \
             SELECT $1, k, v FROM unnest($2::text[], $3::bytea[]) AS t(k, v) \
             ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value",
            &[&change.namespace, &keys, &values],
        )
        .await?;
    }
    if !gone.is_empty() {
        tx.execute(
            "DELETE FROM eventhost_state WHERE namespace = $1 AND key = ANY($2)",
            &[&change.namespace, &gone],
        )
        .await?;
    }
    if !change.relay.is_empty() {
        tx.execute(
            "INSERT INTO eventhost_relay (messages) VALUES ($1)",
            &[&outbox::encode(&change.relay)],
        )
        .await?;
    }
    Ok(())
}

enum Relayed {
    Some,
    Nothing,
    Busy,
}

/// Publishes the oldest relayed entries and deletes them, in one transaction that holds the
/// relay lock: a crash before the delete commits leaves them for the next try (at least once,
/// with the same ids, so consumers drop copies).
async fn relay_once(pool: &Pool, bus: &dyn Bus) -> anyhow::Result<Relayed> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let locked: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&RELAY_LOCK])
        .await?
        .get(0);
    if !locked {
        return Ok(Relayed::Busy);
    }
    let rows = tx
        .query(
            "SELECT id, messages FROM eventhost_relay ORDER BY id LIMIT $1",
            &[&RELAY_BATCH],
        )
        .await?;
    if rows.is_empty() {
        return Ok(Relayed::Nothing);
    }
    let mut ids = Vec::with_capacity(rows.len());
    let mut messages = Vec::new();
    for row in &rows {
        ids.push(row.get::<_, i64>(0));
        messages.extend(outbox::decode(row.get(1))?);
    }
    if !messages.is_empty() {
        bus.enqueue(messages).await?.await?;
    }
    tx.execute("DELETE FROM eventhost_relay WHERE id = ANY($1)", &[&ids])
        .await?;
    tx.commit().await?;
    Ok(Relayed::Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(
            redacted("postgres://shop:secret@db:5432/shop"),
            "postgres://shop:***@db:5432/shop"
        );
        assert_eq!(
            redacted("postgres://eventhost@127.0.0.1:5433/eventhost"),
            "postgres://eventhost@127.0.0.1:5433/eventhost"
        );
    }
}
