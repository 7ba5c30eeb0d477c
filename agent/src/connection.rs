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
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures::FutureExt;
use kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::api::{self, Pending};
use crate::security::sasl::{Authenticator, Gate};
use crate::security::{ListenerConfig, Principal, RequestContext};
use crate::server::Shared;

/// Responses a connection may have queued before it stops reading.
const IN_FLIGHT_MAX: usize = 128;

/// The read side of a connection: bytes in, and a way to learn that the
/// client has gone while a request waits.
pub(crate) trait ConnectionRead: AsyncRead + Unpin + Send {
    /// Resolves once the client has closed its side (or the socket
    /// failed); never while it is merely sending more requests.
    fn gone(&mut self) -> impl std::future::Future<Output = ()> + Send + '_;
}

impl ConnectionRead for tokio::net::tcp::OwnedReadHalf {
    async fn gone(&mut self) {
        peek_gone(self.as_ref()).await;
    }
}

/// The read half of a TLS connection, with a second handle on its socket
/// to peek at (the TLS stream itself cannot be peeked without consuming).
struct TlsRead {
    half: tokio::io::ReadHalf<tokio_rustls::server::TlsStream<TcpStream>>,
    probe: TcpStream,
}

impl AsyncRead for TlsRead {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.half).poll_read(cx, buf)
    }
}

impl ConnectionRead for TlsRead {
    async fn gone(&mut self) {
        peek_gone(&self.probe).await;
    }
}

async fn peek_gone(stream: &TcpStream) {
    let mut byte = [0u8; 1];
    match stream.peek(&mut byte).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// Serves one connection of `listener`: the TLS handshake when the
/// listener runs TLS, then requests (see [`run`]).
pub(crate) async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<ListenerConfig>,
    stop: CancellationToken,
) {
    if !listener.protocol.is_tls() {
        let (reader, writer) = stream.into_split();
        run(
            shared,
            reader,
            writer,
            peer,
            listener,
            Principal::anonymous(),
            stop,
        )
        .await;
        return;
    }
    let Some(tls) = shared.security.tls.clone() else {
        // SecurityState refuses TLS listeners without TLS settings.
        return;
    };
    let probe = match duplicate(&stream) {
        Ok(probe) => probe,
        Err(e) => {
            warn!(%peer, error = %e, "cannot duplicate a socket handle; closing the connection");
            return;
        }
    };
    let timeout = shared.security.config.handshake_timeout;
    let accepted = tokio::select! {
        _ = stop.cancelled() => return,
        accepted = tokio::time::timeout(timeout, tls.acceptor().accept(stream)) => accepted,
    };
    let stream = match accepted {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            crate::metrics::add(&shared.metrics.tls_handshake_failures, 1);
            debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            crate::metrics::add(&shared.metrics.tls_handshake_failures, 1);
            debug!(%peer, ?timeout, "TLS handshake timed out");
            return;
        }
    };
    // On SSL listeners the principal is the mapped certificate subject
    // (mTLS), else ANONYMOUS; SASL_SSL authenticates with SASL instead.
    let principal = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(crate::security::tls::subject_of)
        .map(|subject| Principal::user(&shared.security.config.principal_mapping.map(&subject)))
        .unwrap_or_else(Principal::anonymous);
    debug!(%peer, listener = %listener.name, %principal, "TLS connection established");
    let (half, writer) = tokio::io::split(stream);
    let reader = TlsRead { half, probe };
    run(shared, reader, writer, peer, listener, principal, stop).await;
}

/// A second handle on `stream`'s socket (a duplicated descriptor).
fn duplicate(stream: &TcpStream) -> std::io::Result<TcpStream> {
    use std::os::fd::AsFd;
    let fd = stream.as_fd().try_clone_to_owned()?;
    TcpStream::from_std(std::net::TcpStream::from(fd))
}

