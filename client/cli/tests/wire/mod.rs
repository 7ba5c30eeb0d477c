//! Raw Kafka frames for the client's protocol-level tests: a request with
//! its header and size prefix, and a response body decoded after its header.
//! Included (`mod wire;`) by the tests that speak the protocol by hand.

#![expect(clippy::unwrap_used, reason = "test helpers panic on malformed frames")]

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// `request` as `key` v`version`, framed: size, request header, body.
pub fn request_frame(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &'static str,
    request: &RequestKind,
) -> BytesMut {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(client_id)));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, key.request_header_version(version))
        .unwrap();
    request
        .encode(&mut body, version)
        .unwrap_or_else(|e| panic!("encode {key:?} v{version}: {e}"));
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.put_i32(i32::try_from(body.len()).unwrap());
    frame.extend_from_slice(&body);
    frame
}

/// A response frame's content (after the size): its correlation id and
/// the decoded body, which must use every byte.
pub fn decode_response(key: ApiKey, version: i16, frame: Vec<u8>) -> (i32, ResponseKind) {
    let mut frame = Bytes::from(frame);
    let header = ResponseHeader::decode(&mut frame, key.response_header_version(version)).unwrap();
    let response = ResponseKind::decode(key, &mut frame, version)
        .unwrap_or_else(|e| panic!("decode {key:?} v{version} response: {e}"));
    assert!(frame.is_empty(), "{key:?} v{version}: trailing bytes");
    (header.correlation_id, response)
}
