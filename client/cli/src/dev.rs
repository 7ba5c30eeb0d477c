//! `strata dev`: catalog, agent and a local-directory object store in one
//! process.

use std::sync::Arc;

use anyhow::Context;
use object_store::local::LocalFileSystem;
use strata_agent::{Agent, AgentConfig, BrokerAddress, SyncedLocalStore};
use strata_catalog::{CatalogService, ServiceOptions, SqliteOptions};
use strata_catalog_api::InProcess;
use strata_compactor::{Compactor, CompactorConfig};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::cli::DevArgs;

/// Runs `strata dev` until Ctrl-C or SIGTERM, then shuts down cleanly:
/// buffered produce requests are flushed and committed first.
pub(crate) async fn run(args: DevArgs) -> anyhow::Result<()> {
    let data_dir = &args.data_dir;
    let objects = data_dir.join("objects");
    std::fs::create_dir_all(&objects)
        .with_context(|| format!("cannot create the data directory {}", objects.display()))?;
    let data_dir = data_dir.canonicalize()?;
    let cluster_id = cluster_id(&data_dir)?;

    let sqlite = SqliteOptions {
        fsync: args.fsync,
        max_commit_age_ms: args.max_commit_age_ms,
        ..SqliteOptions::default()
    };
    let mut service = ServiceOptions {
        max_commit_age_ms: args.max_commit_age_ms,
        ..ServiceOptions::default()
    };
    service.groups.initial_rebalance_delay_ms = args.group_initial_rebalance_delay_ms;
    let catalog = CatalogService::open_sqlite(data_dir.join("catalog.db"), sqlite, service)
        .await
        .context("cannot open the SQLite catalog")?;
    let grpc = tokio::net::TcpListener::bind(args.catalog_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for the catalog (choose another with --catalog-listen)",
                args.catalog_listen
            )
        })?;
    let catalog_addr = grpc.local_addr()?;
    let stop_grpc = CancellationToken::new();
    let grpc_task = tokio::spawn(strata_catalog::serve(
        grpc,
        catalog.clone(),
        stop_grpc.clone(),
    ));

    let store: Arc<dyn object_store::ObjectStore> =
        if args.fsync {
            Arc::new(
                SyncedLocalStore::new(&objects)
                    .with_context(|| format!("cannot open {}", objects.display()))?,
            )
        } else {
            Arc::new(LocalFileSystem::new_with_prefix(&objects).with_context(|| {
                format!("cannot open the object directory {}", objects.display())
            })?)
        };
    let configs = agent_configs(&args, &data_dir, cluster_id)?;
    let catalog = Arc::new(InProcess(catalog));
    let mut agents = Vec::with_capacity(configs.len());
    for config in configs {
        agents.push(Agent::start(config, catalog.clone(), store.clone()).await?);
    }
    let stop_compactor = CancellationToken::new();
    let compactor = args.compaction.then(|| {
        let compactor = Compactor::new(compactor_config(&args), catalog.clone(), store.clone());
        let stop = stop_compactor.clone();
        let metrics = compactor.metrics();
        let task = tokio::spawn(async move { compactor.run(stop).await });
        (task, metrics)
    });
    let kafka: Vec<String> = agents
        .iter()
        .flat_map(|a| a.local_addrs().iter())
        .map(|(name, address)| format!("{name}://{address}"))
        .collect();
    info!(kafka = %kafka.join(","), catalog = %catalog_addr, data_dir = %data_dir.display(), "strata dev is ready");

    let http = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for metrics (choose another with --metrics-listen)",
                args.metrics_listen
            )
        })?;
    let stop_http = CancellationToken::new();
    let agent_metrics = Agent::metrics_renderer(&agents.iter().collect::<Vec<_>>());
    let compactor_metrics = compactor.as_ref().map(|(_, metrics)| metrics.clone());
    let renderer = move || {
        let mut text = agent_metrics();
        if let Some(metrics) = &compactor_metrics {
            text.push_str(&metrics.render());
        }
        text
    };
    let http_task = tokio::spawn(crate::http::serve(
        http,
        crate::http::Routes::metrics(Arc::new(renderer)),
        stop_http.clone(),
    ));

    crate::shutdown::signal().await;
    info!("shutting down: flushing buffered writes");
    stop_compactor.cancel();
    if let Some((task, _)) = compactor {
        let _ = task.await;
    }
    for agent in agents {
        agent.shutdown().await;
    }
    stop_http.cancel();
    let _ = http_task.await;
    stop_grpc.cancel();
    grpc_task.await??;
    info!("bye");
    Ok(())
}

