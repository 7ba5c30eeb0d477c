//! The operational HTTP endpoint: `/metrics` (Prometheus text), `/health`
//! and `/ready`. Deliberately tiny: three GET routes, no keep-alive.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Renders the metrics text on each scrape.
pub(crate) type Renderer = Arc<dyn Fn() -> String + Send + Sync>;

/// Serves the endpoint until `stop`.
pub(crate) async fn serve(listener: TcpListener, render: Renderer, stop: CancellationToken) {
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
                "/health" | "/ready" => ("200 OK", "ok\n".to_string()),
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
