//! Listeners, TLS and authentication: who is on the other end of a
//! connection.
//!
//! An agent has one or more **listeners** (Kafka's `listeners`), each with
//! a name and a security protocol: `PLAINTEXT`, `SSL` (TLS, optionally
//! mutual), `SASL_PLAINTEXT` or `SASL_SSL`. Every connection carries the
//! [`Principal`] it authenticated as (`User:ANONYMOUS` on PLAINTEXT, the
//! mapped certificate subject on mTLS, the SASL user on SASL listeners) in
//! its [`RequestContext`], which every request handler receives: that is
//! where an authorizer plugs in.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub(crate) mod mapping;
pub(crate) mod sasl;
pub mod scram;
pub(crate) mod tls;

pub use mapping::{MappingRuleError, PrincipalMapping};

/// Kafka's security protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    /// No TLS, no authentication.
    Plaintext,
    /// TLS; with client certificates required, mutual TLS (the principal
    /// is the mapped certificate subject).
    Ssl,
    /// SASL over plain TCP.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Whether connections of this protocol run TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    /// Whether connections of this protocol authenticate with SASL.
    pub fn is_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }

    /// Kafka's name of the protocol.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }
}

impl std::str::FromStr for SecurityProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Ok(Self::Plaintext),
            "SSL" => Ok(Self::Ssl),
            "SASL_PLAINTEXT" => Ok(Self::SaslPlaintext),
            "SASL_SSL" => Ok(Self::SaslSsl),
            _ => Err(format!(
                "unknown security protocol `{s}`: use PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
            )),
        }
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One listener: where it binds, what clients are told, how it secures
/// connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// The listener's name (Kafka's listener name, e.g. `INTERNAL`);
    /// Metadata answers a client with the addresses of the listener it
    /// connected on.
    pub name: String,
    /// Its security protocol.
    pub protocol: SecurityProtocol,
    /// The address it binds.
    pub bind: SocketAddr,
    /// The host clients are told to connect to.
    pub advertise_host: String,
    /// The port clients are told to connect to.
    pub advertise_port: u16,
}

/// SASL mechanisms an agent can offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaslMechanism {
    /// `PLAIN`: user and password, checked against the stored SCRAM
    /// credentials (so one set of credentials serves both).
    Plain,
    /// `SCRAM-SHA-256`.
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
}

impl SaslMechanism {
    /// The mechanism's SASL name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// Every mechanism, in the order offered by default.
    pub const ALL: [Self; 3] = [Self::ScramSha512, Self::ScramSha256, Self::Plain];
}

impl std::str::FromStr for SaslMechanism {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown SASL mechanism `{s}`: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
            })
    }
}

/// TLS settings shared by the agent's SSL and SASL_SSL listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain of the agent (leaf first).
    pub cert_path: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
    /// PEM CA certificates that client certificates must chain to; with
    /// it, clients on SSL listeners must present a certificate (mTLS)
    /// unless `client_auth_optional`.
    pub client_ca_path: Option<PathBuf>,
    /// Accept clients without a certificate even with a client CA (their
    /// principal is then `User:ANONYMOUS` on SSL listeners).
    pub client_auth_optional: bool,
    /// How often the files are checked for changes; changed files are
    /// loaded for new connections without a restart.
    pub reload_interval: Duration,
}

/// Security settings of an agent.
#[derive(Debug, Clone)]
pub struct SecurityConfig {
    /// TLS of SSL and SASL_SSL listeners; required when one exists.
    pub tls: Option<TlsSettings>,
    /// Mechanisms SASL listeners offer.
    pub sasl_mechanisms: Vec<SaslMechanism>,
    /// Kafka's `connections.max.reauth.ms` (KIP-368): an authenticated
    /// session lasts this long; a client must re-authenticate before, or
    /// its connection is closed at its next request. Zero: sessions never
    /// expire.
    pub reauth_max: Duration,
    /// Kafka's `ssl.principal.mapping.rules`: certificate subject to
    /// principal name.
    pub principal_mapping: PrincipalMapping,
    /// How long a TLS handshake and the SASL exchange may take before the
    /// connection is closed.
    pub handshake_timeout: Duration,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            tls: None,
            sasl_mechanisms: SaslMechanism::ALL.to_vec(),
            reauth_max: Duration::ZERO,
            principal_mapping: PrincipalMapping::default(),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Who a request runs as: Kafka's `KafkaPrincipal` (`User:alice`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    /// The principal type; always `User` today.
    pub kind: Arc<str>,
    /// The name (`ANONYMOUS` when unauthenticated).
    pub name: Arc<str>,
}

