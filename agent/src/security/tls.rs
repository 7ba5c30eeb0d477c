//! TLS of SSL and SASL_SSL listeners (rustls, ring provider), with the
//! certificate, key and client CA reloaded from disk when they change.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::TlsSettings;

/// Why TLS settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM item.
    #[error("cannot load {what} from {path}: {reason} (give a PEM file)")]
    File {
        /// Which setting.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the certificate, key or CA.
    #[error("invalid TLS settings: {0} (check that the key matches the certificate)")]
    Config(String),
}

/// Loads a rustls server configuration from `settings`.
pub(crate) fn load(settings: &TlsSettings) -> Result<ServerConfig, TlsError> {
    let certs = CertificateDer::pem_file_iter(&settings.cert_path)
        .and_then(|items| items.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_error("the certificate chain", &settings.cert_path, e))?;
    if certs.is_empty() {
        return Err(file_error(
            "the certificate chain",
            &settings.cert_path,
            "no CERTIFICATE in it",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&settings.key_path)
        .map_err(|e| file_error("the private key", &settings.key_path, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &settings.client_ca_path {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| file_error("the client CA", path, e))?
            {
                let cert = cert.map_err(|e| file_error("the client CA", path, e))?;
                roots
                    .add(cert)
                    .map_err(|e| file_error("the client CA", path, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if settings.client_auth_optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))
}

fn file_error(what: &'static str, path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        what,
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The current TLS configuration of an agent; swapped for a new one when
/// the files change, so new connections use new certificates while open
/// ones keep theirs.
#[derive(Debug)]
pub(crate) struct TlsState {
    settings: TlsSettings,
    current: RwLock<Arc<ServerConfig>>,
    stamps: Mutex<Vec<Option<SystemTime>>>,
}

impl TlsState {
    /// Loads the files once; fails when they are not usable.
    pub(crate) fn new(settings: TlsSettings) -> Result<Self, TlsError> {
        let config = load(&settings)?;
        let stamps = stamps(&settings);
        Ok(Self {
            settings,
            current: RwLock::new(Arc::new(config)),
            stamps: Mutex::new(stamps),
        })
    }

    /// An acceptor for a new connection.
    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let config = self
            .current
            .read()
            .expect("TLS config lock poisoned")
            .clone();
        tokio_rustls::TlsAcceptor::from(config)
    }

    /// Reloads when a file's modification time changed. A reload that
    /// fails keeps the old configuration (and says so): a half-written
    /// certificate must not take the listener down. Returns whether a new
    /// configuration was installed.
    pub(crate) fn reload_if_changed(&self) -> bool {
        let now = stamps(&self.settings);
        {
            let mut seen = self.stamps.lock().expect("TLS stamps lock poisoned");
            if *seen == now {
                return false;
            }
            *seen = now;
        }
        match load(&self.settings) {
            Ok(config) => {
                *self.current.write().expect("TLS config lock poisoned") = Arc::new(config);
                info!(cert = %self.settings.cert_path.display(), "TLS certificates reloaded");
                true
            }
            Err(e) => {
                warn!(error = %e, "TLS files changed but cannot be loaded; keeping the previous certificates");
                false
            }
        }
    }

    /// Checks the files every `reload_interval` until `stop`.
    pub(crate) async fn run_reloader(
        self: Arc<Self>,
        stop: CancellationToken,
        metrics: Arc<crate::metrics::Metrics>,
    ) {
        let period = self.settings.reload_interval;
        if period.is_zero() {
            return;
        }
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
            let state = self.clone();
            let reloaded = tokio::task::spawn_blocking(move || state.reload_if_changed())
                .await
                .unwrap_or(false);
            if reloaded {
                crate::metrics::add(&metrics.tls_reloads, 1);
            }
        }
    }
}

fn stamps(settings: &TlsSettings) -> Vec<Option<SystemTime>> {
    [
        Some(&settings.cert_path),
        Some(&settings.key_path),
        settings.client_ca_path.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
    .collect()
}

/// The RFC 4514 subject of a DER certificate (`CN=alice,O=Acme`).
pub(crate) fn subject_of(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(cert.as_ref()).ok()?;
    Some(cert.tbs_certificate.subject.to_string())
}
