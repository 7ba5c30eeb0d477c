//! The SASL side of a connection: which requests it may send when, the
//! SaslHandshake / SaslAuthenticate exchange (PLAIN, SCRAM-SHA-256/512),
//! and KIP-368 session lifetimes.
//!
//! As Kafka: before a SASL listener's client has authenticated, only
//! ApiVersions, SaslHandshake and SaslAuthenticate are served; anything
//! else closes the connection. A failed authentication is answered with
//! SASL_AUTHENTICATION_FAILED and the connection closed. An unknown user
//! and a wrong password or proof fail the same way, with the same message,
//! at the same step (SCRAM answers an unknown user with a stand-in salt).
//! With `connections.max.reauth.ms`, a session ends after that long: a
//! client re-authenticates on the open connection (SaslHandshake and
//! SaslAuthenticate again, same principal) or is disconnected at its next
//! other request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use ring::rand::SecureRandom;
use strata_catalog_api::proto::GetScramCredentialRequest;
use tracing::{debug, info, warn};

use super::scram::{self, ScramCredential, ScramMechanism, ServerFirst};
use super::{Principal, SaslMechanism, SecurityProtocol};
use crate::api::str_bytes;
use crate::error_code;
use crate::server::Shared;

/// The one message every failed authentication gets (Kafka's wording).
const FAILED: &str = "Authentication failed: Invalid username or password";

/// What a connection does with a request, given its SASL state.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Serve it as usual.
    Serve,
    /// A SASL request: [`Authenticator::handle`] answers it.
    Sasl,
    /// Close the connection without an answer (as Kafka does).
    Close(&'static str),
}

#[derive(Debug)]
enum State {
    /// Waiting for SaslHandshake.
    Handshake,
    /// Handshake done: the first SaslAuthenticate of `mechanism`.
    Authenticate(SaslMechanism),
    /// SCRAM: server-first sent, waiting for client-final.
    ScramFinal(SaslMechanism, Box<ServerFirst>),
}

/// One connection's authentication.
#[derive(Debug)]
pub(crate) struct Authenticator {
    protocol: SecurityProtocol,
    state: State,
    /// The authenticated session: principal, mechanism, end (None: never).
    session: Option<Session>,
    /// After a SaslHandshake v0, the exchange's tokens arrive as raw
    /// size-prefixed frames, not SaslAuthenticate requests.
    raw: bool,
}

#[derive(Debug, Clone)]
struct Session {
    principal: Principal,
    mechanism: SaslMechanism,
    expires: Option<Instant>,
}

/// What a handled SASL request produced.
#[derive(Debug)]
pub(crate) struct SaslOutcome {
    /// The response to send.
    pub(crate) response: kafka_protocol::messages::ResponseKind,
    /// Close the connection once the response is sent.
    pub(crate) close: bool,
}

impl Authenticator {
    pub(crate) fn new(protocol: SecurityProtocol) -> Self {
        Self {
            protocol,
            state: State::Handshake,
            session: None,
            raw: false,
        }
    }

    /// Whether the next frame is a raw SASL token (SaslHandshake v0).
    pub(crate) fn expects_raw_token(&self) -> bool {
        self.raw && !matches!(self.state, State::Handshake)
    }

    /// Answers a raw SASL token (SaslHandshake v0): the response token,
    /// or `None` when authentication failed (the connection closes then,
    /// as Kafka closes it without a Kafka error for v0 clients).
    pub(crate) async fn raw_token(&mut self, shared: &Arc<Shared>, token: Bytes) -> Option<Bytes> {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(token);
        let outcome = self.authenticate(shared, 0, request).await;
        match outcome.response {
            kafka_protocol::messages::ResponseKind::SaslAuthenticate(r)
                if r.error_code == error_code::NONE && !outcome.close =>
            {
                if !matches!(self.state, State::ScramFinal(..)) {
                    self.raw = false;
                }
                Some(r.auth_bytes)
            }
            _ => None,
        }
    }

    /// The principal of the current session, if authenticated.
    pub(crate) fn principal(&self) -> Option<&Principal> {
        self.session.as_ref().map(|s| &s.principal)
    }

