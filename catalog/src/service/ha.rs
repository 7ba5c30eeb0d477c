//! Catalog high availability: one active catalog per database, others
//! standing by (`docs/rfcs/0004-catalog-ha.md`).
//!
//! [`HaCatalog`] claims the lease in the database
//! ([`CatalogStore::claim_lease`]) every renew interval. While it holds
//! the lease it runs a [`CatalogService`], built exactly as after a restart
//! (commit-stream sequence, agent leases, groups and producer state come
//! from the store), and the gRPC router sends every call to it. Without the
//! lease it is a standby: every call is answered UNAVAILABLE with a message
//! and the `strata-active-catalog` header naming the active catalog, so an
//! agent moves on to it. A catalog that loses the lease (another took over
//! while it was paused, or it could not renew within the lease) drops its
//! service and becomes a standby; its store refuses its writes anyway
//! (term fencing), so a paused-then-resumed catalog commits nothing.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use strata_catalog_api::proto::catalog_server::CatalogServer;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::codegen::http;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::server::NamedService;

use super::{CatalogMetrics, CatalogService, RpcMetrics, ServiceOptions};
use crate::store::{CatalogLease, LeaseClaim, SharedStore};

pub use strata_catalog_api::ACTIVE_CATALOG_HEADER;
use strata_catalog_api::CATALOG_ROLE_HEADER;

/// Settings of catalog high availability.
#[derive(Debug, Clone)]
pub struct HaOptions {
    /// This catalog's id in the lease row: unique per process start.
    pub holder: String,
    /// Where agents reach this catalog (`http://host:port`), shown by
    /// standbys while this catalog is active.
    pub address: String,
    /// How long a lease lasts without renewal: a standby takes over at
    /// most this long (plus one renew interval) after the active catalog
    /// died or froze.
    pub lease_ms: u64,
    /// How often the lease is renewed (the active catalog) or tried (a
    /// standby). Well below `lease_ms`: a third of it by default.
    pub renew_interval_ms: u64,
}

/// What this catalog is now.
#[derive(Debug)]
enum Role {
    /// Another catalog holds the lease (or nobody does yet).
    Standby { active: Option<CatalogLease> },
    /// This catalog holds the lease under `term` and serves.
    Active {
        term: u64,
        service: Box<CatalogService>,
    },
}

#[derive(Debug)]
struct Inner {
    store: SharedStore,
    options: ServiceOptions,
    ha: HaOptions,
    role: RwLock<Role>,
    metrics: Arc<CatalogMetrics>,
    rpc_metrics: Arc<RpcMetrics>,
}

/// A catalog that serves only while it holds the lease. Cheap to clone.
#[derive(Debug, Clone)]
pub struct HaCatalog {
    inner: Arc<Inner>,
}

impl HaCatalog {
    /// A catalog over `store`, a standby until [`run`](Self::run) gets it
    /// the lease. Each takeover builds a [`CatalogService`] with `options`.
    pub fn new(store: SharedStore, options: ServiceOptions, ha: HaOptions) -> Self {
        let metrics = Arc::clone(&options.metrics);
        Self {
            inner: Arc::new(Inner {
                store,
                options,
                ha,
                role: RwLock::new(Role::Standby { active: None }),
                metrics,
                rpc_metrics: Arc::default(),
            }),
        }
    }

    /// Counts and latencies of the RPCs answered, for `/metrics`.
    pub fn rpc_metrics(&self) -> Arc<RpcMetrics> {
        Arc::clone(&self.inner.rpc_metrics)
    }

    /// The catalog's own metrics (active gauge, takeovers, commit gaps).
    pub fn metrics(&self) -> Arc<CatalogMetrics> {
        Arc::clone(&self.inner.metrics)
    }

