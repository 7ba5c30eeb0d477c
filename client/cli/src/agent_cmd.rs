//! `strata agent`: one stateless agent as its own process, talking to a
//! remote catalog over gRPC and to S3 or a directory for data.

use std::sync::Arc;

use anyhow::Context;
use strata_agent::{Agent, FaultControl, FaultInjectingStore};
use strata_catalog_api::GrpcCatalog;
use tracing::{info, warn};

use crate::cli::AgentArgs;
use crate::config::{AgentSettings, ConfigFile, S3Settings};

/// Runs the agent until SIGTERM or Ctrl-C, then flushes and commits every
/// buffered write before it exits.
pub(crate) async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let file = ConfigFile::load(args.config.as_deref())?;
    let limits = args.limits.or(file.agent_limits);
    let security = args.security.or(file.agent_security);
    let mut settings = AgentSettings::resolve(args.agent.or(file.agent), &limits, &security)?;
    settings.fault_injection = args.fault_injection;
    crate::config::check_fault_injection(settings.fault_injection, settings.metrics_listen)?;
    let s3 = S3Settings::resolve(args.s3.or(file.s3));
    if args.check_config {
        let printed = format!("{settings:#?}");
        return crate::catalog_cmd::check_store_config(&settings.object_store, &s3, &printed);
    }
    info!(?settings, ?s3, "starting the agent");

    let mut store = settings.object_store.open(&s3)?;
    check_bucket(store.as_ref(), &settings.object_store.to_string()).await?;
    let faults = settings.fault_injection.then(FaultControl::new);
    if let Some(control) = &faults {
        warn!(
            "FAULT INJECTION IS ON (--fault-injection): object-store calls obey PUT /faults on \
             the metrics endpoint; never use this in production"
        );
        store = Arc::new(FaultInjectingStore::new(store, control.clone()));
    }
    let catalog = GrpcCatalog::connect_lazy(&settings.catalog).with_context(|| {
        format!(
            "invalid catalog endpoint `{}`: use http://host:port",
            settings.catalog
        )
    })?;
    let agent = Agent::start(settings.agent.clone(), Arc::new(catalog), store).await?;
    let http = crate::http::Endpoint::start(
        settings.metrics_listen,
        "--metrics-listen",
        crate::http::Routes::metrics(Arc::new(Agent::metrics_renderer(&[&agent])))
            .with_readiness(Arc::new(agent.readiness()))
            .with_faults(faults.map(|f| Arc::new(f) as Arc<dyn crate::http::FaultSwitch>)),
    )
    .await?;
    for (name, address) in agent.local_addrs() {
        info!(listener = %name, %address, "Kafka listener");
    }
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

/// How long the start-up check of the object store may take (the S3
/// client's own retries included).
const BUCKET_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Fails the start unless the object store answers a read: a bucket that
/// does not exist (or credentials it refuses) would otherwise time out every
/// produce for as long as the agent runs, with nothing saying why. A list
/// of one small prefix is the read: unlike a HEAD (whose 404 has no body),
/// it fails only when the bucket itself is missing or unreadable.
async fn check_bucket(store: &dyn object_store::ObjectStore, url: &str) -> anyhow::Result<()> {
    let prefix = object_store::path::Path::from("_strata/probe");
    let list = tokio::time::timeout(
        BUCKET_CHECK_TIMEOUT,
        store.list_with_delimiter(Some(&prefix)),
    )
    .await;
    match list {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(anyhow::anyhow!(
            "the object store {url} cannot be read: {error}. Does the bucket exist (create it \
             with `strata admin init-bucket --create`) and may these credentials read it?"
        )),
        Err(_) => Err(anyhow::anyhow!(
            "the object store {url} did not answer within {BUCKET_CHECK_TIMEOUT:?}: check the \
             endpoint (--s3-endpoint) and the network"
        )),
    }
}
