//! The agent as a whole: its shared state, listener and lifecycle.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use object_store::ObjectStore;
use strata_catalog_api::CatalogApi;
use strata_catalog_api::clock::{Clock, IdGen, SystemClock, SystemIds};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::cache::BlockCache;
use crate::config::AgentConfig;
use crate::fleet::Fleet;
use crate::index::PartitionIndex;
use crate::metrics::Metrics;
use crate::reader::ChunkReader;
use crate::security::{ListenerConfig, SecurityState};
use crate::topics::TopicCache;
use crate::writer::SegmentWriter;

/// What an agent works with, as opposed to its settings ([`AgentConfig`]).
#[derive(Debug, Clone)]
pub struct Components {
    /// The catalog (in process or over gRPC).
    pub catalog: Arc<dyn CatalogApi>,
    /// The object store segments go to.
    pub store: Arc<dyn ObjectStore>,
    /// The clock of LogAppendTime stamps.
    pub clock: Arc<dyn Clock>,
    /// Where segment ULIDs come from.
    pub ids: Arc<dyn IdGen>,
}

impl Components {
    /// `catalog` and `store` with the system clock and random ULIDs.
    pub fn new(catalog: Arc<dyn CatalogApi>, store: Arc<dyn ObjectStore>) -> Self {
        Self {
            catalog,
            store,
            clock: Arc::new(SystemClock),
            ids: Arc::new(SystemIds),
        }
    }
}

/// State every connection of an agent shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: AgentConfig,
    pub(crate) catalog: Arc<dyn CatalogApi>,
    /// See [`Components::clock`].
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) cache: BlockCache,
    /// Reads chunks of both tiers (through `cache`).
    pub(crate) chunks: ChunkReader,
    pub(crate) topics: TopicCache,
    pub(crate) index: Arc<PartitionIndex>,
    pub(crate) writer: SegmentWriter,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) fleet: Arc<Fleet>,
    /// Produce validations allowed on the blocking pool at once.
    pub(crate) validations: Arc<tokio::sync::Semaphore>,
    /// Fetch response bytes allowed in memory at once.
    pub(crate) fetch_memory: crate::api::fetch_memory::FetchMemory,
    /// TLS, SASL and principals.
    pub(crate) security: SecurityState,
}

/// A running agent. Dropping it does not stop it: call [`Agent::shutdown`].
#[derive(Debug)]
pub struct Agent {
    shared: Arc<Shared>,
    /// Each listener's name and bound address, in configuration order.
    local_addrs: Vec<(String, std::net::SocketAddr)>,
    /// Stops accepting and ends idle connections.
    stop_accepting: CancellationToken,
    /// Stops the background tasks once the writer has drained.
    stop_background: CancellationToken,
    tasks: JoinSet<()>,
}

impl Agent {
    /// Binds the listener and starts the agent's tasks, on the system
    /// clock and random ULIDs.
    pub async fn start(
        config: AgentConfig,
        catalog: Arc<dyn CatalogApi>,
        store: Arc<dyn ObjectStore>,
    ) -> crate::Result<Self> {
        Self::start_with(config, Components::new(catalog, store)).await
    }

