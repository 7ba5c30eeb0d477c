//! One client connection: frames in, responses out, in request order.
//!
//! The reader decodes each frame and starts its request: the part that must
//! happen in arrival order (a produce's append to the flush buffer) runs
//! before the next frame is read; the rest is a future queued to the writer,
//! which awaits the futures in order. So produce requests pipeline while
//! responses still leave in the order Kafka requires.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::FutureExt;
use kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::api::{self, Pending};
use crate::server::Shared;

/// Responses a connection may have queued before it stops reading.
const IN_FLIGHT_MAX: usize = 128;

/// Serves one connection until the client closes it, sends an unparseable
/// frame, goes idle for `connections_max_idle`, trickles a frame in slower
/// than `request_read_timeout`, or the agent stops.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    stop: CancellationToken,
) {
    let (mut reader, writer) = stream.into_split();
    let (tx, rx) = mpsc::channel::<Pending>(IN_FLIGHT_MAX);
    // Requests read and not yet answered: a connection waiting on its own
    // responses (a long-polling fetch, a produce waiting for its flush) is
    // not idle.
    let unanswered = Arc::new(AtomicUsize::new(0));
    let writer_task = tokio::spawn(write_responses(
        rx,
        writer,
        unanswered.clone(),
        WriteLimits {
            timeout: shared.config.limits.response_write_timeout,
            metrics: Arc::clone(&shared.metrics),
        },
    ));
    let limits = FrameLimits {
        bytes_max: shared.config.request_bytes_max,
        idle: shared.config.limits.connections_max_idle,
        read_timeout: shared.config.limits.request_read_timeout,
    };
    loop {
        let frame = tokio::select! {
            _ = stop.cancelled() => break,
            frame = read_frame(&mut reader, &limits) => frame,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(FrameError::Idle) if unanswered.load(Ordering::Acquire) > 0 => continue,
            Err(FrameError::Idle) => {
                crate::metrics::add(&shared.metrics.connections_idle_closed, 1);
                debug!(%peer, "closing an idle connection");
                break;
            }
            Err(FrameError::ReadTimeout) => {
                crate::metrics::add(&shared.metrics.request_read_timeouts, 1);
                warn!(%peer, timeout = ?limits.read_timeout, "closing a connection whose request did not arrive in time");
                break;
            }
            Err(FrameError::Bad(reason)) => {
                debug!(%peer, %reason, "closing connection");
                break;
            }
        };
        // Starting a request may wait (a produce for room in the buffer):
        // give up when the agent stops or the client goes.
        let started = tokio::select! {
            biased;
            started = start_request(&shared, frame, peer) => started,
            _ = stop.cancelled() => break,
            _ = peer_gone(&mut reader) => break,
        };
        match started {
            Ok(pending) => {
                unanswered.fetch_add(1, Ordering::AcqRel);
                if tx.send(pending).await.is_err() {
                    break;
                }
            }
            Err(reason) => {
                warn!(%peer, %reason, "closing connection after a bad request");
                break;
            }
        }
    }
    drop(tx);
    let _ = writer_task.await;
}

