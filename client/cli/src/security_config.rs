//! Listener and security settings of `strata agent` and `strata dev`
//! (file section `[agent]`): Kafka's `listeners`, `advertised.listeners`,
//! `listener.security.protocol.map`, TLS files, SASL mechanisms and
//! `connections.max.reauth.ms`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;
use strata_agent::{
    AgentConfig, ListenerConfig, PrincipalMapping, SaslMechanism, SecurityProtocol, TlsSettings,
};

use crate::config::{layered, parse_host_port};

/// Default time between checks of the TLS files for changes.
const DEFAULT_SSL_RELOAD_INTERVAL_MS: u64 = 30_000;
/// Default bound on a TLS handshake plus the SASL exchange.
const DEFAULT_AUTHENTICATION_TIMEOUT_MS: u64 = 10_000;

layered! {
    /// Listener and security settings (file section `[agent]`).
    #[derive(Debug, Default, Clone, Args, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct SecurityOptions {
        /// Kafka's listeners: NAME://host:port, comma-separated, e.g.
        /// INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:9094; replaces
        /// --listen [default: PLAINTEXT://<listen>].
        #[arg(long, env = "STRATA_LISTENERS")]
        listeners: String,
        /// Kafka's advertised.listeners: NAME://host:port per listener
        /// [default: --advertise for the first listener, the bound address
        /// for the others].
        #[arg(long, env = "STRATA_ADVERTISED_LISTENERS")]
        advertised_listeners: String,
        /// Kafka's listener.security.protocol.map: NAME:PROTOCOL,... with
        /// PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL [default: a listener
        /// named after a protocol uses it].
        #[arg(long, env = "STRATA_LISTENER_SECURITY_PROTOCOL_MAP")]
        listener_security_protocol_map: String,
        /// PEM certificate chain of SSL and SASL_SSL listeners.
        #[arg(long, env = "STRATA_SSL_CERT_FILE")]
        ssl_cert_file: PathBuf,
        /// PEM private key of that certificate.
        #[arg(long, env = "STRATA_SSL_KEY_FILE")]
        ssl_key_file: PathBuf,
        /// PEM CA certificates client certificates must chain to (mTLS).
        #[arg(long, env = "STRATA_SSL_CLIENT_CA_FILE")]
        ssl_client_ca_file: PathBuf,
        /// Kafka's ssl.client.auth: required, requested or none
        /// [default: required with ssl_client_ca_file, else none].
        #[arg(long, env = "STRATA_SSL_CLIENT_AUTH")]
        ssl_client_auth: String,
        /// How often the TLS files are checked for changes; changed
        /// certificates serve new connections without a restart; 0 turns
        /// reloading off [default: 30000].
        #[arg(long, env = "STRATA_SSL_RELOAD_INTERVAL_MS")]
        ssl_reload_interval_ms: u64,
        /// Kafka's ssl.principal.mapping.rules: certificate subject to
        /// principal name, e.g. RULE:^CN=([^,]*).*$/$1/,DEFAULT
        /// [default: DEFAULT].
        #[arg(long, env = "STRATA_SSL_PRINCIPAL_MAPPING_RULES")]
        ssl_principal_mapping_rules: String,
        /// Kafka's sasl.enabled.mechanisms, comma-separated
        /// [default: SCRAM-SHA-512,SCRAM-SHA-256,PLAIN].
        #[arg(long, env = "STRATA_SASL_ENABLED_MECHANISMS")]
        sasl_enabled_mechanisms: String,
        /// Kafka's connections.max.reauth.ms: SASL sessions end after this
        /// long unless the client re-authenticates (KIP-368); 0 = never
        /// [default: 0].
        #[arg(long, env = "STRATA_CONNECTIONS_MAX_REAUTH_MS")]
        connections_max_reauth_ms: u64,
        /// How long a TLS handshake, and then the SASL exchange, may take
        /// before the connection is closed [default: 10000].
        #[arg(long, env = "STRATA_AUTHENTICATION_TIMEOUT_MS")]
        authentication_timeout_ms: u64,
    }
}