    /// Whether the client is authenticated with a session still valid.
    pub(crate) fn is_authenticated(&self, now: Instant) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| s.expires.is_none_or(|end| now < end))
    }

    /// What to do with a request of `api_key` arriving at `now`.
    pub(crate) fn gate(&self, api_key: ApiKey, now: Instant) -> Gate {
        let sasl_api = matches!(api_key, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate);
        if !self.protocol.is_sasl() {
            return if sasl_api { Gate::Sasl } else { Gate::Serve };
        }
        if sasl_api {
            return Gate::Sasl;
        }
        match &self.session {
            None if api_key == ApiKey::ApiVersions => Gate::Serve,
            None => Gate::Close("a request before SASL authentication"),
            Some(_) if self.is_authenticated(now) => Gate::Serve,
            Some(_) => Gate::Close("the SASL session expired without re-authentication"),
        }
    }

    /// Answers a SaslHandshake or SaslAuthenticate request.
    pub(crate) async fn handle(
        &mut self,
        shared: &Arc<Shared>,
        version: i16,
        request: kafka_protocol::messages::RequestKind,
    ) -> SaslOutcome {
        use kafka_protocol::messages::RequestKind;
        match request {
            RequestKind::SaslHandshake(r) => {
                let outcome = self.handshake(shared, r);
                self.raw = version == 0 && matches!(self.state, State::Authenticate(_));
                outcome
            }
            RequestKind::SaslAuthenticate(r) => self.authenticate(shared, version, r).await,
            _ => unreachable!("gate sends only SASL requests here"),
        }
    }

    fn handshake(&mut self, shared: &Arc<Shared>, request: SaslHandshakeRequest) -> SaslOutcome {
        let enabled = &shared.security.config.sasl_mechanisms;
        let mechanisms = enabled.iter().map(|m| str_bytes(m.name())).collect();
        let answer = |code: i16, close: bool| SaslOutcome {
            response: SaslHandshakeResponse::default()
                .with_error_code(code)
                .with_mechanisms(mechanisms)
                .into(),
            close,
        };
        if !self.protocol.is_sasl() || !matches!(self.state, State::Handshake) {
            return answer(error_code::ILLEGAL_SASL_STATE, true);
        }
        let asked: Option<SaslMechanism> = request.mechanism.parse().ok();
        let Some(mechanism) = asked.filter(|m| enabled.contains(m)) else {
            debug!(mechanism = %request.mechanism.as_str(), "SASL mechanism not enabled");
            return answer(error_code::UNSUPPORTED_SASL_MECHANISM, true);
        };
        // KIP-368: re-authentication keeps the mechanism.
        if self
            .session
            .as_ref()
            .is_some_and(|s| s.mechanism != mechanism)
        {
            return answer(error_code::UNSUPPORTED_SASL_MECHANISM, true);
        }
        self.state = State::Authenticate(mechanism);
        answer(error_code::NONE, false)
    }

    async fn authenticate(
        &mut self,
        shared: &Arc<Shared>,
        version: i16,
        request: SaslAuthenticateRequest,
    ) -> SaslOutcome {
        let state = std::mem::replace(&mut self.state, State::Handshake);
        let result = match state {
            State::Handshake => {
                return fail(
                    error_code::ILLEGAL_SASL_STATE,
                    "SaslAuthenticate before SaslHandshake",
                );
            }
            State::Authenticate(SaslMechanism::Plain) => plain(shared, &request.auth_bytes)
                .await
                .map(|user| Step::Done(SaslMechanism::Plain, user, Bytes::new())),
            State::Authenticate(mechanism) => {
                scram_first(shared, mechanism, &request.auth_bytes).await
            }
            State::ScramFinal(mechanism, server) => match server.finish(&request.auth_bytes) {
                Ok(last) => Ok(Step::Done(
                    mechanism,
                    server.user().to_string(),
                    Bytes::from(last),
                )),
                Err(e) => {
                    debug!(user = server.user(), error = %e, "SCRAM proof refused");
                    Err(FAILED)
                }
            },
        };
        match result {
            Ok(Step::Continue(mechanism, server)) => {
                let bytes = Bytes::copy_from_slice(server.message());
                self.state = State::ScramFinal(mechanism, server);
                SaslOutcome {
                    response: SaslAuthenticateResponse::default()
                        .with_error_message(None)
                        .with_auth_bytes(bytes)
                        .into(),
                    close: false,
                }
            }
            Ok(Step::Done(mechanism, user, bytes)) => {
                self.established(shared, version, mechanism, &user, bytes)
            }
            Err(message) => {
                crate::metrics::add(&shared.metrics.sasl_authentication_failures, 1);
                fail(error_code::SASL_AUTHENTICATION_FAILED, message)
            }
        }
    }

    /// A successful exchange: the session starts (or is renewed).
    fn established(
        &mut self,
        shared: &Arc<Shared>,
        version: i16,
        mechanism: SaslMechanism,
        user: &str,
        bytes: Bytes,
    ) -> SaslOutcome {
        let principal = Principal::user(user);
        if let Some(previous) = &self.session
            && previous.principal != principal
        {
            warn!(from = %previous.principal, to = %principal, "re-authentication tried to change principals");
            crate::metrics::add(&shared.metrics.sasl_authentication_failures, 1);
            return fail(
                error_code::SASL_AUTHENTICATION_FAILED,
                "Cannot change principals during re-authentication",
            );
        }
        let lifetime = shared.security.config.reauth_max;
        let reauthenticated = self.session.is_some();
        self.session = Some(Session {
            principal: principal.clone(),
            mechanism,
            expires: (!lifetime.is_zero()).then(|| Instant::now() + lifetime),
        });
        crate::metrics::add(&shared.metrics.sasl_authentications, 1);
        if reauthenticated {
            crate::metrics::add(&shared.metrics.sasl_reauthentications, 1);
        }
        info!(%principal, mechanism = mechanism.name(), reauthenticated, "SASL authentication succeeded");
        let mut response = SaslAuthenticateResponse::default()
            .with_error_message(None)
            .with_auth_bytes(bytes);
        if version >= 1 {
            response.session_lifetime_ms = lifetime_ms(lifetime);
        }
        SaslOutcome {
            response: response.into(),
            close: false,
        }
    }
}

