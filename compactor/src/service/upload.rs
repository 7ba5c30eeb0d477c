//! One Parquet file from a run of segment chunks, streamed: ranged GETs
//! (bounded concurrency) feed the encoder on a blocking thread, whose
//! output goes to the object store in parts as it is produced. Memory
//! stays bounded by the chunks in flight, the row group being built and
//! two upload parts, whatever the file size.

use std::io::Write;
use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::sync::mpsc;

use super::{PipelineStep, ServiceError};
use strata_parquet::{PartitionInfo, PartitionWriter, WriteOptions, WriteSummary};

/// One segment chunk to read: its catalog base offset and where it lies.
#[derive(Debug, Clone)]
pub(crate) struct ChunkSource {
    pub(crate) base_offset: i64,
    pub(crate) object: Path,
    pub(crate) range: Range<u64>,
}

/// Sizing of one upload.
#[derive(Debug, Clone)]
pub(crate) struct UploadOptions {
    pub(crate) write: WriteOptions,
    pub(crate) fetch_concurrency: usize,
    pub(crate) part_bytes: usize,
}

/// Messages that end a stream explicitly: a closed channel without `End`
/// means the other side failed, and nothing half-done is completed.
enum Message<T> {
    Item(T),
    End,
}

/// Reads `chunks` in order, writes them as one Parquet file and uploads it
/// to `key`. On any failure nothing is left at `key` (a multipart upload
/// is aborted; a single PUT happens only after the file is complete).
pub(crate) async fn write_parquet(
    store: Arc<dyn ObjectStore>,
    key: &Path,
    info: PartitionInfo,
    chunks: Vec<ChunkSource>,
    options: UploadOptions,
) -> Result<WriteSummary, ServiceError> {
    let concurrency = options.fetch_concurrency.max(1);
    let (chunk_tx, chunk_rx) = mpsc::channel(concurrency);
    let (part_tx, part_rx) = mpsc::channel(1);
    let part_bytes = options.part_bytes.max(1);
    let write = options.write.clone();
    let encoder =
        tokio::task::spawn_blocking(move || encode(chunk_rx, part_tx, info, write, part_bytes));
    let fetch = fetch(Arc::clone(&store), chunks, concurrency, chunk_tx);
    let upload = upload(store, key, part_rx, part_bytes);
    let (fetched, uploaded) = tokio::join!(fetch, upload);
    let encoded = encoder.await.map_err(|e| {
        tracing::error!(error = %e, "the Parquet encoder task failed");
        ServiceError::EncoderPanicked
    })?;
    // Report the cause, not its echo: a failed read or upload makes the
    // encoder fail too, and a failed encoder makes the upload abort.
    fetched?;
    match (encoded, uploaded) {
        (Ok(summary), Ok(())) => Ok(summary),
        (Err(e), Ok(()) | Err(ServiceError::Aborted { .. })) => Err(e),
        (_, Err(e)) => Err(e),
    }
}

async fn fetch(
    store: Arc<dyn ObjectStore>,
    chunks: Vec<ChunkSource>,
    concurrency: usize,
    tx: mpsc::Sender<Message<(i64, Bytes)>>,
) -> Result<(), ServiceError> {
    let mut reads = futures::stream::iter(chunks)
        .map(|chunk| {
            let store = Arc::clone(&store);
            async move {
                let bytes = store.get_range(&chunk.object, chunk.range.clone()).await?;
                Ok::<_, ServiceError>((chunk.base_offset, bytes))
            }
        })
        .buffered(concurrency);
    while let Some(read) = reads.next().await {
        if tx.send(Message::Item(read?)).await.is_err() {
            // The encoder stopped; its error says why.
            return Ok(());
        }
    }
    let _ = tx.send(Message::End).await;
    Ok(())
}

fn encode(
    mut chunks: mpsc::Receiver<Message<(i64, Bytes)>>,
    parts: mpsc::Sender<Message<Bytes>>,
    info: PartitionInfo,
    options: WriteOptions,
    part_bytes: usize,
) -> Result<WriteSummary, ServiceError> {
    let sink = PartSink {
        parts,
        buffer: BytesMut::new(),
        part_bytes,
    };
    let mut writer = PartitionWriter::new(sink, info, options)?;
    loop {
        match chunks.blocking_recv() {
            Some(Message::Item((base_offset, chunk))) => writer.push_chunk(base_offset, &chunk)?,
            Some(Message::End) => break,
            None => {
                return Err(ServiceError::Aborted {
                    step: PipelineStep::Encode,
                });
            }
        }
    }
    let (mut sink, summary) = writer.finish()?;
    let stopped = ServiceError::Aborted {
        step: PipelineStep::Encode,
    };
    if sink.send_buffer().is_err() || sink.parts.blocking_send(Message::End).is_err() {
        return Err(stopped);
    }
    Ok(summary)
}

/// The encoder's output, cut into upload parts of `part_bytes`.
struct PartSink {
    parts: mpsc::Sender<Message<Bytes>>,
    buffer: BytesMut,
    part_bytes: usize,
}

impl PartSink {
    fn send_buffer(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let part = self.buffer.split().freeze();
        self.parts
            .blocking_send(Message::Item(part))
            .map_err(|_| std::io::Error::other("the upload stopped"))
    }
}

impl Write for PartSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = self.part_bytes - self.buffer.len();
        let taken = buf.len().min(room);
        self.buffer.extend_from_slice(&buf[..taken]);
        if self.buffer.len() >= self.part_bytes {
            self.send_buffer()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Uploads the parts: one PUT when the file is a single part, else a
/// multipart upload with at most two parts in flight.
async fn upload(
    store: Arc<dyn ObjectStore>,
    key: &Path,
    mut parts: mpsc::Receiver<Message<Bytes>>,
    part_bytes: usize,
) -> Result<(), ServiceError> {
    let aborted = || ServiceError::Aborted {
        step: PipelineStep::Upload,
    };
    let first = match parts.recv().await {
        Some(Message::Item(part)) => part,
        Some(Message::End) | None => return Err(aborted()),
    };
    let second = match parts.recv().await {
        Some(Message::Item(part)) => part,
        Some(Message::End) => {
            store.put(key, PutPayload::from_bytes(first)).await?;
            return Ok(());
        }
        None => return Err(aborted()),
    };
    let mut multipart =
        WriteMultipart::new_with_chunk_size(store.put_multipart(key).await?, part_bytes);
    multipart.put(first);
    multipart.put(second);
    let result = async {
        loop {
            multipart.wait_for_capacity(2).await?;
            match parts.recv().await {
                Some(Message::Item(part)) => multipart.put(part),
                Some(Message::End) => return Ok(true),
                None => return Ok::<_, ServiceError>(false),
            }
        }
    }
    .await;
    match result {
        Ok(true) => {
            multipart.finish().await?;
            Ok(())
        }
        Ok(false) => {
            let _ = multipart.abort().await;
            Err(aborted())
        }
        Err(e) => {
            let _ = multipart.abort().await;
            Err(e)
        }
    }
}
