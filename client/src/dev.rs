//! `strata dev`: catalog, agent and a local-directory object store in one
//! process.

use std::sync::Arc;

use anyhow::Context;
use object_store::local::LocalFileSystem;
use strata_agent::{Agent, AgentConfig, SyncedLocalStore};
use strata_catalog::{CatalogService, ServiceOptions, SqliteOptions};
use strata_catalog_api::InProcess;
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
        ..SqliteOptions::default()
    };
    let catalog = CatalogService::open_sqlite(
        data_dir.join("catalog.db"),
        sqlite,
        ServiceOptions::default(),
    )
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
    let mut config = AgentConfig::dev(args.listen, Some(data_dir.clone()));
    if let Some(advertise) = &args.advertise {
        let (host, port) = advertise
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_string(), p.parse().ok()?)))
            .context("--advertise must be host:port")?;
        config.advertise_host = host;
        config.advertise_port = port;
    }
    config.cluster_id = cluster_id;
    config.flush_interval = std::time::Duration::from_millis(args.flush_interval_ms);
    config.flush_bytes = args.flush_bytes;
    config.auto_create_topics = args.auto_create_topics;
    config.default_partitions = args.default_partitions.max(1);
    config.cache.memory_bytes = args.cache_memory_mb * 1024 * 1024;
    config.cache.disk_bytes = args.cache_disk_mb * 1024 * 1024;
    let agent = Agent::start(config, Arc::new(InProcess(catalog)), store).await?;
    info!(kafka = %agent.local_addr(), catalog = %catalog_addr, data_dir = %data_dir.display(), "strata dev is ready");

    let http = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for metrics (choose another with --metrics-listen)",
                args.metrics_listen
            )
        })?;
    let stop_http = CancellationToken::new();
    let renderer = agent.metrics_renderer();
    let http_task = tokio::spawn(crate::http::serve(
        http,
        Arc::new(renderer),
        stop_http.clone(),
    ));

    shutdown_signal().await;
    info!("shutting down: flushing buffered writes");
    agent.shutdown().await;
    stop_http.cancel();
    let _ = http_task.await;
    stop_grpc.cancel();
    grpc_task.await??;
    info!("bye");
    Ok(())
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
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", nanos, std::process::id())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