fn lifetime_ms(lifetime: Duration) -> i64 {
    i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX)
}

enum Step {
    Continue(SaslMechanism, Box<ServerFirst>),
    Done(SaslMechanism, String, Bytes),
}

fn fail(code: i16, message: &str) -> SaslOutcome {
    SaslOutcome {
        response: SaslAuthenticateResponse::default()
            .with_error_code(code)
            .with_error_message(Some(str_bytes(message)))
            .into(),
        close: true,
    }
}

fn scram_of(mechanism: SaslMechanism) -> ScramMechanism {
    match mechanism {
        SaslMechanism::ScramSha256 => ScramMechanism::Sha256,
        _ => ScramMechanism::Sha512,
    }
}

/// The stored credential of `user`, `None` when there is none.
async fn lookup(
    shared: &Arc<Shared>,
    user: &str,
    mechanism: ScramMechanism,
) -> Result<Option<ScramCredential>, &'static str> {
    let request = GetScramCredentialRequest {
        user: user.to_string(),
        mechanism: i32::from(mechanism.kafka_type()),
    };
    let timeout = shared.security.config.handshake_timeout;
    let answer = tokio::time::timeout(timeout, shared.catalog.get_scram_credential(request)).await;
    let credential = match answer {
        Ok(Ok(response)) => response.credential,
        Ok(Err(status)) => {
            warn!(%status, "catalog unavailable for a SASL credential lookup");
            return Err("Authentication failed: the credential store is unavailable; retry later");
        }
        Err(_) => {
            warn!(
                ?timeout,
                "catalog did not answer a SASL credential lookup in time"
            );
            return Err("Authentication failed: the credential store is unavailable; retry later");
        }
    };
    Ok(credential.and_then(|c| {
        Some(ScramCredential {
            mechanism: ScramMechanism::from_kafka_type(i8::try_from(c.mechanism).ok()?)?,
            salt: c.salt,
            stored_key: c.stored_key,
            server_key: c.server_key,
            iterations: u32::try_from(c.iterations).ok()?,
        })
    }))
}

