//! Parquet-tier files read through the block cache.
//!
//! A compacted chunk is a whole Parquet file. [`CachedFile`] gives parquet's
//! async reader the file's byte ranges out of the agent's [`BlockCache`], so
//! hot Parquet data is cached like segments and concurrent readers share
//! GETs. Opening a [`ParquetTierReader`] parses the footer and page index;
//! [`ParquetReaders`] keeps the most recently used opened readers, keyed by
//! object key (objects are immutable, so an entry never goes stale), so a
//! consumer streaming a file does not re-parse the footer on every fetch.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt};
use object_store::path::Path;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use strata_parquet::ParquetTierReader;
use tokio::sync::OnceCell;

use crate::cache::{BlockCache, CacheError};

/// Opened readers kept by default.
pub(crate) const READERS_MAX: usize = 64;

/// One Parquet object, read through the block cache.
#[derive(Debug, Clone)]
pub(crate) struct CachedFile {
    cache: BlockCache,
    key: Path,
    size: u64,
}

impl CachedFile {
    pub(crate) fn new(cache: BlockCache, key: Path, size: u64) -> Self {
        Self { cache, key, size }
    }

    fn read(&self, range: Range<u64>) -> BoxFuture<'static, parquet::errors::Result<Bytes>> {
        let file = self.clone();
        async move {
            file.cache
                .read(&file.key, file.size, range)
                .await
                .map_err(|error| ParquetError::External(Box::new(error)))
        }
        .boxed()
    }
}

impl AsyncFileReader for CachedFile {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.read(range)
    }

    /// All ranges at once: the block cache fetches the missing blocks
    /// concurrently (the default implementation reads them one by one).
    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        let reads: Vec<_> = ranges.into_iter().map(|range| self.read(range)).collect();
        futures::future::try_join_all(reads).boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let mut reader = ParquetMetaDataReader::new();
            if let Some(options) = options {
                reader = reader
                    .with_metadata_options(Some(options.metadata_options().clone()))
                    .with_column_index_policy(options.column_index_policy())
                    .with_offset_index_policy(options.offset_index_policy());
            }
            let size = self.size;
            let metadata = reader.load_and_finish(self, size).await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// A reader of one Parquet-tier file.
pub(crate) type TierReader = ParquetTierReader<CachedFile>;

type Slot = Arc<OnceCell<Arc<TierReader>>>;

/// Per object key: the reader slot (opened once, concurrent openers wait
/// for the first) and the tick of its last use.
#[derive(Debug, Default)]
struct Entries {
    tick: u64,
    map: HashMap<Arc<str>, (Slot, u64)>,
}

/// A bounded least-recently-used map of opened Parquet-tier readers.
#[derive(Debug)]
pub(crate) struct ParquetReaders {
    capacity: usize,
    entries: Mutex<Entries>,
    /// Footers (with page indexes) read and parsed: one per open.
    opens: AtomicU64,
}

impl ParquetReaders {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: Mutex::default(),
            opens: AtomicU64::new(0),
        }
    }

    /// Footers parsed so far (a metric, and the proof that streaming a file
    /// parses its footer once).
    pub(crate) fn opens(&self) -> u64 {
        self.opens.load(Ordering::Relaxed)
    }

    /// The opened reader of `file`, opening it on first use. A failed open
    /// is not remembered: the next call tries again.
    pub(crate) async fn get(&self, file: CachedFile) -> strata_parquet::Result<Arc<TierReader>> {
        let slot = self.slot(file.key.as_ref());
        let reader = slot
            .get_or_try_init(|| async {
                self.opens.fetch_add(1, Ordering::Relaxed);
                ParquetTierReader::open(file).await.map(Arc::new)
            })
            .await?;
        Ok(reader.clone())
    }

    /// Forgets the reader of `key` (its object is gone).
    pub(crate) fn remove(&self, key: &str) {
        self.entries
            .lock()
            .expect("readers lock poisoned")
            .map
            .remove(key);
    }

    fn slot(&self, key: &str) -> Slot {
        let mut guard = self.entries.lock().expect("readers lock poisoned");
        guard.tick += 1;
        let now = guard.tick;
        let entries = &mut guard.map;
        if let Some((slot, used)) = entries.get_mut(key) {
            *used = now;
            return slot.clone();
        }
        if entries.len() >= self.capacity {
            // Linear in the capacity (tens of entries), once per open.
            let oldest = entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
        let slot = Slot::default();
        entries.insert(Arc::from(key), (slot.clone(), now));
        slot
    }
}

/// Whether a Parquet-tier read failed because its object does not exist.
pub(crate) fn is_not_found(error: &strata_parquet::Error) -> bool {
    let strata_parquet::Error::Parquet(ParquetError::External(source)) = error else {
        return false;
    };
    source
        .downcast_ref::<CacheError>()
        .is_some_and(CacheError::is_not_found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn evicts_the_least_recently_used() {
        let readers = ParquetReaders::new(2);
        let a = readers.slot("a");
        let _ = readers.slot("b");
        // "a" used again: "b" is now the oldest.
        assert!(Arc::ptr_eq(&a, &readers.slot("a")));
        let _ = readers.slot("c");
        let entries = readers.entries.lock().expect("lock");
        let mut keys: Vec<&str> = entries.map.keys().map(|k| k.as_ref()).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["a", "c"]);
    }
}
