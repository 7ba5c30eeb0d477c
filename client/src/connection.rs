//! One TCP connection to one broker: request framing, correlation ids and
//! the ApiVersions handshake that picks each API's version.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ResponseHeader;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Result};

/// Responses larger than this are refused rather than buffered: the client
/// only sends admin requests, whose answers are small.
const RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// UNSUPPORTED_VERSION: the broker answers ApiVersions in v0 with it.
const UNSUPPORTED_VERSION: i16 = 35;

/// The newest ApiVersions the handshake sends (v3 carries the client's name).
const API_VERSIONS_VERSION: i16 = 3;

/// Connection settings shared by every connection of a client.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionConfig {
    pub(crate) client_id: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
}

/// An open, negotiated connection. Requests are sent one at a time.
#[derive(Debug)]
pub(crate) struct Connection {
    address: String,
    stream: TcpStream,
    client_id: StrBytes,
    request_timeout: Duration,
    correlation_id: i32,
    /// The broker's supported range per API key.
    versions: HashMap<i16, (i16, i16)>,
}

impl Connection {
    /// Connects to `address` and learns the broker's API versions.
    pub(crate) async fn open(address: &str, config: &ConnectionConfig) -> Result<Self> {
        let stream = tokio::time::timeout(config.connect_timeout, TcpStream::connect(address))
            .await
            .map_err(|_| Error::Timeout {
                address: address.to_owned(),
                operation: "connect".to_owned(),
                timeout: config.connect_timeout,
            })?
            .map_err(|cause| Error::Connect {
                address: address.to_owned(),
                cause,
            })?;
        stream.set_nodelay(true).map_err(|cause| Error::Io {
            address: address.to_owned(),
            cause,
        })?;
        let mut connection = Self {
            address: address.to_owned(),
            stream,
            client_id: StrBytes::from_string(config.client_id.clone()),
            request_timeout: config.request_timeout,
            correlation_id: 0,
            versions: HashMap::new(),
        };
        connection.negotiate().await?;
        Ok(connection)
    }

    /// The broker's `host:port`.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// The newest version of `R` that both sides implement, at most `cap`.
    pub(crate) fn version<R: Request>(&self, cap: i16) -> Result<i16> {
        let ours = R::VERSIONS;
        let unsupported = || Error::UnsupportedVersion {
            address: self.address.clone(),
            api: api_name(R::KEY),
            client_min: ours.min,
            client_max: ours.max.min(cap),
        };
        let &(their_min, their_max) = self.versions.get(&R::KEY).ok_or_else(unsupported)?;
        let max = ours.max.min(their_max).min(cap);
        if max < ours.min.max(their_min) {
            return Err(unsupported());
        }
        Ok(max)
    }

    /// Sends `request` as version `version` and decodes the response.
    pub(crate) async fn send<R: Request>(
        &mut self,
        version: i16,
        request: &R,
    ) -> Result<R::Response> {
        let mut body = self
            .round_trip(
                R::KEY,
                version,
                R::header_version(version),
                R::Response::header_version(version),
                request,
            )
            .await?;
        R::Response::decode(&mut body, version).map_err(|e| self.protocol(R::KEY, e))
    }

    /// The ApiVersions handshake. A broker that does not know our version
    /// answers in v0 with UNSUPPORTED_VERSION (KIP-511); then v0 is used.
    async fn negotiate(&mut self) -> Result<()> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("strata-client"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let response = match self.api_versions(API_VERSIONS_VERSION, &request).await? {
            Some(response) => response,
            None => self
                .api_versions(0, &ApiVersionsRequest::default())
                .await?
                .ok_or_else(|| Error::Kafka {
                    code: UNSUPPORTED_VERSION,
                    message: format!("{} refused ApiVersions v0", self.address),
                })?,
        };
        Error::check(response.error_code, || {
            format!("ApiVersions from {}", self.address)
        })?;
        self.versions = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(())
    }

    /// One ApiVersions exchange; `None` when the broker refused the version.
    async fn api_versions(
        &mut self,
        version: i16,
        request: &ApiVersionsRequest,
    ) -> Result<Option<ApiVersionsResponse>> {
        let key = ApiKey::ApiVersions;
        let mut body = self
            .round_trip(
                key as i16,
                version,
                key.request_header_version(version),
                key.response_header_version(version),
                request,
            )
            .await?;
        // The error code leads the body in every version, so it can be read
        // before knowing which version the broker answered in.
        if body.len() >= 2 && i16::from_be_bytes([body[0], body[1]]) == UNSUPPORTED_VERSION {
            return Ok(None);
        }
        ApiVersionsResponse::decode(&mut body, version)
            .map(Some)
            .map_err(|e| self.protocol(key as i16, e))
    }