/// SCRAM's first step: look the user up, answer with server-first.
async fn scram_first(
    shared: &Arc<Shared>,
    mechanism: SaslMechanism,
    message: &[u8],
) -> Result<Step, &'static str> {
    let first = scram::parse_client_first(message).map_err(|e| {
        debug!(error = %e, "bad SCRAM client-first");
        FAILED
    })?;
    let hash = scram_of(mechanism);
    let (credential, known) = match lookup(shared, &first.user, hash).await? {
        Some(c) => (c, true),
        None => (
            scram::stand_in(hash, &first.user, &shared.security.stand_in_secret),
            false,
        ),
    };
    if !known {
        debug!(user = %first.user, "SCRAM for an unknown user (answered with a stand-in)");
    }
    let nonce = shared.security.nonce();
    Ok(Step::Continue(
        mechanism,
        Box::new(ServerFirst::new(first, credential, known, &nonce)),
    ))
}

/// PLAIN: `[authzid] NUL user NUL password`, checked against the user's
/// stored SCRAM credential (SHA-512, else SHA-256).
async fn plain(shared: &Arc<Shared>, message: &[u8]) -> Result<String, &'static str> {
    let mut parts = message.split(|&b| b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("Authentication failed: invalid SASL/PLAIN message");
    };
    let user = std::str::from_utf8(user).map_err(|_| FAILED)?.to_string();
    if !authzid.is_empty() && authzid != user.as_bytes() {
        return Err(
            "Authentication failed: Client requested an authorization id that is different from username",
        );
    }
    let mut found = lookup(shared, &user, ScramMechanism::Sha512).await?;
    if found.is_none() {
        found = lookup(shared, &user, ScramMechanism::Sha256).await?;
    }
    let known = found.is_some();
    // An unknown user costs the same PBKDF2 as a known one.
    let credential = found.unwrap_or_else(|| {
        scram::stand_in(
            ScramMechanism::Sha512,
            &user,
            &shared.security.stand_in_secret,
        )
    });
    let password = password.to_vec();
    let verified = tokio::task::spawn_blocking(move || credential.verify_password(&password))
        .await
        .unwrap_or(false);
    if verified && known {
        Ok(user)
    } else {
        debug!(%user, known, "SASL/PLAIN refused");
        Err(FAILED)
    }
}

/// A fresh server nonce: 24 random bytes, base64 (printable, no comma).
pub(crate) fn nonce(rng: &ring::rand::SystemRandom) -> String {
    use base64::Engine;
    let mut bytes = [0u8; 24];
    rng.fill(&mut bytes).expect("the system RNG works");
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: before authentication a SASL listener serves only
    /// ApiVersions and the SASL APIs; PLAINTEXT serves everything.
    #[test]
    fn gate_before_authentication() {
        let now = Instant::now();
        let sasl = Authenticator::new(SecurityProtocol::SaslSsl);
        assert_eq!(sasl.gate(ApiKey::ApiVersions, now), Gate::Serve);
        assert_eq!(sasl.gate(ApiKey::SaslHandshake, now), Gate::Sasl);
        assert_eq!(sasl.gate(ApiKey::SaslAuthenticate, now), Gate::Sasl);
        assert!(matches!(sasl.gate(ApiKey::Metadata, now), Gate::Close(_)));
        assert!(matches!(sasl.gate(ApiKey::Produce, now), Gate::Close(_)));
        let plain = Authenticator::new(SecurityProtocol::Plaintext);
        assert_eq!(plain.gate(ApiKey::Metadata, now), Gate::Serve);
    }

    /// Goal: an expired session serves only re-authentication.
    #[test]
    fn gate_after_expiry() {
        let now = Instant::now();
        let mut auth = Authenticator::new(SecurityProtocol::SaslPlaintext);
        auth.session = Some(Session {
            principal: Principal::user("a"),
            mechanism: SaslMechanism::Plain,
            expires: Some(now + Duration::from_secs(1)),
        });
        assert_eq!(auth.gate(ApiKey::Fetch, now), Gate::Serve);
        let later = now + Duration::from_secs(2);
        assert!(matches!(auth.gate(ApiKey::Fetch, later), Gate::Close(_)));
        assert_eq!(auth.gate(ApiKey::SaslHandshake, later), Gate::Sasl);
    }
}