    /// Binds the listener and starts the agent's tasks with `components`.
    pub async fn start_with(config: AgentConfig, components: Components) -> crate::Result<Self> {
        let catalog = components.catalog.clone();
        let listener_configs = config.effective_listeners();
        let security = SecurityState::new(config.security.clone(), &listener_configs)?;
        let mut listeners = Vec::with_capacity(listener_configs.len());
        for listener_config in listener_configs {
            let (listener, bound) = bind(listener_config.bind).await?;
            listeners.push((listener, listener_config, bound));
        }
        let cache = BlockCache::open(config.cache.clone(), components.store.clone()).await?;
        let stop_accepting = CancellationToken::new();
        let stop_background = CancellationToken::new();
        let mut tasks = JoinSet::new();

        let index = Arc::new(PartitionIndex::new(catalog.clone()));
        tasks.spawn(index.clone().run_subscriber(stop_background.clone()));
        let metrics = Arc::new(Metrics::default());
        let fleet = Arc::new(Fleet::new(&config, catalog.clone()));
        tasks.spawn(fleet.clone().run(stop_background.clone()));
        let writer = SegmentWriter::start(
            &config,
            &components,
            cache.clone(),
            metrics.clone(),
            fleet.clone(),
            &mut tasks,
        );
        let fetch_memory =
            crate::api::fetch_memory::FetchMemory::new(config.limits.fetch_memory_bytes_max);
        let shared = Arc::new(Shared {
            fetch_memory,
            topics: TopicCache::new(catalog.clone()),
            config,
            catalog,
            clock: components.clock.clone(),
            chunks: ChunkReader::new(cache.clone(), crate::parquet_tier::READERS_MAX),
            cache,
            index,
            writer,
            metrics,
            fleet,
            validations: Arc::new(tokio::sync::Semaphore::new(crate::api::validations_max())),
            security,
        });
        if let Some(tls) = &shared.security.tls {
            tasks.spawn(
                tls.clone()
                    .run_reloader(stop_background.clone(), shared.metrics.clone()),
            );
        }
        let slots = Arc::new(ConnectionSlots::new(&shared.config.limits));
        let mut local_addrs = Vec::with_capacity(listeners.len());
        for (listener, listener_config, bound) in listeners {
            info!(listener = %listener_config.name, protocol = %listener_config.protocol, address = %bound, "agent listening for Kafka clients");
            local_addrs.push((listener_config.name.clone(), bound));
            tasks.spawn(accept_loop(
                shared.clone(),
                listener,
                Arc::new(listener_config),
                slots.clone(),
                stop_accepting.clone(),
            ));
        }
        Ok(Self {
            shared,
            local_addrs,
            stop_accepting,
            stop_background,
            tasks,
        })
    }

    /// The address the first (primary) Kafka listener is bound to.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.local_addrs[0].1
    }

    /// Every listener's name and bound address, in configuration order.
    pub fn local_addrs(&self) -> &[(String, std::net::SocketAddr)] {
        &self.local_addrs
    }

    /// Whether the agent may serve: in production mode, once registered
    /// with the catalog and while the catalog answered within the last
    /// lease; always in `strata dev`. For the binary's `/ready`.
    pub fn readiness(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let fleet = self.shared.fleet.clone();
        move || fleet.is_ready()
    }

    /// A function rendering the metrics of `agents` in the Prometheus text
    /// format, for the binary's `/metrics` endpoint.
    pub fn metrics_renderer(agents: &[&Agent]) -> impl Fn() -> String + Send + Sync + 'static {
        let shared: Vec<Arc<Shared>> = agents.iter().map(|a| a.shared.clone()).collect();
        move || {
            let stats: Vec<_> = shared
                .iter()
                .map(|s| {
                    (
                        s.config.agent_id.as_str(),
                        s.metrics.as_ref(),
                        s.cache.stats(),
                        s.chunks.stats(),
                    )
                })
                .collect();
            crate::metrics::render(&stats)
        }
    }

    /// Stops accepting requests, flushes and commits everything buffered
    /// (so nothing acknowledged is lost), then stops the background tasks.
    pub async fn shutdown(mut self) {
        self.stop_accepting.cancel();
        self.shared.writer.close().await;
        self.stop_background.cancel();
        while let Some(result) = self.tasks.join_next().await {
            if let Err(e) = result {
                warn!(error = %e, "agent task ended abnormally");
            }
        }
        self.shared.cache.close().await;
        info!("agent stopped");
    }
}

