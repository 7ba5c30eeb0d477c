//! SCRAM (RFC 5802, RFC 7677) as Kafka uses it: the stored credential
//! (salt, StoredKey, ServerKey, iterations) and the server side of the
//! exchange. Sans-I/O: messages in, messages out.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::{digest, hmac, pbkdf2};
use subtle::ConstantTimeEq;

/// Fewest PBKDF2 iterations a stored credential may have (Kafka's and
/// RFC 7677's minimum).
pub const ITERATIONS_MIN: u32 = 4096;
/// Most PBKDF2 iterations a stored credential may have (Kafka's maximum):
/// every authentication pays them, so more is a denial of service.
pub const ITERATIONS_MAX: u32 = 16384;
/// Bytes of salt new credentials get.
pub const SALT_BYTES: usize = 32;

/// The SCRAM hash functions Kafka offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScramMechanism {
    /// SCRAM-SHA-256 (Kafka's mechanism type 1).
    Sha256,
    /// SCRAM-SHA-512 (Kafka's mechanism type 2).
    Sha512,
}

impl ScramMechanism {
    /// Kafka's numeric type (DescribeUserScramCredentials).
    pub fn kafka_type(self) -> i8 {
        match self {
            Self::Sha256 => 1,
            Self::Sha512 => 2,
        }
    }

    /// From Kafka's numeric type.
    pub fn from_kafka_type(value: i8) -> Option<Self> {
        match value {
            1 => Some(Self::Sha256),
            2 => Some(Self::Sha512),
            _ => None,
        }
    }

    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            Self::Sha256 => hmac::HMAC_SHA256,
            Self::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Self::Sha256 => &digest::SHA256,
            Self::Sha512 => &digest::SHA512,
        }
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            Self::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Self::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn output_bytes(self) -> usize {
        self.digest().output_len()
    }
}

/// What is stored for one user and mechanism: never the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    /// The hash function.
    pub mechanism: ScramMechanism,
    /// The salt.
    pub salt: Vec<u8>,
    /// H(HMAC(SaltedPassword, "Client Key")).
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
}

impl std::fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredential")
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredential {
    /// The credential of `password` with `salt` and `iterations`.
    pub fn from_password(
        mechanism: ScramMechanism,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Self {
        let salted = salted_password(mechanism, password, salt, iterations);
        Self::from_salted_password(mechanism, &salted, salt, iterations)
    }

    /// The credential from a salted password (what Kafka's
    /// AlterUserScramCredentials carries).
    pub fn from_salted_password(
        mechanism: ScramMechanism,
        salted: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Self {
        let key = hmac::Key::new(mechanism.hmac(), salted);
        let client_key = hmac::sign(&key, b"Client Key");
        let stored_key = digest::digest(mechanism.digest(), client_key.as_ref());
        let server_key = hmac::sign(&key, b"Server Key");
        Self {
            mechanism,
            salt: salt.to_vec(),
            stored_key: stored_key.as_ref().to_vec(),
            server_key: server_key.as_ref().to_vec(),
            iterations,
        }
    }

    /// Whether `password` is this credential's (PLAIN), in constant time.
    pub fn verify_password(&self, password: &[u8]) -> bool {
        let candidate = Self::from_password(self.mechanism, password, &self.salt, self.iterations);
        bool::from(candidate.stored_key.ct_eq(&self.stored_key))
    }
}

/// A fresh random salt of [`SALT_BYTES`].
pub fn new_salt() -> Vec<u8> {
    use ring::rand::SecureRandom;
    let mut salt = vec![0u8; SALT_BYTES];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .expect("the system RNG works");
    salt
}

/// PBKDF2(HMAC-H, password, salt, iterations).
pub fn salted_password(
    mechanism: ScramMechanism,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    let mut out = vec![0u8; mechanism.output_bytes()];
    let iterations = std::num::NonZeroU32::new(iterations.max(1)).expect("at least 1");
    pbkdf2::derive(mechanism.pbkdf2(), iterations, salt, password, &mut out);
    out
}

/// Why a SCRAM exchange failed. Deliberately coarse: the client learns
/// only that authentication failed, never whether the user exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ScramError {
    /// A message that is not SCRAM as RFC 5802 writes it.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// Wrong proof or unknown user (told apart in logs only).
    #[error("invalid credentials")]
    Invalid,
}

/// The client's first message, parsed.
#[derive(Debug, Clone)]
pub(crate) struct ClientFirst {
    /// The user (with `=2C` and `=3D` decoded).
    pub(crate) user: String,
    nonce: String,
    bare: String,
    gs2_header: String,
}

/// Parses `n,[a=authzid],n=user,r=nonce[,extensions]`.
pub(crate) fn parse_client_first(message: &[u8]) -> Result<ClientFirst, ScramError> {
    let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    let mut parts = text.splitn(3, ',');
    let cbind = parts.next().ok_or(ScramError::Malformed("empty"))?;
    if !matches!(cbind, "n" | "y") {
        return Err(ScramError::Malformed("channel binding is not supported"));
    }
    let authzid = parts
        .next()
        .ok_or(ScramError::Malformed("no authzid field"))?;
    let bare = parts.next().ok_or(ScramError::Malformed("no user"))?;
    let mut user = None;
    let mut nonce = None;
    for attribute in bare.split(',') {
        if let Some(v) = attribute.strip_prefix("n=") {
            user = Some(decode_name(v)?);
        } else if let Some(v) = attribute.strip_prefix("r=") {
            nonce = Some(v.to_string());
        }
    }
    let user = user.ok_or(ScramError::Malformed("no n= attribute"))?;
    let nonce = nonce.ok_or(ScramError::Malformed("no r= attribute"))?;
    if let Some(authzid) = authzid.strip_prefix("a=")
        && decode_name(authzid)? != user
    {
        return Err(ScramError::Invalid);
    }
    if nonce.is_empty() || !nonce.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
        return Err(ScramError::Malformed("bad nonce"));
    }
    Ok(ClientFirst {
        user,
        nonce,
        bare: bare.to_string(),
        gs2_header: format!("{cbind},{authzid},"),
    })
}

