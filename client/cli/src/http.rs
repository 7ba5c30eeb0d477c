//! The operational HTTP endpoint: `/metrics` (Prometheus text), `/health`
//! and `/ready`; with `strata agent --fault-injection` or `strata catalog
//! --fault-injection` also `/faults` (for tests only). Deliberately tiny: a handful of routes, no keep-alive.

use std::sync::Arc;
use std::time::Duration;

use strata_agent::{FaultControl, FaultPlan};
use strata_catalog::{CommitFaultPlan, CommitFaults};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Renders the metrics text on each scrape.
pub(crate) type Renderer = Arc<dyn Fn() -> String + Send + Sync>;

/// Says whether the role may serve (`/ready`).
pub(crate) type Readiness = Arc<dyn Fn() -> bool + Send + Sync>;

/// Largest request (head and body) the endpoint reads.
const REQUEST_BYTES_MAX: usize = 64 * 1024;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A role's test-only fault switchboard behind `/faults`.
pub(crate) trait FaultSwitch: Send + Sync {
    /// Replaces the rules with the JSON plan in `body`.
    fn put(&self, body: &[u8]) -> Result<(), serde_json::Error>;
    /// Removes every rule.
    fn clear(&self);
    /// The rules and how often each fired, as JSON.
    fn state(&self) -> serde_json::Value;
}

/// Parses a JSON fault plan and hands it to `set`.
fn replace_plan<P: serde::de::DeserializeOwned + std::fmt::Debug>(
    body: &[u8],
    set: impl FnOnce(P),
) -> Result<(), serde_json::Error> {
    let plan = serde_json::from_slice::<P>(body)?;
    warn!(?plan, "fault injection: new rules");
    set(plan);
    Ok(())
}

/// The agent's object-store faults.
impl FaultSwitch for FaultControl {
    fn put(&self, body: &[u8]) -> Result<(), serde_json::Error> {
        replace_plan(body, |plan: FaultPlan| self.set(plan))
    }

    fn clear(&self) {
        FaultControl::clear(self);
    }

    fn state(&self) -> serde_json::Value {
        serde_json::json!({ "plan": self.plan(), "counts": self.counts() })
    }
}

/// The catalog's commit faults.
impl FaultSwitch for CommitFaults {
    fn put(&self, body: &[u8]) -> Result<(), serde_json::Error> {
        replace_plan(body, |plan: CommitFaultPlan| self.set(plan))
    }

    fn clear(&self) {
        CommitFaults::clear(self);
    }

    fn state(&self) -> serde_json::Value {
        serde_json::json!({ "plan": self.plan(), "counts": self.counts() })
    }
}

/// What the endpoint serves.
#[derive(Clone)]
pub(crate) struct Routes {
    render: Renderer,
    /// `/ready` answers 503 while this says no.
    ready: Readiness,
    /// `Some` only under `--fault-injection`.
    faults: Option<Arc<dyn FaultSwitch>>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field("faults", &self.faults.is_some())
            .finish_non_exhaustive()
    }
}

impl Routes {
    /// `/metrics`, `/health` and `/ready`.
    pub(crate) fn metrics(render: Renderer) -> Self {
        Self {
            render,
            ready: Arc::new(|| true),
            faults: None,
        }
    }

    /// Answers `/ready` with `ready` (always ready without it).
    pub(crate) fn with_readiness(mut self, ready: Readiness) -> Self {
        self.ready = ready;
        self
    }

    /// Adds `/faults`: `GET` shows the rules and counts, `PUT` replaces the
    /// rules (a JSON plan of the role's kind), `DELETE` removes them.
    pub(crate) fn with_faults(mut self, faults: Option<Arc<dyn FaultSwitch>>) -> Self {
        self.faults = faults;
        self
    }
}

/// One answer: status line, content type, body.
type Answer = (&'static str, &'static str, String);

const TEXT: &str = "text/plain; version=0.0.4";
const JSON: &str = "application/json";

/// Answers one request.
fn route(routes: &Routes, method: &str, path: &str, body: &[u8]) -> Answer {
    match (method, path) {
        ("GET", "/metrics") => ("200 OK", TEXT, (routes.render)()),
        ("GET", "/health") => ("200 OK", TEXT, "ok\n".to_string()),
        ("GET", "/ready") if (routes.ready)() => ("200 OK", TEXT, "ok\n".to_string()),
        ("GET", "/ready") => (
            "503 Service Unavailable",
            TEXT,
            "not ready: not registered with the catalog, or it has not answered lately\n"
                .to_string(),
        ),
        (_, "/faults") => match &routes.faults {
            Some(faults) => route_faults(faults.as_ref(), method, body),
            None => (
                "404 Not Found",
                TEXT,
                "fault injection is off: start the role with --fault-injection (tests only)\n"
                    .to_string(),
            ),
        },
        _ => (
            "404 Not Found",
            TEXT,
            "not found: try /metrics, /health or /ready\n".to_string(),
        ),
    }
}

fn route_faults(faults: &dyn FaultSwitch, method: &str, body: &[u8]) -> Answer {
    match method {
        "GET" => {}
        "PUT" => match faults.put(body) {
            Ok(()) => {}
            Err(e) => {
                return (
                    "400 Bad Request",
                    TEXT,
                    format!("invalid fault plan: {e}\n"),
                );
            }
        },
        "DELETE" => {
            warn!("fault injection: rules cleared");
            faults.clear();
        }
        _ => {
            return (
                "405 Method Not Allowed",
                TEXT,
                "use GET, PUT or DELETE on /faults\n".to_string(),
            );
        }
    }
    ("200 OK", JSON, format!("{}\n", faults.state()))
}