/// The compactor of `strata dev`: dev defaults under the `--compaction-*`
/// flags.
fn compactor_config(args: &DevArgs) -> CompactorConfig {
    let mut config = CompactorConfig::dev("dev-compactor");
    config.interval = std::time::Duration::from_millis(args.compaction_interval_ms);
    config.target_file_bytes = args.compaction_target_file_bytes.max(1);
    config.gc_grace_ms = args.compaction_gc_grace_ms.max(0);
    config.orphan_grace_ms = args.compaction_orphan_grace_ms.max(0);
    config.retention_check_interval_ms = args.retention_check_interval_ms.max(0);
    config
}

/// One agent config per `--agents`, on consecutive ports from `--listen`.
fn agent_configs(
    args: &DevArgs,
    data_dir: &std::path::Path,
    cluster_id: String,
) -> anyhow::Result<Vec<AgentConfig>> {
    let (advertise_host, advertise_port) = match &args.advertise {
        Some(advertise) => advertise
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
            .context("--advertise must be host:port")?,
        None => (args.listen.ip().to_string(), args.listen.port()),
    };
    let count = args.agents.max(1);
    anyhow::ensure!(
        count == 1 || args.security.listeners.is_none(),
        "--listeners works with one agent in strata dev; drop --agents or --listeners"
    );
    let peers: Vec<BrokerAddress> = (0..count)
        .map(|i| BrokerAddress {
            node_id: i as i32,
            host: advertise_host.clone(),
            port: advertise_port + i as u16,
        })
        .collect();
    let mut configs = Vec::with_capacity(count);
    for i in 0..count {
        let mut listen = args.listen;
        listen.set_port(args.listen.port() + i as u16);
        let mut config = AgentConfig::dev(listen, None);
        config.node_id = i as i32;
        config.agent_id = format!("dev-agent-{i}");
        config.advertise_host = advertise_host.clone();
        config.advertise_port = advertise_port + i as u16;
        config.peers = if count > 1 { peers.clone() } else { Vec::new() };
        config.cluster_id = cluster_id.clone();
        config.flush_interval = std::time::Duration::from_millis(args.flush_interval_ms);
        config.flush_bytes = args.flush_bytes;
        config.flush_eager = args.flush_eager;
        config.auto_create_topics = args.auto_create_topics;
        config.default_partitions = args.default_partitions.max(1);
        args.limits.apply(&mut config);
        args.security.apply(&mut config)?;
        config.cache.memory_bytes = args.cache_memory_mb * 1024 * 1024 / count;
        config.cache.disk_bytes = args.cache_disk_mb * 1024 * 1024 / count;
        config.cache.disk_dir =
            (args.cache_disk_mb > 0).then(|| data_dir.join(format!("cache-{i}")));
        configs.push(config);
    }
    Ok(configs)
}

/// The cluster id, created on first start and kept in the data dir.
fn cluster_id(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = data_dir.join("cluster_id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        return Ok(id.trim().to_string());
    }
    let id = uuid_string();
    std::fs::write(&path, &id).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}

fn uuid_string() -> String {
    // Kafka cluster ids are 22-character URL-safe base64 UUIDs; any stable
    // string works for clients.
    format!("strata-{}", ulid_like())
}

fn ulid_like() -> String {
    use strata_catalog_api::clock::IdGen;
    strata_catalog_api::clock::SystemIds.ulid().to_string()
}
