//! `strata compactor`: the compactor as its own process, talking to a
//! remote catalog over gRPC and to the agents' object store.

use std::sync::Arc;

use anyhow::Context;
use strata_catalog_api::GrpcCatalog;
use strata_compactor::Compactor;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::cli::CompactorArgs;
use crate::config::{CompactorSettings, ConfigFile, S3Settings};

/// Runs the compactor until SIGTERM or Ctrl-C. Stopping mid-file is safe:
/// an unswapped file is an orphan the next sweep deletes.
pub(crate) async fn run(args: CompactorArgs) -> anyhow::Result<()> {
    let file = ConfigFile::load(args.config.as_deref())?;
    let settings = CompactorSettings::resolve(args.compactor.or(file.compactor))?;
    let s3 = S3Settings::resolve(args.s3.or(file.s3));
    if args.check_config {
        let printed = format!("{settings:#?}");
        return crate::catalog_cmd::check_store_config(&settings.object_store, &s3, &printed);
    }
    info!(?settings, ?s3, "starting the compactor");
    let store = settings.object_store.open(&s3)?;
    let catalog = GrpcCatalog::connect_lazy(&settings.catalog).with_context(|| {
        format!(
            "invalid catalog endpoint `{}`: use http://host:port",
            settings.catalog
        )
    })?;
    let compactor = Compactor::new(settings.compactor.clone(), Arc::new(catalog), store);
    let metrics = compactor.metrics();
    let http = crate::http::Endpoint::start(
        settings.metrics_listen,
        "--metrics-listen",
        crate::http::Routes::metrics(Arc::new(move || metrics.render())),
    )
    .await?;
    info!(
        catalog = %settings.catalog,
        object_store = %settings.object_store,
        metrics = %settings.metrics_listen,
        "the compactor is ready"
    );
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { compactor.run(stop).await }
    });
    crate::shutdown::signal().await;
    info!("shutting down");
    stop.cancel();
    task.await?;
    http.stop().await;
    info!("bye");
    Ok(())
}
