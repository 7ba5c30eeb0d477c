//! The agent's public error type.

/// Why an agent could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Kafka listener could not be bound.
    #[error(
        "cannot listen on {address}: {source} (is another broker running? choose another port with --listen)"
    )]
    Listen {
        /// The address asked for.
        address: std::net::SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The block cache could not be opened (bad settings, or its disk
    /// directory is not writable).
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    /// TLS certificates or keys could not be loaded.
    #[error(transparent)]
    Tls(#[from] crate::security::tls::TlsError),
    /// Listener or security settings that contradict each other.
    #[error("invalid security settings: {0}")]
    Security(String),
}

/// A result with the agent's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
