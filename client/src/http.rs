//! The operational HTTP endpoint: `/metrics` (Prometheus text), `/health`
//! and `/ready`. Deliberately tiny: three GET routes, no keep-alive.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Renders the metrics text on each scrape.
pub(crate) type Renderer = Arc<dyn Fn() -> String + Send + Sync>;

/// Says whether the role may serve (`/ready`).
pub(crate) type Readiness = Arc<dyn Fn() -> bool + Send + Sync>;

/// Serves the endpoint until `stop`; `/ready` is always ready.
pub(crate) async fn serve(listener: TcpListener, render: Renderer, stop: CancellationToken) {
    serve_with_readiness(listener, render, Arc::new(|| true), stop).await;
}

/// Serves the endpoint until `stop`; `/ready` answers 503 while `ready`
/// says no.
pub(crate) async fn serve_with_readiness(
    listener: TcpListener,
    render: Renderer,
    ready: Readiness,
    stop: CancellationToken,
) {
    loop {
        let (mut stream, _) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    debug!(error = %e, "metrics accept failed");
                    continue;
                }
            },
        };
        let render = render.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let mut request = [0u8; 1024];
            let n = match tokio::time::timeout(
                std::time::Duration::from_secs(5),
                stream.read(&mut request),
            )
            .await
            {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let line = String::from_utf8_lossy(&request[..n]);
            let path = line.split_whitespace().nth(1).unwrap_or("/");
            let (status, body) = match path {
                "/metrics" => ("200 OK", render()),
                "/health" => ("200 OK", "ok\n".to_string()),
                "/ready" if ready() => ("200 OK", "ok\n".to_string()),
                "/ready" => (
                    "503 Service Unavailable",
                    "not ready: not registered with the catalog, or it has not answered lately\n"
                        .to_string(),
                ),
                _ => (
                    "404 Not Found",
                    "not found: try /metrics, /health or /ready\n".to_string(),
                ),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

/// A running endpoint; [`Endpoint::stop`] ends it.
#[derive(Debug)]
pub(crate) struct Endpoint {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Endpoint {
    /// Binds `address` and serves `render` there. `setting` names the
    /// flag that moves it, for the error message.
    pub(crate) async fn start(
        address: std::net::SocketAddr,
        setting: &str,
        render: Renderer,
    ) -> anyhow::Result<Self> {
        Self::start_with_readiness(address, setting, render, Arc::new(|| true)).await
    }

    /// Like [`Endpoint::start`], with `/ready` answered by `ready`.
    pub(crate) async fn start_with_readiness(
        address: std::net::SocketAddr,
        setting: &str,
        render: Renderer,
        ready: Readiness,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(address).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {address} for /metrics: {e} (choose another with {setting})"
            )
        })?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve_with_readiness(listener, render, ready, stop.clone()));
        Ok(Self { stop, task })
    }

    /// Stops serving and waits for the accept loop to end.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await {
            debug!(error = %e, "metrics endpoint ended abnormally");
        }
    }
}