/// Decodes a SCRAM `saslname` (`=2C` is `,`, `=3D` is `=`).
fn decode_name(name: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 3)
            .ok_or(ScramError::Malformed("bad escape"))?;
        out.push(match code {
            "2C" => ',',
            "3D" => '=',
            _ => return Err(ScramError::Malformed("bad escape")),
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The server's side after its first message.
#[derive(Debug)]
pub(crate) struct ServerFirst {
    credential: ScramCredential,
    /// Whether the user exists (a stand-in credential fails the proof).
    known: bool,
    client: ClientFirst,
    nonce: String,
    message: String,
}

impl ServerFirst {
    /// Answers `client` with `credential` (a stand-in for unknown users,
    /// see [`stand_in`], so both fail at the same step the same way).
    pub(crate) fn new(
        client: ClientFirst,
        credential: ScramCredential,
        known: bool,
        server_nonce: &str,
    ) -> Self {
        let nonce = format!("{}{server_nonce}", client.nonce);
        let message = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        Self {
            credential,
            known,
            client,
            nonce,
            message,
        }
    }

    /// The server-first message.
    pub(crate) fn message(&self) -> &[u8] {
        self.message.as_bytes()
    }

    /// Checks the client's final message; on success the server-final
    /// message (`v=<signature>`).
    pub(crate) fn finish(&self, message: &[u8]) -> Result<Vec<u8>, ScramError> {
        let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut channel = None;
        let mut nonce = None;
        for attribute in without_proof.split(',') {
            if let Some(v) = attribute.strip_prefix("c=") {
                channel = Some(v);
            } else if let Some(v) = attribute.strip_prefix("r=") {
                nonce = Some(v);
            }
        }
        let expected_channel = B64.encode(self.client.gs2_header.as_bytes());
        if channel != Some(expected_channel.as_str()) {
            return Err(ScramError::Malformed("channel binding does not match"));
        }
        // As Kafka: the nonce must end with the combined nonce (librdkafka
        // before 2.1 sends its own nonce once more in front of it).
        if !nonce.is_some_and(|n| n.ends_with(self.nonce.as_str())) {
            return Err(ScramError::Malformed("nonce does not match"));
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let mechanism = self.credential.mechanism;
        if proof.len() != mechanism.output_bytes() {
            return Err(ScramError::Invalid);
        }
        let auth_message = format!("{},{},{without_proof}", self.client.bare, self.message);
        let stored = hmac::Key::new(mechanism.hmac(), &self.credential.stored_key);
        let signature = hmac::sign(&stored, auth_message.as_bytes());
        let client_key: Vec<u8> = proof
            .iter()
            .zip(signature.as_ref())
            .map(|(p, s)| p ^ s)
            .collect();
        let candidate = digest::digest(mechanism.digest(), &client_key);
        let matches = bool::from(candidate.as_ref().ct_eq(&self.credential.stored_key));
        if !(matches && self.known) {
            return Err(ScramError::Invalid);
        }
        let server = hmac::Key::new(mechanism.hmac(), &self.credential.server_key);
        let server_signature = hmac::sign(&server, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature.as_ref())).into_bytes())
    }

    /// The user the exchange is for.
    pub(crate) fn user(&self) -> &str {
        &self.client.user
    }
}

/// A stand-in credential for a user that does not exist: a salt that is
/// stable per user (derived from `secret`, so repeated tries look like a
/// real user's) and the minimum iterations; no proof matches it.
pub(crate) fn stand_in(mechanism: ScramMechanism, user: &str, secret: &[u8]) -> ScramCredential {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let salt = hmac::sign(&key, user.as_bytes());
    ScramCredential {
        mechanism,
        salt: salt.as_ref().to_vec(),
        stored_key: vec![0; mechanism.output_bytes()],
        server_key: vec![0; mechanism.output_bytes()],
        iterations: ITERATIONS_MIN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client side of RFC 5802, written out for the test only.
    fn client_final(
        mechanism: ScramMechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> String {
        let mut salt = None;
        let mut iterations = None;
        let mut nonce = None;
        for a in server_first.split(',') {
            if let Some(v) = a.strip_prefix("s=") {
                salt = Some(B64.decode(v).expect("salt"));
            } else if let Some(v) = a.strip_prefix("i=") {
                iterations = Some(v.parse::<u32>().expect("i"));
            } else if let Some(v) = a.strip_prefix("r=") {
                nonce = Some(v.to_string());
            }
        }
        let salted = salted_password(
            mechanism,
            password.as_bytes(),
            &salt.expect("s"),
            iterations.expect("i"),
        );
        let key = hmac::Key::new(mechanism.hmac(), &salted);
        let client_key = hmac::sign(&key, b"Client Key");
        let stored = digest::digest(mechanism.digest(), client_key.as_ref());
        let without_proof = format!("c=biws,r={}", nonce.expect("r"));
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let sig = hmac::sign(
            &hmac::Key::new(mechanism.hmac(), stored.as_ref()),
            auth.as_bytes(),
        );
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(sig.as_ref())
            .map(|(a, b)| a ^ b)
            .collect();
        format!("{without_proof},p={}", B64.encode(proof))
    }

    fn exchange(
        mechanism: ScramMechanism,
        stored: &str,
        tried: &str,
        known: bool,
    ) -> Result<Vec<u8>, ScramError> {
        let credential = if known {
            ScramCredential::from_password(mechanism, stored.as_bytes(), b"salty", ITERATIONS_MIN)
        } else {
            stand_in(mechanism, "al,ice", b"secret")
        };
        let first = parse_client_first(b"n,,n=al=2Cice,r=abc").expect("first");
        assert_eq!(first.user, "al,ice");
        let server = ServerFirst::new(first, credential, known, "xyz");
        let server_first = String::from_utf8(server.message().to_vec()).expect("utf8");
        let last = client_final(mechanism, tried, "n=al=2Cice,r=abc", &server_first);
        server.finish(last.as_bytes())
    }

    /// Goal: a right password authenticates with both hashes; a wrong one,
    /// and an unknown user, fail with the same error.
    #[test]
    fn proofs_are_checked() {
        for mechanism in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            let ok = exchange(mechanism, "pw", "pw", true).expect("right password");
            assert!(ok.starts_with(b"v="));
            assert_eq!(
                exchange(mechanism, "pw", "nope", true),
                Err(ScramError::Invalid)
            );
            assert_eq!(
                exchange(mechanism, "pw", "pw", false),
                Err(ScramError::Invalid)
            );
        }
    }

    /// Goal: PLAIN's check against a stored credential.
    #[test]
    fn passwords_verify() {
        let c = ScramCredential::from_password(ScramMechanism::Sha512, b"pw", b"s", ITERATIONS_MIN);
        assert!(c.verify_password(b"pw"));
        assert!(!c.verify_password(b"pW"));
    }

    /// Goal: RFC 7677's test vector for SCRAM-SHA-256 (user, password
    /// `pencil`), so the exchange interoperates with real clients.
    #[test]
    fn rfc7677_vector() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let credential =
            ScramCredential::from_password(ScramMechanism::Sha256, b"pencil", &salt, 4096);
        let first = parse_client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").expect("first");
        let server = ServerFirst::new(first, credential, true, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
        assert_eq!(
            server.message(),
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let last = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let answer = server.finish(last).expect("RFC proof");
        assert_eq!(answer, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }
}