    /// The service while this catalog is active.
    pub fn active_service(&self) -> Option<CatalogService> {
        match &*self.read() {
            Role::Active { service, .. } => Some(CatalogService::clone(service)),
            Role::Standby { .. } => None,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Role> {
        self.inner
            .role
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Role> {
        self.inner
            .role
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn claim(&self, release: bool) -> LeaseClaim {
        LeaseClaim {
            holder: self.inner.ha.holder.clone(),
            address: self.inner.ha.address.clone(),
            lease_ms: i64::try_from(self.inner.ha.lease_ms).unwrap_or(i64::MAX),
            release,
        }
    }

    fn active_term(&self) -> Option<u64> {
        match &*self.read() {
            Role::Active { term, .. } => Some(*term),
            Role::Standby { .. } => None,
        }
    }

    /// Claims the lease every renew interval until `shutdown` fires, taking
    /// over and stepping down as the lease comes and goes; on shutdown,
    /// steps down and releases the lease so a standby takes over at once.
    #[tracing::instrument(level = "info", skip_all, fields(holder = %self.inner.ha.holder))]
    pub async fn run(self, shutdown: CancellationToken) {
        let ha = &self.inner.ha;
        let renew = Duration::from_millis(ha.renew_interval_ms.max(1));
        let lease = Duration::from_millis(ha.lease_ms.max(1));
        // When the last claim that confirmed the lease was sent: the lease
        // runs out `lease` after it, on every catalog's view.
        let mut confirmed: Option<Instant> = None;
        loop {
            let sent = Instant::now();
            let claim =
                tokio::time::timeout(renew, self.inner.store.claim_lease(self.claim(false)));
            let claimed = tokio::select! {
                claimed = claim => claimed,
                () = shutdown.cancelled() => break,
            };
            match claimed {
                Ok(Ok(status)) if status.held => {
                    confirmed = Some(sent);
                    if let Some(lease) = status.lease {
                        self.hold(lease.term).await;
                    }
                }
                Ok(Ok(status)) => {
                    confirmed = None;
                    self.stand_by(status.lease, "another catalog holds the lease");
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "could not claim the catalog lease; retrying");
                    self.give_up_if_expired(confirmed, lease);
                }
                Err(_) => {
                    tracing::warn!(timeout = ?renew, "claiming the catalog lease timed out; retrying");
                    self.give_up_if_expired(confirmed, lease);
                }
            }
            tokio::select! {
                () = tokio::time::sleep(renew) => {}
                () = shutdown.cancelled() => break,
            }
        }
        self.release().await;
    }

    /// Serves under `term`: takes over if this catalog was not active
    /// under it (a service built for an older term holds stale state).
    async fn hold(&self, term: u64) {
        if self.active_term() == Some(term) {
            return;
        }
        if self.active_term().is_some() {
            self.stand_by(None, "the lease term changed");
        }
        let started = std::time::Instant::now();
        let options = self.inner.options.clone();
        match CatalogService::new(Arc::clone(&self.inner.store), options).await {
            Ok(service) => {
                *self.write() = Role::Active {
                    term,
                    service: Box::new(service),
                };
                let metrics = &self.inner.metrics;
                metrics.is_active.store(1, Ordering::Relaxed);
                metrics.term.store(term, Ordering::Relaxed);
                metrics.takeovers.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    term,
                    rebuilt_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    "this catalog is now ACTIVE (holds the lease; state rebuilt from the store)"
                );
            }
            Err(error) => tracing::error!(
                %error,
                term,
                "holding the lease but could not start the catalog service; retrying"
            ),
        }
    }

    /// Becomes (or stays) a standby; `active` is the lease as last read.
    fn stand_by(&self, active: Option<CatalogLease>, why: &str) {
        let previous = std::mem::replace(&mut *self.write(), Role::Standby { active });
        if let Role::Active { term, service } = previous {
            let metrics = &self.inner.metrics;
            metrics.is_active.store(0, Ordering::Relaxed);
            metrics.term.store(0, Ordering::Relaxed);
            metrics.step_downs.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                term,
                reason = why,
                "this catalog STEPPED DOWN and is now a standby"
            );
            // Its tasks stop as the last clones (calls in flight) go.
            drop(service);
        }
    }

    /// Steps down when the lease could not be confirmed for a whole lease:
    /// a standby may hold it by now.
    fn give_up_if_expired(&self, confirmed: Option<Instant>, lease: Duration) {
        if self.active_term().is_some() && confirmed.is_none_or(|at| at.elapsed() >= lease) {
            self.stand_by(None, "could not renew the lease within the lease duration");
        }
    }

    /// Steps down and releases the lease, if held (a clean shutdown).
    async fn release(&self) {
        let was_active = self.active_term().is_some();
        self.stand_by(None, "shutting down");
        if !was_active {
            return;
        }
        let renew = Duration::from_millis(self.inner.ha.renew_interval_ms.max(1));
        match tokio::time::timeout(renew, self.inner.store.claim_lease(self.claim(true))).await {
            Ok(Ok(_)) => tracing::info!("released the catalog lease; a standby takes over now"),
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not release the catalog lease; it expires by itself")
            }
            Err(_) => tracing::warn!("releasing the catalog lease timed out; it expires by itself"),
        }
    }

    /// The answer of a standby to every call.
    fn standby_status(&self) -> Status {
        let active = match &*self.read() {
            Role::Standby { active } => active.clone(),
            Role::Active { .. } => None,
        };
        let mut metadata = MetadataMap::new();
        metadata.insert(CATALOG_ROLE_HEADER, MetadataValue::from_static("standby"));
        let message = match active {
            Some(lease) => {
                if let Ok(value) = MetadataValue::try_from(lease.address.as_str()) {
                    metadata.insert(ACTIVE_CATALOG_HEADER, value);
                }
                format!(
                    "this catalog is a standby; the active catalog is {} at {} (lease term {}): \
                     retry there",
                    lease.holder, lease.address, lease.term
                )
            }
            None => "this catalog is a standby and no catalog holds the lease yet (one takes \
                     over within a lease): retry shortly"
                .to_string(),
        };
        Status::with_metadata(tonic::Code::Unavailable, message, metadata)
    }

    /// The gRPC service: calls go to the active service, or are answered
    /// UNAVAILABLE by a standby.
    pub fn router(&self) -> HaRouter {
        HaRouter(self.clone())
    }
}

/// The tower service [`crate::serve_ha`] serves (see [`HaCatalog::router`]).
#[derive(Debug, Clone)]
pub struct HaRouter(HaCatalog);

impl NamedService for HaRouter {
    const NAME: &'static str = <CatalogServer<CatalogService> as NamedService>::NAME;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<B> tower_service::Service<http::Request<B>> for HaRouter
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match self.0.active_service() {
            Some(service) => {
                let mut server = service.into_server();
                Box::pin(async move { server.call(request).await })
            }
            None => {
                let status = self.0.standby_status();
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}