/// Binds one listener's address.
async fn bind(address: std::net::SocketAddr) -> crate::Result<(TcpListener, std::net::SocketAddr)> {
    let error = |source| crate::Error::Listen { address, source };
    let listener = TcpListener::bind(address).await.map_err(error)?;
    let bound = listener.local_addr().map_err(error)?;
    Ok((listener, bound))
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    listener_config: Arc<ListenerConfig>,
    slots: Arc<ConnectionSlots>,
    stop: CancellationToken,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let slot = match slots.take(peer.ip()) {
                        Ok(slot) => slot,
                        Err(limit) => {
                            // As Kafka: a connection over a limit is
                            // closed at once (dropping the stream).
                            let counter = match limit {
                                ConnectionLimit::Total => &shared.metrics.connections_refused_total_limit,
                                ConnectionLimit::PerIp => &shared.metrics.connections_refused_ip_limit,
                            };
                            crate::metrics::add(counter, 1);
                            debug!(%peer, ?limit, "refusing a connection over the limit");
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    crate::metrics::add(&shared.metrics.connections, 1);
                    let serve = crate::connection::serve(
                        shared.clone(),
                        stream,
                        peer,
                        listener_config.clone(),
                        stop.clone(),
                    );
                    connections.spawn(async move {
                        serve.await;
                        drop(slot);
                    });
                }
                Err(e) => {
                    // Out of file descriptors and similar: back off briefly
                    // instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Connections see `stop` and end after answering what they have read.
    while connections.join_next().await.is_some() {}
}

/// Which connection limit a refused connection was over.
#[derive(Debug, Clone, Copy)]
enum ConnectionLimit {
    /// `max_connections`.
    Total,
    /// `max_connections_per_ip`.
    PerIp,
}

/// Open connections, in all and per client address (Kafka's
/// `max.connections` and `max.connections.per.ip`).
#[derive(Debug)]
struct ConnectionSlots {
    max_total: usize,
    max_per_ip: usize,
    open: Mutex<OpenConnections>,
}

#[derive(Debug, Default)]
struct OpenConnections {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One open connection's place; given back when dropped.
#[derive(Debug)]
struct ConnectionSlot {
    slots: Arc<ConnectionSlots>,
    ip: IpAddr,
}

impl ConnectionSlots {
    fn new(limits: &crate::config::Limits) -> Self {
        Self {
            max_total: limits.max_connections,
            max_per_ip: limits.max_connections_per_ip,
            open: Mutex::new(OpenConnections::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OpenConnections> {
        self.open.lock().expect("connection slots lock poisoned")
    }

    /// A place for a new connection from `ip`, or the limit it is over.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, ConnectionLimit> {
        let mut open = self.lock();
        if open.total >= self.max_total {
            return Err(ConnectionLimit::Total);
        }
        let from_ip = open.per_ip.entry(ip).or_default();
        if *from_ip >= self.max_per_ip {
            return Err(ConnectionLimit::PerIp);
        }
        *from_ip += 1;
        open.total += 1;
        Ok(ConnectionSlot {
            slots: self.clone(),
            ip,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.slots.lock();
        open.total -= 1;
        if let Some(count) = open.per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: the connection limits count open connections, in all and per
    /// address, and a closed connection frees its place.
    #[test]
    fn connection_slots_enforce_both_limits() {
        let limits = crate::config::Limits {
            max_connections: 3,
            max_connections_per_ip: 2,
            ..crate::config::Limits::default()
        };
        let slots = Arc::new(ConnectionSlots::new(&limits));
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let a1 = slots.take(a).expect("first from a");
        let _a2 = slots.take(a).expect("second from a");
        assert!(matches!(slots.take(a), Err(ConnectionLimit::PerIp)));
        let _b1 = slots.take(b).expect("first from b");
        assert!(matches!(slots.take(b), Err(ConnectionLimit::Total)));
        drop(a1);
        let _b2 = slots.take(b).expect("a place freed");
        assert!(matches!(slots.take(a), Err(ConnectionLimit::Total)));
    }
}