/// Serves requests until the client closes the connection, sends an
/// unparseable frame or a request its SASL state does not allow, goes idle
/// for `connections_max_idle`, trickles a frame in slower than
/// `request_read_timeout`, does not authenticate within the handshake
/// timeout, or the agent stops.
async fn run<R: ConnectionRead, W: AsyncWrite + Unpin + Send + 'static>(
    shared: Arc<Shared>,
    mut reader: R,
    writer: W,
    peer: SocketAddr,
    listener: Arc<ListenerConfig>,
    transport_principal: Principal,
    stop: CancellationToken,
) {
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
    let listener_name: Arc<str> = Arc::from(listener.name.as_str());
    let mut auth = Authenticator::new(listener.protocol);
    // A SASL client must authenticate within the handshake timeout.
    let auth_deadline = tokio::time::Instant::now() + shared.security.config.handshake_timeout;
    loop {
        let unauthenticated = listener.protocol.is_sasl() && auth.principal().is_none();
        let frame = tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep_until(auth_deadline), if unauthenticated => {
                crate::metrics::add(&shared.metrics.sasl_state_closes, 1);
                debug!(%peer, "closing a connection that did not authenticate in time");
                break;
            }
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
        if auth.expects_raw_token() {
            let Some(token) = auth.raw_token(&shared, frame).await else {
                crate::metrics::add(&shared.metrics.sasl_state_closes, 1);
                debug!(%peer, "closing a connection whose SASL (v0) authentication failed");
                break;
            };
            let mut out = BytesMut::with_capacity(4 + token.len());
            out.extend_from_slice(&(token.len() as i32).to_be_bytes());
            out.extend_from_slice(&token);
            unanswered.fetch_add(1, Ordering::AcqRel);
            let reply = api::Reply::Frame(out.freeze());
            if tx.send(Box::pin(std::future::ready(reply))).await.is_err() {
                break;
            }
            continue;
        }
        let api_key_raw = (&frame[0..2]).get_i16();
        let Ok(api_key) = ApiKey::try_from(api_key_raw) else {
            warn!(%peer, api_key = api_key_raw, "closing connection after an unknown API key");
            break;
        };
        match auth.gate(api_key, Instant::now()) {
            Gate::Serve => {}
            Gate::Close(reason) => {
                crate::metrics::add(&shared.metrics.sasl_state_closes, 1);
                warn!(%peer, ?api_key, reason, "closing connection");
                break;
            }
            Gate::Sasl => {
                let Some((pending, close)) = sasl_request(&shared, &mut auth, api_key, frame).await
                else {
                    break;
                };
                unanswered.fetch_add(1, Ordering::AcqRel);
                if tx.send(pending).await.is_err() || close {
                    break;
                }
                continue;
            }
        }
        let context = RequestContext {
            listener: listener_name.clone(),
            peer,
            principal: auth
                .principal()
                .cloned()
                .unwrap_or_else(|| transport_principal.clone()),
        };
        // Starting a request may wait (a produce for room in the buffer):
        // give up when the agent stops or the client goes.
        let started = tokio::select! {
            biased;
            started = start_request(&shared, frame, &context) => started,
            _ = stop.cancelled() => break,
            _ = reader.gone() => break,
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

/// Answers a SaslHandshake or SaslAuthenticate request; `None` closes the
/// connection at once (an unsupported version or an undecodable frame),
/// `Some((_, true))` after the answer.
async fn sasl_request(
    shared: &Arc<Shared>,
    auth: &mut Authenticator,
    api_key: ApiKey,
    mut frame: Bytes,
) -> Option<(Pending, bool)> {
    let version = (&frame[2..4]).get_i16();
    if !api::is_supported(api_key, version) {
        return None;
    }
    let (header, request) = crate::frame::decode_body(api_key, version, &mut frame).ok()?;
    let outcome = auth.handle(shared, version, request).await;
    let reply = api::encode(api_key, version, header.correlation_id, &outcome.response);
    Some((Box::pin(std::future::ready(reply)), outcome.close))
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
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
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
async fn read_rest<R: AsyncRead + Unpin>(
    reader: &mut R,
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
    context: &RequestContext,
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
        api::group::forward(shared, api_key, header, frame, context.peer)
    } else {
        let (header, request) = crate::frame::decode_body(api_key, version, &mut frame)?;
        api::start(shared, context, header, request).await
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

async fn write_responses<W: AsyncWrite + Unpin>(
    mut rx: mpsc::Receiver<Pending>,
    writer: W,
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
