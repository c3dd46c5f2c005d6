//! The default store: one redb file (copy-on-write B-trees, crash-safe commits).
//!
//! State grows on disk, not in memory: redb's page cache is capped at [`CACHE_BYTES`] (its
//! own default is 1 GiB, which a long-running host would fill as state grows).

use std::ops::RangeInclusive;
use std::path::Path;

use redb::{Builder, Database, Durability, ReadableDatabase, TableDefinition};

use super::{Batch, Consumed, OutboxEntry, Refused, StateError, StateStore, outbox};

/// Memory for redb's page cache (reads and the write buffer together).
pub const CACHE_BYTES: usize = 4 << 20;

/// All namespaces share one table; keys are `namespace NUL key`, so a namespace is a key range.
const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");

/// The outbox: (group, topic, partition, offset) → the record's encoded messages.
type OutboxKey = (&'static str, &'static str, i32, i64);
const OUTBOX: TableDefinition<OutboxKey, &[u8]> = TableDefinition::new("outbox");

/// A [`StateStore`] in a single local file.
pub struct EmbeddedStore {
    db: Database,
}

impl EmbeddedStore {
    /// Opens the store at `path`, creating the file and its parent folder if needed.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(StateError::failed(format!(
                "cannot create {}",
                dir.display()
            )))?;
        }
        let db = Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(StateError::failed(format!(
                "cannot open {}",
                path.display()
            )))?;
        let txn = db
            .begin_write()
            .map_err(StateError::failed("cannot begin a write"))?;
        txn.open_table(ENTRIES)
            .map_err(StateError::failed("cannot create the table"))?;
        txn.open_table(OUTBOX)
            .map_err(StateError::failed("cannot create the outbox"))?;
        txn.commit().map_err(StateError::failed("cannot commit"))?;
        Ok(EmbeddedStore { db })
    }
}

impl EmbeddedStore {
    /// The entries as of now, for reading.
    fn read_table(&self) -> Result<redb::ReadOnlyTable<&'static [u8], &'static [u8]>, StateError> {
        let txn = (self.db.begin_read()).map_err(StateError::failed("cannot begin a read"))?;
        (txn.open_table(ENTRIES)).map_err(StateError::failed("cannot open the table"))
    }
}

fn full_key(namespace: &str, key: &str) -> Vec<u8> {
    let mut full = Vec::with_capacity(namespace.len() + 1 + key.len());
    full.extend_from_slice(namespace.as_bytes());
    full.push(0);
    full.extend_from_slice(key.as_bytes());
    full
}

impl StateStore for EmbeddedStore {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let table = self.read_table()?;
        let value = table
            .get(full_key(namespace, key).as_slice())
            .map_err(StateError::failed("cannot read"))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn scan(&self, namespace: &str, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        let table = self.read_table()?;
        let start = full_key(namespace, prefix);
        let skip = namespace.len() + 1;
        let mut entries = Vec::new();
        let range = table.range(start.as_slice()..);
        for entry in range.map_err(StateError::failed("cannot scan"))? {
            let (key, value) = entry.map_err(StateError::failed("cannot scan"))?;
            if !key.value().starts_with(&start) {
                break;
            }
            let key = String::from_utf8_lossy(&key.value()[skip..]).into_owned();
            entries.push((key, value.value().to_vec()));
        }
        Ok(entries)
    }

    fn apply_batch(&self, batch: &Batch) -> Result<Refused, StateError> {
        if batch.is_empty() {
            return Ok(Refused::new());
        }
        let txn = self
            .db
            .begin_write()
            .map_err(StateError::failed("cannot begin a write"))?;
        {
            let mut table = txn
                .open_table(ENTRIES)
                .map_err(StateError::failed("cannot open the table"))?;
            for change in &batch.changes {
                for (key, value) in &change.writes {
                    let key = full_key(&change.namespace, key);
                    match value {
                        Some(v) => table.insert(key.as_slice(), v.as_slice()).map(drop),
                        None => table.remove(key.as_slice()).map(drop),
                    }
                    .map_err(StateError::failed("cannot write"))?;
                }
            }
            let mut table = txn
                .open_table(OUTBOX)
                .map_err(StateError::failed("cannot open the outbox"))?;
            for entry in batch.changes.iter().filter_map(|c| c.outbox.as_ref()) {
                let from = &entry.from;
                let key = (from.group.as_str(), from.topic.as_str(), from.partition);
                let encoded = outbox::encode(&entry.messages);
                table
                    .insert((key.0, key.1, key.2, entry.offset), encoded.as_slice())
                    .map_err(StateError::failed("cannot write the outbox"))?;
            }
        }
        txn.commit().map_err(StateError::failed("cannot commit"))?;
        // One writer: the host checked every change's reads before it got here.
        Ok(Refused::new())
    }

    fn outbox(
        &self,
        from: &Consumed,
        offsets: RangeInclusive<i64>,
    ) -> Result<Vec<OutboxEntry>, StateError> {
        let txn = (self.db.begin_read()).map_err(StateError::failed("cannot begin a read"))?;
        let table =
            (txn.open_table(OUTBOX)).map_err(StateError::failed("cannot open the outbox"))?;
        let (group, topic, partition) = (from.group.as_str(), from.topic.as_str(), from.partition);
        let range =
            (group, topic, partition, *offsets.start())..=(group, topic, partition, *offsets.end());
        let mut entries = Vec::new();
        for entry in table
            .range(range)
            .map_err(StateError::failed("cannot read the outbox"))?
        {
            let (key, value) = entry.map_err(StateError::failed("cannot read the outbox"))?;
            entries.push(OutboxEntry {
                from: from.clone(),
                offset: key.value().3,
                messages: outbox::decode(value.value())?,
            });
        }
        Ok(entries)
    }

