//! TLS of the PostgreSQL connections (rustls, ring), honouring libpq's
//! `sslmode` and `sslrootcert` in the connection URL.
//!
//! | sslmode | encryption | server certificate checked |
//! | --- | --- | --- |
//! | `disable` | never | — |
//! | `prefer` (libpq's default) | if the server offers it | no (as libpq without a root certificate) |
//! | `require` | always | no; against `sslrootcert` when given (as libpq) |
//! | `verify-ca` | always | chains to `sslrootcert` |
//! | `verify-full` | always | chains to `sslrootcert` and names the host |
//!
//! tokio-postgres itself knows only disable/prefer/require; the two
//! `verify-*` modes are taken out of the URL here and become `require`
//! with a verifying rustls configuration.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use tokio_postgres::config::SslMode;

use crate::{Error, Result};

/// How server certificates are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    Nothing,
    Chain,
    ChainAndName,
}

/// Parses `url`, applying `sslmode`/`sslrootcert`; returns the
/// tokio-postgres config and the TLS connector to use with it.
pub(super) fn parse(
    url: &str,
) -> Result<(
    tokio_postgres::Config,
    tokio_postgres_rustls::MakeRustlsConnect,
)> {
    let invalid = |reason: String| Error::InvalidArgument {
        field: "postgres url",
        reason,
    };
    let (rest, mode, root) = take_tls_params(url);
    let mut config: tokio_postgres::Config = rest.parse().map_err(|e| invalid(format!("{e}")))?;
    let verify = match mode.as_deref() {
        None => Verify::Nothing,
        Some("disable") => {
            config.ssl_mode(SslMode::Disable);
            Verify::Nothing
        }
        Some("allow" | "prefer") => {
            config.ssl_mode(SslMode::Prefer);
            Verify::Nothing
        }
        Some("require") => {
            config.ssl_mode(SslMode::Require);
            if root.is_some() {
                Verify::Chain
            } else {
                Verify::Nothing
            }
        }
        Some("verify-ca") => {
            config.ssl_mode(SslMode::Require);
            Verify::Chain
        }
        Some("verify-full") => {
            config.ssl_mode(SslMode::Require);
            Verify::ChainAndName
        }
        Some(other) => {
            return Err(invalid(format!(
                "sslmode={other}: use disable, prefer, require, verify-ca or verify-full"
            )));
        }
    };
    let tls = connector(verify, root.as_deref()).map_err(invalid)?;
    Ok((config, tls))
}

/// The connector for a config without `sslmode` handling of ours (TLS when
/// the config asks for it, certificates not checked).
pub(super) fn unverified() -> tokio_postgres_rustls::MakeRustlsConnect {
    connector(Verify::Nothing, None).expect("no root certificates to load")
}

/// Removes `sslmode` and `sslrootcert` from a `postgres://` URL's query.
fn take_tls_params(url: &str) -> (String, Option<String>, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), None, None);
    };
    let mut mode = None;
    let mut root = None;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("sslmode", v)) => mode = Some(v.to_string()),
            Some(("sslrootcert", v)) => root = Some(v.to_string()),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, mode, root)
}

fn connector(
    verify: Verify,
    root: Option<&str>,
) -> std::result::Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = if verify == Verify::Nothing {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unchecked(provider)))
            .with_no_client_auth()
    } else {
        let path = root.ok_or_else(|| {
            "sslmode=verify-ca and verify-full need sslrootcert=<PEM file of the server's CA>"
                .to_string()
        })?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in
            CertificateDer::pem_file_iter(path).map_err(|e| format!("sslrootcert {path}: {e}"))?
        {
            let cert = cert.map_err(|e| format!("sslrootcert {path}: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("sslrootcert {path}: {e}"))?;
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| e.to_string())?;
        let verifier: Arc<dyn ServerCertVerifier> = if verify == Verify::Chain {
            Arc::new(ChainOnly(webpki))
        } else {
            webpki
        };
        builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth()
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// `prefer` / `require` without a root certificate: encryption only, as
/// libpq (the signature of the handshake is still checked).
#[derive(Debug)]
struct Unchecked(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must reach a root; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: sslmode and sslrootcert leave the URL tokio-postgres parses;
    /// the verify modes need a root certificate; unknown modes are errors.
    #[test]
    fn sslmode_is_honoured() {
        let (rest, mode, root) = take_tls_params(
            "postgres://u@h:5/db?sslmode=verify-full&application_name=x&sslrootcert=/ca.pem",
        );
        assert_eq!(rest, "postgres://u@h:5/db?application_name=x");
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root.as_deref(), Some("/ca.pem"));
        let (config, _) = parse("postgres://u@h:5/db?sslmode=require").expect("require");
        assert_eq!(config.get_ssl_mode(), SslMode::Require);
        let (config, _) = parse("postgres://u@h:5/db?sslmode=disable").expect("disable");
        assert_eq!(config.get_ssl_mode(), SslMode::Disable);
        let e = parse("postgres://u@h:5/db?sslmode=verify-full")
            .map(|_| ())
            .expect_err("no root");
        assert!(e.to_string().contains("sslrootcert"), "{e}");
        let e = parse("postgres://u@h:5/db?sslmode=sometimes")
            .map(|_| ())
            .expect_err("unknown");
        assert!(e.to_string().contains("verify-full"), "{e}");
    }
}
