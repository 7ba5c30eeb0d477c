//! The agent as a whole: its shared state, listener and lifecycle.

use std::sync::Arc;

use object_store::ObjectStore;
use strata_catalog_api::CatalogApi;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cache::BlockCache;
use crate::config::AgentConfig;
use crate::index::PartitionIndex;
use crate::metrics::Metrics;
use crate::reader::ChunkReader;
use crate::topics::TopicCache;
use crate::writer::SegmentWriter;

/// State every connection of an agent shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: AgentConfig,
    pub(crate) catalog: Arc<dyn CatalogApi>,
    pub(crate) cache: BlockCache,
    /// Reads chunks of both tiers (through `cache`).
    pub(crate) chunks: ChunkReader,
    pub(crate) topics: TopicCache,
    pub(crate) index: Arc<PartitionIndex>,
    pub(crate) writer: SegmentWriter,
    pub(crate) metrics: Arc<Metrics>,
}

/// A running agent. Dropping it does not stop it: call [`Agent::shutdown`].
#[derive(Debug)]
pub struct Agent {
    shared: Arc<Shared>,
    local_addr: std::net::SocketAddr,
    /// Stops accepting and ends idle connections.
    stop_accepting: CancellationToken,
    /// Stops the background tasks once the writer has drained.
    stop_background: CancellationToken,
    tasks: JoinSet<()>,
}

impl Agent {
    /// Binds the listener and starts the agent's tasks.
    pub async fn start(
        config: AgentConfig,
        catalog: Arc<dyn CatalogApi>,
        store: Arc<dyn ObjectStore>,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.listen).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {}: {e} (is another broker running? choose another port with --listen)",
                config.listen
            )
        })?;
        let local_addr = listener.local_addr()?;
        let cache = BlockCache::open(config.cache.clone(), store.clone()).await?;
        let stop_accepting = CancellationToken::new();
        let stop_background = CancellationToken::new();
        let mut tasks = JoinSet::new();

        let index = Arc::new(PartitionIndex::new(catalog.clone()));
        tasks.spawn(index.clone().run_subscriber(stop_background.clone()));
        let metrics = Arc::new(Metrics::default());
        let writer = SegmentWriter::start(
            &config,
            catalog.clone(),
            store,
            cache.clone(),
            metrics.clone(),
            &mut tasks,
        );
        let shared = Arc::new(Shared {
            topics: TopicCache::new(catalog.clone()),
            config,
            catalog,
            chunks: ChunkReader::new(cache.clone(), crate::parquet_tier::READERS_MAX),
            cache,
            index,
            writer,
            metrics,
        });
        tasks.spawn(accept_loop(
            shared.clone(),
            listener,
            stop_accepting.clone(),
        ));
        info!(%local_addr, "agent listening for Kafka clients");
        Ok(Self {
            shared,
            local_addr,
            stop_accepting,
            stop_background,
            tasks,
        })
    }

    /// The address the Kafka listener is bound to.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.local_addr
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

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, stop: CancellationToken) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    crate::metrics::add(&shared.metrics.connections, 1);
                    connections.spawn(crate::connection::serve(shared.clone(), stream, peer, stop.clone()));
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