impl SecurityOptions {
    /// Layers the listener and security settings over `config`, whose
    /// `listen` and `advertise_*` hold the defaults of the first listener.
    pub(crate) fn apply(&self, config: &mut AgentConfig) -> anyhow::Result<()> {
        let security = &mut config.security;
        if let Some(mechanisms) = &self.sasl_enabled_mechanisms {
            security.sasl_mechanisms = split(mechanisms)
                .map(|m| m.parse::<SaslMechanism>().map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<_>>()?;
        }
        if let Some(ms) = self.connections_max_reauth_ms {
            security.reauth_max = Duration::from_millis(ms);
        }
        let timeout = self
            .authentication_timeout_ms
            .unwrap_or(DEFAULT_AUTHENTICATION_TIMEOUT_MS);
        security.handshake_timeout = Duration::from_millis(timeout.max(1));
        if let Some(rules) = &self.ssl_principal_mapping_rules {
            security.principal_mapping = PrincipalMapping::parse(rules)?;
        }
        security.tls = self.tls()?;
        if let Some(listeners) = &self.listeners {
            config.listeners = self.listeners(config, listeners)?;
            let first = &config.listeners[0];
            config.listen = first.bind;
            config.advertise_host = first.advertise_host.clone();
            config.advertise_port = first.advertise_port;
        } else if self.advertised_listeners.is_some()
            || self.listener_security_protocol_map.is_some()
        {
            bail!("advertised_listeners and listener_security_protocol_map need listeners");
        }
        Ok(())
    }

    fn tls(&self) -> anyhow::Result<Option<TlsSettings>> {
        let (cert_path, key_path) = match (&self.ssl_cert_file, &self.ssl_key_file) {
            (Some(cert), Some(key)) => (cert.clone(), key.clone()),
            (None, None) => {
                if self.ssl_client_ca_file.is_some() {
                    bail!("ssl_client_ca_file needs ssl_cert_file and ssl_key_file");
                }
                return Ok(None);
            }
            _ => bail!("set both ssl_cert_file and ssl_key_file, or neither"),
        };
        let client_auth =
            self.ssl_client_auth
                .as_deref()
                .unwrap_or(if self.ssl_client_ca_file.is_some() {
                    "required"
                } else {
                    "none"
                });
        let (client_ca_path, client_auth_optional) = match client_auth {
            "none" => (None, false),
            "required" | "requested" => {
                let ca = self.ssl_client_ca_file.clone().with_context(|| {
                    format!("ssl_client_auth={client_auth} needs ssl_client_ca_file")
                })?;
                (Some(ca), client_auth == "requested")
            }
            other => bail!("ssl_client_auth `{other}`: use required, requested or none"),
        };
        Ok(Some(TlsSettings {
            cert_path,
            key_path,
            client_ca_path,
            client_auth_optional,
            reload_interval: Duration::from_millis(
                self.ssl_reload_interval_ms
                    .unwrap_or(DEFAULT_SSL_RELOAD_INTERVAL_MS),
            ),
        }))
    }

    fn listeners(
        &self,
        config: &AgentConfig,
        listeners: &str,
    ) -> anyhow::Result<Vec<ListenerConfig>> {
        let protocols = match &self.listener_security_protocol_map {
            Some(map) => split(map)
                .map(|entry| {
                    let (name, protocol) = entry.split_once(':').with_context(|| {
                        format!(
                            "listener_security_protocol_map entry `{entry}` is not NAME:PROTOCOL"
                        )
                    })?;
                    let protocol = protocol
                        .parse::<SecurityProtocol>()
                        .map_err(anyhow::Error::msg)?;
                    Ok((name.to_string(), protocol))
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        let advertised: Vec<(String, String, u16)> = match &self.advertised_listeners {
            Some(list) => split(list).map(endpoint).collect::<anyhow::Result<_>>()?,
            None => Vec::new(),
        };
        let mut out = Vec::new();
        for (index, entry) in split(listeners).enumerate() {
            let (name, host, port) = endpoint(entry)?;
            let bind = format!("{host}:{port}")
                .parse()
                .or_else(|_| format!("[{host}]:{port}").parse())
                .with_context(|| format!("listener `{entry}`: bind an IP address, e.g. 0.0.0.0"))?;
            let protocol = match protocols.iter().find(|(n, _)| *n == name) {
                Some((_, protocol)) => *protocol,
                None => name.parse::<SecurityProtocol>().map_err(|_| {
                    anyhow::anyhow!(
                        "listener `{name}` has no protocol: add {name}:<PROTOCOL> to listener_security_protocol_map"
                    )
                })?,
            };
            let (advertise_host, advertise_port) =
                match advertised.iter().find(|(n, _, _)| *n == name) {
                    Some((_, host, port)) => (host.clone(), *port),
                    None if index == 0 => (config.advertise_host.clone(), config.advertise_port),
                    None => (host.clone(), port),
                };
            out.push(ListenerConfig {
                name,
                protocol,
                bind,
                advertise_host,
                advertise_port,
            });
        }
        if out.is_empty() {
            bail!("listeners is empty");
        }
        if let Some((name, _, _)) = advertised
            .iter()
            .find(|(n, _, _)| !out.iter().any(|l| l.name == *n))
        {
            bail!("advertised_listeners names `{name}`, which is not in listeners");
        }
        Ok(out)
    }
}

fn split(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// `NAME://host:port`.
fn endpoint(entry: &str) -> anyhow::Result<(String, String, u16)> {
    let (name, address) = entry
        .split_once("://")
        .with_context(|| format!("`{entry}` is not NAME://host:port"))?;
    let (host, port) = parse_host_port(address)?;
    Ok((name.to_string(), host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(listeners: &str, advertised: Option<&str>, map: Option<&str>) -> SecurityOptions {
        SecurityOptions {
            listeners: Some(listeners.to_string()),
            advertised_listeners: advertised.map(str::to_string),
            listener_security_protocol_map: map.map(str::to_string),
            ..SecurityOptions::default()
        }
    }

    /// Goal: Kafka's listener syntax, with names, protocols and
    /// advertised addresses, and errors that say what to fix.
    #[test]
    fn listeners_parse_like_kafka() {
        let mut config = AgentConfig::dev("127.0.0.1:9092".parse().unwrap(), None);
        config.advertise_host = "agent-1".to_string();
        options(
            "INTERNAL://127.0.0.1:19092,EXTERNAL://0.0.0.0:19094",
            Some("EXTERNAL://public.example:443"),
            Some("INTERNAL:PLAINTEXT,EXTERNAL:SASL_PLAINTEXT"),
        )
        .apply(&mut config)
        .unwrap();
        let l = &config.listeners;
        assert_eq!(l.len(), 2);
        assert_eq!(
            (l[0].name.as_str(), l[0].protocol),
            ("INTERNAL", SecurityProtocol::Plaintext)
        );
        assert_eq!(
            (l[0].advertise_host.as_str(), l[0].advertise_port),
            ("agent-1", 9092)
        );
        assert_eq!(l[1].protocol, SecurityProtocol::SaslPlaintext);
        assert_eq!(
            (l[1].advertise_host.as_str(), l[1].advertise_port),
            ("public.example", 443)
        );
        assert_eq!(config.listen, "127.0.0.1:19092".parse().unwrap());

        let mut config = AgentConfig::dev("127.0.0.1:9092".parse().unwrap(), None);
        let e = options("CLIENT://127.0.0.1:1", None, None)
            .apply(&mut config)
            .unwrap_err();
        assert!(
            e.to_string().contains("listener_security_protocol_map"),
            "{e}"
        );
        let e = options("SSL://127.0.0.1:1", None, None).apply(&mut config);
        assert!(e.is_ok(), "the TLS files are checked when the agent starts");
    }
}