/// Resolves once the client has closed its side (or the socket failed);
/// never while it is merely sending more requests.
async fn peer_gone(reader: &mut tokio::net::tcp::OwnedReadHalf) {
    let mut byte = [0u8; 1];
    match reader.peek(&mut byte).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// Bounds on reading one frame.
#[derive(Debug)]
struct FrameLimits {
    /// Kafka's `socket.request.max.bytes`.
    bytes_max: usize,
    /// How long to wait for the first byte of a frame.
    idle: Duration,
    /// How long the rest of a frame may take after its first byte.
    read_timeout: Duration,
}

/// Why no frame was read.
#[derive(Debug)]
enum FrameError {
    /// No byte arrived within the idle timeout.
    Idle,
    /// The frame did not arrive whole within the read timeout.
    ReadTimeout,
    /// The frame is malformed or the socket failed.
    Bad(String),
}

/// Bytes a frame's buffer grows by before its bytes have arrived: the
/// length prefix is a claim, not a fact, so memory follows the bytes.
const FRAME_GROWTH_BYTES: usize = 64 * 1024;

/// Reads one size-prefixed frame. `Ok(None)` is a clean end of stream.
async fn read_frame(
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    limits: &FrameLimits,
) -> Result<Option<Bytes>, FrameError> {
    let mut size = [0u8; 4];
    let first = tokio::time::timeout(limits.idle, reader.read(&mut size[..1])).await;
    match first {
        Err(_) => return Err(FrameError::Idle),
        Ok(Ok(0)) => return Ok(None),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(FrameError::Bad(e.to_string())),
    }
    // From its first byte on, the whole frame must arrive within the read
    // timeout: a client trickling bytes cannot hold the connection (and
    // the buffer) for ever.
    tokio::time::timeout(
        limits.read_timeout,
        read_rest(reader, size, limits.bytes_max),
    )
    .await
    .map_err(|_| FrameError::ReadTimeout)?
    .map(Some)
}

/// Reads the rest of a frame whose first size byte is `size[0]`.
async fn read_rest(
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    mut size: [u8; 4],
    limit: usize,
) -> Result<Bytes, FrameError> {
    reader
        .read_exact(&mut size[1..])
        .await
        .map_err(|e| FrameError::Bad(e.to_string()))?;
    let size = i32::from_be_bytes(size);
    // Check the size before reading: a hostile prefix must not make us
    // buffer gigabytes (socket.request.max.bytes).
    if size < 8 || size as usize > limit {
        return Err(FrameError::Bad(format!(
            "frame size {size} outside 8..={limit}"
        )));
    }
    let size = size as usize;
    let mut frame = BytesMut::with_capacity(size.min(FRAME_GROWTH_BYTES));
    while frame.len() < size {
        if frame.capacity() == frame.len() {
            // Grow by what has arrived so far (doubling), never past the
            // frame: reallocations stay logarithmic in the frame size.
            let more = frame.len().max(FRAME_GROWTH_BYTES).min(size - frame.len());
            frame.reserve(more);
        }
        let want = (size - frame.len()).min(frame.capacity() - frame.len());
        // Read into uninitialised capacity: no need to zero what the
        // socket overwrites.
        let n = (&mut *reader)
            .take(want as u64)
            .read_buf(&mut frame)
            .await
            .map_err(|e| FrameError::Bad(e.to_string()))?;
        if n == 0 {
            return Err(FrameError::Bad(
                "connection closed inside a frame".to_string(),
            ));
        }
    }
    Ok(frame.freeze())
}

/// Decodes a frame and starts its request.
async fn start_request(
    shared: &Arc<Shared>,
    mut frame: Bytes,
    peer: SocketAddr,
) -> Result<Pending, String> {
    let api_key_raw = (&frame[0..2]).get_i16();
    let version = (&frame[2..4]).get_i16();
    let correlation_id = (&frame[4..8]).get_i32();
    let api_key =
        ApiKey::try_from(api_key_raw).map_err(|()| format!("unknown API key {api_key_raw}"))?;
    if api_key == ApiKey::ApiVersions && !api::is_supported(api_key, version) {
        // Kafka answers an ApiVersions it cannot parse with a v0 response
        // carrying UNSUPPORTED_VERSION and its ranges, so the client can
        // retry with a version both sides know.
        return Ok(api::api_versions::unsupported(correlation_id));
    }
    if !api::is_supported(api_key, version) {
        // As Kafka: a request in a version the broker does not offer in
        // ApiVersions cannot be parsed, so the connection is closed.
        return Err(format!("{api_key:?} v{version} is not supported"));
    }
    let started = std::time::Instant::now();
    let pending = if api::group::is_group_api(api_key) {
        let header = crate::frame::decode_header(api_key, version, &mut frame)?;
        api::group::forward(shared, api_key, header, frame, peer)
    } else {
        let (header, request) = crate::frame::decode_body(api_key, version, &mut frame)?;
        api::start(shared, header, request).await
    };
    // Request count and latency per API: from the decoded frame to the
    // response ready to write (a long-polling fetch counts its wait).
    let shared = Arc::clone(shared);
    Ok(Box::pin(async move {
        let reply = pending.await;
        shared.metrics.requests.observe(api_key, started.elapsed());
        reply
    }))
}

/// How long a client may go without reading any of a response, and where
/// to count one that went longer.
struct WriteLimits {
    timeout: std::time::Duration,
    metrics: Arc<crate::metrics::Metrics>,
}

async fn write_responses(
    mut rx: mpsc::Receiver<Pending>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    unanswered: Arc<AtomicUsize>,
    limits: WriteLimits,
) {
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    while let Some(mut pending) = rx.recv().await {
        let _answered = Answered(&unanswered);
        // Responses already written stay buffered only while the next one
        // is ready too: before waiting on a response that is not (a
        // produce waiting for its flush, a long-polling fetch), send what
        // is buffered, or pipelined clients would wait for nothing.
        let reply = match (&mut pending).now_or_never() {
            Some(reply) => reply,
            None => {
                if writer.flush().await.is_err() {
                    return;
                }
                pending.await
            }
        };
        // A fetch's grant is given back once its frame is written.
        let (frame, _grant) = match reply {
            api::Reply::Frame(frame) => (frame, None),
            api::Reply::Held(frame, grant) => (frame, Some(grant)),
            api::Reply::Nothing => continue,
            api::Reply::Close => break,
        };
        // A client that stops reading must not hold the response's memory
        // (and the fetch budget) for ever; a slow one that keeps reading
        // may take as long as it needs.
        let mut written = 0;
        while written < frame.len() {
            match tokio::time::timeout(limits.timeout, writer.write(&frame[written..])).await {
                Ok(Ok(n)) if n > 0 => written += n,
                Ok(_) => return,
                Err(_) => {
                    crate::metrics::add(&limits.metrics.response_write_timeouts, 1);
                    tracing::debug!("a client read nothing of its response in time; closing");
                    return;
                }
            }
        }
        if rx.is_empty() && writer.flush().await.is_err() {
            return;
        }
    }
    let _ = writer.flush().await;
}

/// Counts a request answered (or dropped) when it goes out of scope.
struct Answered<'a>(&'a AtomicUsize);

impl Drop for Answered<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
