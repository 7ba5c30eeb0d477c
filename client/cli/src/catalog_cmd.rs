//! `strata catalog`: the catalog role as its own process, serving agents
//! over gRPC. Several may run on one database (high availability): the one
//! holding the lease in the database serves, the others stand by.

use std::sync::Arc;

use anyhow::Context;
use strata_catalog::{
    CatalogStore, CommitFaults, HaCatalog, HaOptions, PostgresOptions, PostgresStore,
    ServiceOptions, SqliteOptions, SqliteStore,
};
use strata_catalog_api::clock::{IdGen, SystemIds};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cli::CatalogArgs;
use crate::config::{CatalogSettings, ConfigFile};

/// Runs the catalog until SIGTERM or Ctrl-C, then finishes the requests
/// in flight and exits.
pub(crate) async fn run(args: CatalogArgs) -> anyhow::Result<()> {
    let file = ConfigFile::load(args.config.as_deref())?;
    let mut settings = CatalogSettings::resolve(args.catalog.or(file.catalog))?;
    settings.fault_injection = args.fault_injection;
    crate::config::check_fault_injection(settings.fault_injection, settings.metrics_listen)?;
    if args.check_config {
        store_kind(&settings.store)?;
        print_settings(&format!("{settings:#?}"));
        return Ok(());
    }
    info!(?settings, "starting the catalog");
    let faults = settings.fault_injection.then(CommitFaults::new);
    if faults.is_some() {
        warn!(
            "FAULT INJECTION IS ON (--fault-injection): commits obey PUT /faults on the metrics \
             endpoint; never use this in production"
        );
    }
    let store = open(&settings).await?;
    let holder = format!(
        "{}-{}",
        std::process::id(),
        SystemIds.ulid().to_string().to_lowercase()
    );
    let catalog = HaCatalog::new(
        store,
        service_options(&settings, faults.clone()),
        HaOptions {
            holder: holder.clone(),
            address: settings.advertise.clone(),
            lease_ms: settings.catalog_lease_ms,
            renew_interval_ms: settings.catalog_lease_renew_interval_ms,
        },
    );
    let rpc_metrics = catalog.rpc_metrics();
    let catalog_metrics = catalog.metrics();

    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for the catalog (choose another with --listen)",
                settings.listen
            )
        })?;
    let address = listener.local_addr()?;
    let stop = CancellationToken::new();
    let grpc = tokio::spawn(strata_catalog::serve_ha(
        listener,
        catalog.clone(),
        stop.clone(),
    ));
    // Stopped before the server, so the lease is released (a standby takes
    // over at once) while calls in flight finish.
    let lease_stop = CancellationToken::new();
    let lease = tokio::spawn(catalog.run(lease_stop.clone()));
    let http = crate::http::Endpoint::start(
        settings.metrics_listen,
        "--metrics-listen",
        crate::http::Routes::metrics(Arc::new(move || {
            let mut text = render_metrics();
            text.push_str(&catalog_metrics.render());
            text.push_str(&rpc_metrics.render());
            text
        }))
        .with_faults(faults.map(|f| Arc::new(f) as Arc<dyn crate::http::FaultSwitch>)),
    )
    .await?;
    info!(
        %address,
        metrics = %settings.metrics_listen,
        holder,
        advertise = %settings.advertise,
        "the catalog is up (a standby until it holds the lease in the database)"
    );

    crate::shutdown::signal().await;
    info!("shutting down the catalog");
    lease_stop.cancel();
    if lease.await.is_err() {
        warn!("the catalog lease task panicked");
    }
    http.stop().await;
    stop.cancel();
    grpc.await
        .context("the catalog's gRPC server task failed")?
        .context("the catalog's gRPC server failed")?;
    info!("bye");
    Ok(())
}

/// `--check-config` of a role that uses an object store: builds the S3
/// client too (no request is made, so a bad endpoint or region fails here),
/// then prints the resolved settings.
pub(crate) fn check_store_config(
    object_store: &crate::object_store_url::ObjectStoreUrl,
    s3: &crate::config::S3Settings,
    settings: &str,
) -> anyhow::Result<()> {
    if matches!(
        object_store,
        crate::object_store_url::ObjectStoreUrl::S3 { .. }
    ) {
        object_store.open(s3)?;
    }
    print_settings(&format!("{settings}\n{s3:#?}"));
    Ok(())
}

