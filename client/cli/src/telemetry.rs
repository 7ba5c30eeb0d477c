//! Logging set-up for the binary: `RUST_LOG`-style filters, text or JSON.

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Keeps logging alive for the life of the process.
pub(crate) struct Guard;

/// Installs the global subscriber (default level: info).
pub(crate) fn init(format: LogFormat) -> Guard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Guard
}