    /// Writes one request frame and reads its response body (after the
    /// response header), within the request timeout.
    async fn round_trip<E: Encodable>(
        &mut self,
        api_key: i16,
        version: i16,
        request_header_version: i16,
        response_header_version: i16,
        request: &E,
    ) -> Result<Bytes> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(api_key)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let frame = encode_frame(&header, request_header_version, request, version)
            .map_err(|e| self.protocol(api_key, e))?;
        let timeout = self.request_timeout;
        let mut response = tokio::time::timeout(timeout, self.exchange(&frame))
            .await
            .map_err(|_| Error::Timeout {
                address: self.address.clone(),
                operation: api_name(api_key),
                timeout,
            })??;
        let header = ResponseHeader::decode(&mut response, response_header_version)
            .map_err(|e| self.protocol(api_key, e))?;
        if header.correlation_id != self.correlation_id {
            return Err(self.protocol(
                api_key,
                format!(
                    "correlation id {} answers request {}",
                    header.correlation_id, self.correlation_id
                ),
            ));
        }
        Ok(response)
    }

    /// Sends `frame` and reads one size-prefixed response.
    async fn exchange(&mut self, frame: &[u8]) -> Result<Bytes> {
        let io = |cause| Error::Io {
            address: self.address.clone(),
            cause,
        };
        self.stream.write_all(frame).await.map_err(io)?;
        let size = self.stream.read_i32().await.map_err(io)?;
        let size = usize::try_from(size)
            .ok()
            .filter(|&size| size <= RESPONSE_BYTES_MAX)
            .ok_or_else(|| Error::Protocol {
                address: self.address.clone(),
                reason: format!("response size {size} is out of range"),
            })?;
        let mut body = vec![0; size];
        self.stream.read_exact(&mut body).await.map_err(io)?;
        Ok(Bytes::from(body))
    }

    fn protocol(&self, api_key: i16, reason: impl std::fmt::Display) -> Error {
        Error::Protocol {
            address: self.address.clone(),
            reason: format!("{}: {reason}", api_name(api_key)),
        }
    }
}

/// A size-prefixed request frame: header then body.
fn encode_frame<E: Encodable>(
    header: &RequestHeader,
    header_version: i16,
    request: &E,
    version: i16,
) -> Result<Bytes, String> {
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    header
        .encode(&mut frame, header_version)
        .map_err(|e| format!("cannot encode the request header: {e}"))?;
    request
        .encode(&mut frame, version)
        .map_err(|e| format!("cannot encode v{version}: {e}"))?;
    let size = i32::try_from(frame.len() - 4).map_err(|_| "request too large".to_owned())?;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    Ok(frame.freeze())
}

/// The name of an API key for messages (`OffsetCommit`), or its number.
pub(crate) fn api_name(api_key: i16) -> String {
    match ApiKey::try_from(api_key) {
        Ok(key) => format!("{key:?}"),
        Err(()) => format!("API {api_key}"),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Buf;
    use kafka_protocol::messages::{ListGroupsRequest, OffsetFetchRequest};

    use super::*;

    #[test]
    fn frames_carry_their_size_and_header() {
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::ListGroups as i16)
            .with_request_api_version(4)
            .with_correlation_id(7);
        let mut frame =
            encode_frame(&header, 2, &ListGroupsRequest::default(), 4).expect("encodes");
        let size = frame.get_i32();
        assert_eq!(usize::try_from(size).ok(), Some(frame.len()));
        let decoded = RequestHeader::decode(&mut frame, 2).expect("decodes");
        assert_eq!(decoded.correlation_id, 7);
    }

    #[test]
    fn fields_absent_from_a_version_must_hold_defaults() {
        // Goal: document the codec rule the request builders work around.
        let header = RequestHeader::default();
        let request = OffsetFetchRequest::default().with_topics(None);
        assert!(encode_frame(&header, 1, &request, 8).is_err());
        assert!(encode_frame(&header, 1, &request, 7).is_ok());
    }
}