/// `--check-config` output: the resolved settings on stdout.
pub(crate) fn print_settings(settings: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // A closed stdout only loses the printout; the check itself passed.
    let _ = writeln!(out, "{settings}\nconfiguration ok");
}

/// The settings of the service each takeover builds.
fn service_options(
    settings: &CatalogSettings,
    commit_faults: Option<CommitFaults>,
) -> ServiceOptions {
    ServiceOptions {
        agent_lease_ms: settings.agent_lease_ms,
        commit_gap_timeout_ms: settings.commit_gap_timeout_ms,
        commit_faults,
        // Agents of a separate catalog always register: a commit without an
        // epoch would skip fencing.
        unfenced_commits: false,
        max_commit_age_ms: settings.max_commit_age_ms,
        ..ServiceOptions::default()
    }
}

/// Opens the store named by `settings.store`.
async fn open(settings: &CatalogSettings) -> anyhow::Result<Arc<dyn CatalogStore>> {
    match store_kind(&settings.store)? {
        StoreKind::Sqlite(path) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            let sqlite = SqliteOptions {
                fsync: settings.fsync,
                max_commit_age_ms: settings.max_commit_age_ms,
                ..SqliteOptions::default()
            };
            let opened = path.clone();
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(opened, sqlite))
                .await
                .context("the SQLite open task failed")?
                .with_context(|| format!("cannot open the SQLite catalog {}", path.display()))?;
            Ok(Arc::new(store))
        }
        StoreKind::Postgres => {
            let options = PostgresOptions {
                // A catalog paused inside a transaction must not hold the
                // writers' lock past half a lease: a standby's takeover
                // waits for it.
                idle_in_transaction_timeout_ms: (settings.catalog_lease_ms / 2).max(1),
                max_commit_age_ms: settings.max_commit_age_ms,
                ..PostgresOptions::default()
            };
            let store = PostgresStore::open(&settings.store, options)
                .await
                .context(
                    "cannot open the PostgreSQL catalog (is the server up, and does the URL \
                     name an existing database and user?)",
                )?;
            Ok(Arc::new(store))
        }
    }
}

/// A parsed `--store` URL.
#[derive(Debug, PartialEq, Eq)]
enum StoreKind {
    /// `sqlite:///absolute/path` or `sqlite://relative/path`.
    Sqlite(std::path::PathBuf),
    /// `postgres://...` or `postgresql://...` (the URL is passed on whole).
    Postgres,
}

fn store_kind(url: &str) -> anyhow::Result<StoreKind> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        anyhow::ensure!(
            !path.is_empty(),
            "`{url}` names no file: use sqlite:///path/catalog.db"
        );
        return Ok(StoreKind::Sqlite(path.into()));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(StoreKind::Postgres);
    }
    anyhow::bail!(
        "unsupported catalog store `{url}`: use sqlite:///path/catalog.db or \
         postgres://user@host:port/database"
    )
}

/// The catalog's `/metrics`: liveness and version for now.
fn render_metrics() -> String {
    format!(
        "# HELP strata_catalog_up 1 while the catalog serves.\n\
         # TYPE strata_catalog_up gauge\n\
         strata_catalog_up 1\n\
         # HELP strata_build_info The running version.\n\
         # TYPE strata_build_info gauge\n\
         strata_build_info{{role=\"catalog\",version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls() {
        assert_eq!(
            store_kind("sqlite:///var/lib/strata/catalog.db").expect("valid"),
            StoreKind::Sqlite("/var/lib/strata/catalog.db".into())
        );
        assert_eq!(
            store_kind("sqlite://catalog.db").expect("valid"),
            StoreKind::Sqlite("catalog.db".into())
        );
        assert_eq!(
            store_kind("postgres://strata@db:5432/strata").expect("valid"),
            StoreKind::Postgres
        );
        assert!(store_kind("sqlite://").is_err());
        assert!(store_kind("mysql://db").is_err());
    }
}
