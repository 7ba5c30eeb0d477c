//! `strata agent`: one stateless agent as its own process, talking to a
//! remote catalog over gRPC and to S3 or a directory for data.

use std::sync::Arc;

use anyhow::Context;
use strata_agent::Agent;
use strata_catalog_api::GrpcCatalog;
use tracing::info;

use crate::cli::AgentArgs;
use crate::config::{AgentSettings, ConfigFile, S3Settings};

/// Runs the agent until SIGTERM or Ctrl-C, then flushes and commits every
/// buffered write before it exits.
pub(crate) async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let file = ConfigFile::load(args.config.as_deref())?;
    let settings = AgentSettings::resolve(args.agent.or(file.agent))?;
    let s3 = S3Settings::resolve(args.s3.or(file.s3));
    info!(?settings, ?s3, "starting the agent");

    let store = settings.object_store.open(&s3)?;
    let catalog = GrpcCatalog::connect_lazy(&settings.catalog).with_context(|| {
        format!(
            "invalid catalog endpoint `{}`: use http://host:port",
            settings.catalog
        )
    })?;
    let agent = Agent::start(settings.agent.clone(), Arc::new(catalog), store).await?;
    let http = crate::http::Endpoint::start_with_readiness(
        settings.metrics_listen,
        "--metrics-listen",
        Arc::new(Agent::metrics_renderer(&[&agent])),
        Arc::new(agent.readiness()),
    )
    .await?;
    info!(
        kafka = %agent.local_addr(),
        catalog = %settings.catalog,
        object_store = %settings.object_store,
        metrics = %settings.metrics_listen,
        "the agent is ready"
    );

    crate::shutdown::signal().await;
    info!("shutting down: flushing buffered writes");
    agent.shutdown().await;
    http.stop().await;
    info!("bye");
    Ok(())
}
