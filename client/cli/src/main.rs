//! `strata`: every Strata role and command in one binary.

use clap::Parser;

mod admin_cmd;
mod agent_cmd;
mod catalog_cmd;
mod cli;
mod compactor_cmd;
mod config;
mod dev;
mod group_cmd;
mod http;
mod object_store_url;
mod replay_cmd;
mod security_config;
mod shutdown;
mod telemetry;
mod txn_cmd;
mod user_cmd;

/// Survives hostile array lengths in Kafka frames; see
/// `strata_agent::ReservingAllocator`.
#[global_allocator]
static ALLOCATOR: strata_agent::ReservingAllocator = strata_agent::ReservingAllocator;

fn main() -> std::process::ExitCode {
    strata_agent::limit_malloc_arenas();
    let cli = cli::Cli::parse();
    let _guard = telemetry::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("strata: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            cli::Command::Dev(args) => dev::run(*args).await,
            cli::Command::Group(args) => group_cmd::run(args).await,
            cli::Command::Catalog(args) => catalog_cmd::run(args).await,
            cli::Command::Agent(args) => agent_cmd::run(*args).await,
            cli::Command::Compactor(args) => compactor_cmd::run(*args).await,
            cli::Command::Admin(args) => admin_cmd::run(args).await,
            cli::Command::Replay(args) => replay_cmd::replay(*args).await,
            cli::Command::Export(args) => replay_cmd::export(*args).await,
            cli::Command::Txn(args) => txn_cmd::run(args).await,
            cli::Command::User(args) => user_cmd::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("strata: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