    fn drop_outbox_below(&self, from: &Consumed, offset: i64) -> Result<(), StateError> {
        let (group, topic, partition) = (from.group.as_str(), from.topic.as_str(), from.partition);
        let range = (group, topic, partition, i64::MIN)..(group, topic, partition, offset);
        {
            let txn = (self.db.begin_read()).map_err(StateError::failed("cannot begin a read"))?;
            let table =
                (txn.open_table(OUTBOX)).map_err(StateError::failed("cannot open the outbox"))?;
            let mut below = table
                .range(range.clone())
                .map_err(StateError::failed("cannot read the outbox"))?;
            if below.next().is_none() {
                return Ok(());
            }
        }
        let mut txn =
            (self.db.begin_write()).map_err(StateError::failed("cannot begin a write"))?;
        // No need to wait for the disk: entries a crash brings back are below the committed
        // offset, and are dropped again at the next start.
        (txn.set_durability(Durability::None))
            .map_err(StateError::failed("cannot trim without syncing"))?;
        {
            let mut table =
                (txn.open_table(OUTBOX)).map_err(StateError::failed("cannot open the outbox"))?;
            table
                .retain_in(range, |_, _| false)
                .map_err(StateError::failed("cannot trim the outbox"))?;
        }
        txn.commit().map_err(StateError::failed("cannot commit"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::OutMessage;
    use crate::state::{Change, Write};

    fn store() -> (tempfile::TempDir, EmbeddedStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("state.redb")).unwrap();
        (dir, store)
    }

    #[test]
    fn an_open_failure_keeps_the_underlying_error_as_its_source() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "not a folder").unwrap();
        let Err(error) = EmbeddedStore::open(&file.join("state.redb")) else {
            panic!("a store inside a file opened");
        };
        let source = std::error::Error::source(&error).expect("the io error is kept");
        assert!(
            source.downcast_ref::<std::io::Error>().is_some(),
            "{source:?}"
        );
        let chain = crate::error::Chain(&error).to_string();
        assert!(chain.starts_with("state store: cannot create "), "{chain}");
        assert!(chain.len() > "state store: cannot create ".len() + file.as_os_str().len());
    }

    #[test]
    fn namespaces_are_separate() {
        let (_dir, store) = store();
        store
            .apply("cart", &[("k".into(), Some(b"1".to_vec()))])
            .unwrap();
        assert_eq!(store.get("cart", "k").unwrap(), Some(b"1".to_vec()));
        assert_eq!(store.get("order", "k").unwrap(), None);
        // A namespace that is a prefix of another must not see its keys.
        store
            .apply("cart2", &[("k".into(), Some(b"2".to_vec()))])
            .unwrap();
        assert_eq!(
            store.scan("cart", "").unwrap(),
            vec![("k".into(), b"1".to_vec())]
        );
    }

    #[test]
    fn scan_is_ordered_and_bounded_by_prefix() {
        let (_dir, store) = store();
        let writes: Vec<Write> = ["a:2", "a:1", "b:1", "a"]
            .iter()
            .map(|k| (k.to_string(), Some(k.as_bytes().to_vec())))
            .collect();
        store.apply("p", &writes).unwrap();
        let keys: Vec<_> = store
            .scan("p", "a:")
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["a:1", "a:2"]);
    }

    #[test]
    fn deletes_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/state.redb");
        {
            let store = EmbeddedStore::open(&path).unwrap();
            store
                .apply(
                    "p",
                    &[
                        ("keep".into(), Some(b"v".to_vec())),
                        ("gone".into(), Some(b"v".to_vec())),
                    ],
                )
                .unwrap();
            store.apply("p", &[("gone".into(), None)]).unwrap();
        }
        let store = EmbeddedStore::open(&path).unwrap();
        assert_eq!(store.get("p", "keep").unwrap(), Some(b"v".to_vec()));
        assert_eq!(store.get("p", "gone").unwrap(), None);
    }

    #[test]
    fn outbox_entries_commit_with_the_writes_and_go_once_published() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let from = Consumed {
            group: "payments".into(),
            topic: "orders".into(),
            partition: 1,
        };
        let other = Consumed {
            partition: 2,
            ..from.clone()
        };
        let entry = |from: &Consumed, offset: i64| OutboxEntry {
            from: from.clone(),
            offset,
            messages: vec![OutMessage {
                topic: "payments".into(),
                key: None,
                value: format!("result of {offset}").into_bytes(),
                headers: Vec::new(),
            }],
        };
        {
            let store = EmbeddedStore::open(&path).unwrap();
            store
                .apply_batch(&Batch {
                    changes: [(from.clone(), 7), (from.clone(), 8), (other.clone(), 7)]
                        .into_iter()
                        .map(|(consumed, offset)| Change {
                            namespace: "p".into(),
                            writes: vec![("k".into(), Some(b"v".to_vec()))],
                            outbox: Some(entry(&consumed, offset)),
                            ..Change::default()
                        })
                        .collect(),
                })
                .unwrap();
        }
        let store = EmbeddedStore::open(&path).unwrap();
        assert_eq!(store.get("p", "k").unwrap(), Some(b"v".to_vec()));
        assert_eq!(
            store.outbox(&from, 0..=100).unwrap(),
            [entry(&from, 7), entry(&from, 8)],
            "one partition's entries, in offset order"
        );
        assert_eq!(store.outbox(&from, 8..=8).unwrap(), [entry(&from, 8)]);
        store.drop_outbox_below(&from, 8).unwrap();
        assert_eq!(store.outbox(&from, 0..=100).unwrap(), [entry(&from, 8)]);
        assert_eq!(
            store.outbox(&other, 0..=100).unwrap(),
            [entry(&other, 7)],
            "other partitions keep theirs"
        );
    }
}