impl Principal {
    /// `User:<name>`.
    pub fn user(name: &str) -> Self {
        Self {
            kind: Arc::from("User"),
            name: Arc::from(name),
        }
    }

    /// `User:ANONYMOUS`, the principal of unauthenticated connections.
    pub fn anonymous() -> Self {
        Self::user("ANONYMOUS")
    }

    /// Whether this is `User:ANONYMOUS`.
    pub fn is_anonymous(&self) -> bool {
        &*self.kind == "User" && &*self.name == "ANONYMOUS"
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// What every request handler knows about the connection it came on: the
/// listener, the client's address, and the principal it runs as. Cheap to
/// clone (an authorizer takes it by reference).
#[derive(Debug, Clone)]
pub(crate) struct RequestContext {
    /// The listener's name (Metadata answers with its addresses).
    pub(crate) listener: Arc<str>,
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// Who the request runs as.
    #[expect(
        dead_code,
        reason = "carried for the authorizer (ACLs, quotas), the next part of issue #13"
    )]
    pub(crate) principal: Principal,
}

/// An agent's security state at run time: settings, the current TLS
/// configuration, and the secrets SCRAM uses.
#[derive(Debug)]
pub(crate) struct SecurityState {
    pub(crate) config: SecurityConfig,
    /// Present when a listener runs TLS.
    pub(crate) tls: Option<Arc<tls::TlsState>>,
    rng: ring::rand::SystemRandom,
    /// Keys the stand-in salts of unknown SCRAM users (random per agent).
    pub(crate) stand_in_secret: [u8; 32],
}

impl SecurityState {
    /// Checks `listeners` against `config` and loads TLS when needed.
    pub(crate) fn new(
        config: SecurityConfig,
        listeners: &[ListenerConfig],
    ) -> Result<Self, crate::Error> {
        use ring::rand::SecureRandom;
        let mut names = std::collections::HashSet::new();
        for listener in listeners {
            if !names.insert(listener.name.as_str()) {
                return Err(crate::Error::Security(format!(
                    "listener name `{}` is used twice; give every listener its own name",
                    listener.name
                )));
            }
        }
        let needs_tls = listeners.iter().any(|l| l.protocol.is_tls());
        let tls = match (&config.tls, needs_tls) {
            (Some(settings), true) => Some(Arc::new(tls::TlsState::new(settings.clone())?)),
            (None, true) => {
                return Err(crate::Error::Security(
                    "an SSL or SASL_SSL listener needs a certificate and key: set ssl_cert_file and ssl_key_file".to_string(),
                ));
            }
            (_, false) => None,
        };
        if listeners.iter().any(|l| l.protocol.is_sasl()) && config.sasl_mechanisms.is_empty() {
            return Err(crate::Error::Security(
                "a SASL listener needs at least one SASL mechanism (sasl_enabled_mechanisms)"
                    .to_string(),
            ));
        }
        let rng = ring::rand::SystemRandom::new();
        let mut stand_in_secret = [0u8; 32];
        rng.fill(&mut stand_in_secret)
            .map_err(|_| crate::Error::Security("the system RNG failed".to_string()))?;
        Ok(Self {
            config,
            tls,
            rng,
            stand_in_secret,
        })
    }

    /// A fresh SCRAM server nonce.
    pub(crate) fn nonce(&self) -> String {
        sasl::nonce(&self.rng)
    }
}
