//! One client connection: frames in, responses out, in request order.
//!
//! The reader decodes each frame and starts its request: the part that must
//! happen in arrival order (a produce's append to the flush buffer) runs
//! before the next frame is read; the rest is a future queued to the writer,
//! which awaits the futures in order. So produce requests pipeline while
//! responses still leave in the order Kafka requires.

use std::net::SocketAddr;
use std::sync::Arc;

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
/// frame, or the agent stops.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    stop: CancellationToken,
) {
    let (mut reader, writer) = stream.into_split();
    let (tx, rx) = mpsc::channel::<Pending>(IN_FLIGHT_MAX);
    let writer_task = tokio::spawn(write_responses(rx, writer));
    let limit = shared.config.request_bytes_max;
    loop {
        let frame = tokio::select! {
            _ = stop.cancelled() => break,
            frame = read_frame(&mut reader, limit) => frame,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(reason) => {
                debug!(%peer, %reason, "closing connection");
                break;
            }
        };
        match start_request(&shared, frame, peer).await {
            Ok(pending) => {
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

/// Reads one size-prefixed frame. `Ok(None)` is a clean end of stream.
async fn read_frame(
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    limit: usize,
) -> Result<Option<Bytes>, String> {
    let mut size = [0u8; 4];
    match reader.read_exact(&mut size).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.to_string()),
    }
    let size = i32::from_be_bytes(size);
    // Check the size before allocating: a hostile prefix must not make us
    // reserve gigabytes (socket.request.max.bytes).
    if size < 8 || size as usize > limit {
        return Err(format!("frame size {size} outside 8..={limit}"));
    }
    // Read into uninitialised capacity: no need to zero what the socket
    // overwrites.
    let size = size as usize;
    let mut frame = BytesMut::with_capacity(size);
    while frame.len() < size {
        let n = (&mut *reader)
            .take((size - frame.len()) as u64)
            .read_buf(&mut frame)
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed inside a frame".to_string());
        }
    }
    Ok(Some(frame.freeze()))
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

async fn write_responses(mut rx: mpsc::Receiver<Pending>, writer: tokio::net::tcp::OwnedWriteHalf) {
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    while let Some(mut pending) = rx.recv().await {
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
        let frame = match reply {
            api::Reply::Frame(frame) => frame,
            api::Reply::Nothing => continue,
            api::Reply::Close => break,
        };
        if writer.write_all(&frame).await.is_err() {
            return;
        }
        if rx.is_empty() && writer.flush().await.is_err() {
            return;
        }
    }
    let _ = writer.flush().await;
}