/// Where the head of a request ends, if it has arrived.
fn head_end(buffer: &[u8]) -> Option<usize> {
    buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

fn content_length(head: &str) -> usize {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0)
}

/// Reads one request: its head and as much body as it announces.
async fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = head_end(&buffer) {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            let wanted = end + content_length(&head);
            if buffer.len() >= wanted || wanted > REQUEST_BYTES_MAX {
                let body = buffer[end..buffer.len().min(wanted)].to_vec();
                return Some((head, body));
            }
        }
        if buffer.len() >= REQUEST_BYTES_MAX {
            return None;
        }
        match stream.read(&mut chunk).await {
            Ok(0) if buffer.is_empty() => return None,
            // A peer that closes early gets an answer to what it sent.
            Ok(0) => return Some((String::from_utf8_lossy(&buffer).into_owned(), Vec::new())),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(_) => return None,
        }
    }
}

async fn answer(mut stream: TcpStream, routes: Routes) {
    let Ok(Some((head, body))) =
        tokio::time::timeout(READ_TIMEOUT, read_request(&mut stream)).await
    else {
        return;
    };
    let mut words = head.split_whitespace();
    let method = words.next().unwrap_or("GET");
    let path = words.next().unwrap_or("/");
    let (status, content_type, body) = route(&routes, method, path, &body);
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
}

/// Serves the endpoint until `stop`.
pub(crate) async fn serve(listener: TcpListener, routes: Routes, stop: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    debug!(error = %e, "metrics accept failed");
                    continue;
                }
            },
        };
        tokio::spawn(answer(stream, routes.clone()));
    }
}

/// A running endpoint; [`Endpoint::stop`] ends it.
#[derive(Debug)]
pub(crate) struct Endpoint {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Endpoint {
    /// Binds `address` and serves `routes` there. `setting` names the
    /// flag that moves it, for the error message.
    pub(crate) async fn start(
        address: std::net::SocketAddr,
        setting: &str,
        routes: Routes,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(address).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {address} for /metrics: {e} (choose another with {setting})"
            )
        })?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(listener, routes, stop.clone()));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(faults: Option<FaultControl>) -> Routes {
        Routes::metrics(Arc::new(|| "# TYPE x counter\n".to_string()))
            .with_faults(faults.map(|f| Arc::new(f) as Arc<dyn FaultSwitch>))
    }

    #[test]
    fn the_catalog_commit_faults_are_driven_the_same_way() {
        let faults = CommitFaults::new();
        let routes = Routes::metrics(Arc::new(String::new))
            .with_faults(Some(Arc::new(faults.clone()) as Arc<dyn FaultSwitch>));
        let plan = br#"{"late_apply_ms":3000,"late_apply_count":1}"#;
        let (status, _, body) = route(&routes, "PUT", "/faults", plan);
        assert_eq!(status, "200 OK", "{body}");
        assert_eq!(faults.plan().late_apply_count, 1);
        assert!(body.contains("\"late_applied\":0"), "{body}");
        let (status, _, body) = route(&routes, "PUT", "/faults", br#"{"late":1}"#);
        assert_eq!(status, "400 Bad Request", "{body}");
        route(&routes, "DELETE", "/faults", b"");
        assert_eq!(faults.plan(), CommitFaultPlan::default());
    }

    #[test]
    fn faults_are_absent_without_the_flag() {
        let (status, _, body) = route(&routes(None), "PUT", "/faults", b"{}");
        assert_eq!(status, "404 Not Found");
        assert!(body.contains("--fault-injection"), "{body}");
        assert_eq!(route(&routes(None), "GET", "/metrics", b"").0, "200 OK");
    }

    #[test]
    fn put_get_and_delete_drive_the_fault_rules() {
        let control = FaultControl::new();
        let routes = routes(Some(control.clone()));
        let plan = br#"{"rules":[{"ops":["put"],"error_probability":0.3,"delay_ms":20}],"seed":7}"#;
        let (status, content_type, body) = route(&routes, "PUT", "/faults", plan);
        assert_eq!((status, content_type), ("200 OK", JSON), "{body}");
        let rules = &control.plan().rules;
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].ops, vec![strata_agent::FaultOp::Put]);
        assert_eq!(rules[0].delay_ms, 20);
        assert!(
            route(&routes, "GET", "/faults", b"")
                .2
                .contains("\"seed\":7")
        );

        let (status, _, _) = route(&routes, "DELETE", "/faults", b"");
        assert_eq!(status, "200 OK");
        assert!(control.plan().rules.is_empty());
    }

    #[test]
    fn bad_fault_plans_are_refused_with_the_reason() {
        let control = FaultControl::new();
        let routes = routes(Some(control.clone()));
        let (status, _, body) = route(&routes, "PUT", "/faults", br#"{"rules":[{"opz":[]}]}"#);
        assert_eq!(status, "400 Bad Request");
        assert!(body.contains("opz"), "{body}");
        assert!(control.plan().rules.is_empty());
        assert_eq!(
            route(&routes, "POST", "/faults", b"").0,
            "405 Method Not Allowed"
        );
    }

    #[test]
    fn request_heads_announce_their_bodies() {
        let request = b"PUT /faults HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
        let end = head_end(request).expect("complete head");
        let head = String::from_utf8_lossy(&request[..end]);
        assert_eq!(content_length(&head), 2);
        assert_eq!(&request[end..], b"{}");
    }
}
