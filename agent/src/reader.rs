//! Reading committed batches back: chunk bytes through the block cache, with
//! base offsets patched on the way out (the payload is never re-encoded).

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use object_store::path::Path;
use strata_catalog_api::proto::Chunk;
use strata_segment::BatchHeader;

use crate::cache::{BlockCache, CacheError};

/// One batch inside a chunk's bytes.
#[derive(Debug, Clone)]
pub(crate) struct BatchRef {
    pub(crate) base_offset: i64,
    pub(crate) range: Range<usize>,
    pub(crate) header: BatchHeader,
}

impl BatchRef {
    /// One past the batch's last offset.
    pub(crate) fn end_offset(&self) -> i64 {
        self.base_offset + self.header.offset_count()
    }
}

/// Reads a chunk's bytes.
pub(crate) async fn read_chunk(cache: &BlockCache, chunk: &Chunk) -> Result<Bytes, CacheError> {
    let key = Path::from(chunk.object_key.as_str());
    cache
        .read(
            &key,
            chunk.object_size,
            chunk.position..chunk.position + chunk.length,
        )
        .await
}

/// The batches of a chunk with the offsets the catalog assigned them.
/// Stops at the first malformed batch (never expected: batches were
/// validated before they were written, and objects are checksummed).
pub(crate) fn batches(chunk: &Chunk, bytes: &[u8]) -> Vec<BatchRef> {
    let mut out = Vec::with_capacity(chunk.batch_count as usize);
    let mut position = 0usize;
    let mut offset = chunk.base_offset;
    while position < bytes.len() {
        let Ok(header) = BatchHeader::parse(&bytes[position..]) else {
            break;
        };
        let Some(length) = header.total_len() else {
            break;
        };
        if length == 0 || position + length > bytes.len() {
            break;
        }
        let batch = BatchRef {
            base_offset: offset,
            range: position..position + length,
            header,
        };
        offset = batch.end_offset();
        position += length;
        out.push(batch);
    }
    out
}

/// Copies batches out of `bytes` with their base offsets patched.
pub(crate) fn patched(bytes: &[u8], batches: &[BatchRef], out: &mut BytesMut) {
    for batch in batches {
        let start = out.len();
        out.extend_from_slice(&bytes[batch.range.clone()]);
        // The range was parsed as a whole batch above, so patching cannot fail.
        let _ = strata_segment::patch_base_offset(&mut out[start..], batch.base_offset);
    }
}
