//! Decoding of request frames, sans-I/O: the bytes of one frame (without
//! its size prefix) in, a request header and body out. Fed with untrusted
//! bytes, so it never panics (fuzzed by `fuzz/fuzz_targets/request_frame.rs`).

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;

/// Decodes one whole frame: its API key and version, header and body.
/// Errors describe why the frame is unparseable (the connection is then
/// closed, as Kafka does).
pub fn decode_frame(mut frame: Bytes) -> Result<(RequestHeader, RequestKind), String> {
    if frame.len() < 8 {
        return Err(format!(
            "frame of {} bytes is shorter than a request header",
            frame.len()
        ));
    }
    let api_key_raw = (&frame[0..2]).get_i16();
    let version = (&frame[2..4]).get_i16();
    let api_key =
        ApiKey::try_from(api_key_raw).map_err(|()| format!("unknown API key {api_key_raw}"))?;
    let range = api_key.valid_versions();
    let legacy_produce = api_key == ApiKey::Produce && (0..3).contains(&version);
    if !legacy_produce && (version < range.min || version > range.max) {
        return Err(format!(
            "{api_key:?} v{version} is outside the codec's versions"
        ));
    }
    decode_body(api_key, version, &mut frame)
}

/// Decodes only the request header, leaving `frame` at the body.
pub(crate) fn decode_header(
    api_key: ApiKey,
    version: i16,
    frame: &mut Bytes,
) -> Result<RequestHeader, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        RequestHeader::decode(frame, api_key.request_header_version(version))
            .map_err(|e| format!("bad request header: {e}"))
    }))
    .map_err(|_| format!("undecodable {api_key:?} v{version} request header"))?
}

/// Decodes the header and body of a frame whose key and version are known.
pub(crate) fn decode_body(
    api_key: ApiKey,
    version: i16,
    frame: &mut Bytes,
) -> Result<(RequestHeader, RequestKind), String> {
    // The codec is generated code fed with untrusted bytes: treat a panic
    // inside it as a malformed frame rather than letting it unwind further.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let header = RequestHeader::decode(frame, api_key.request_header_version(version))
            .map_err(|e| format!("bad request header: {e}"))?;
        let request = if api_key == ApiKey::Produce && version < 3 {
            decode_legacy_produce(frame)?
        } else {
            RequestKind::decode(api_key, frame, version)
                .map_err(|e| format!("bad {api_key:?} v{version} request: {e}"))?
        };
        Ok((header, request))
    }))
    .map_err(|_| format!("undecodable {api_key:?} v{version} request"))?
}

/// Produce v0-v2 bodies are v3 bodies without the leading
/// `transactional_id` (a nullable string), which the codec no longer
/// decodes. Strata advertises Produce from v0 because librdkafka up to 2.11
/// turns gzip, snappy and lz4 off against a broker whose Produce range does
/// not start at 0; the records inside must still be magic v2 batches.
fn decode_legacy_produce(frame: &mut Bytes) -> Result<RequestKind, String> {
    let mut body = bytes::BytesMut::with_capacity(frame.len() + 2);
    body.extend_from_slice(&(-1i16).to_be_bytes());
    body.extend_from_slice(frame);
    let mut body = body.freeze();
    RequestKind::decode(ApiKey::Produce, &mut body, 3)
        .map_err(|e| format!("bad legacy Produce request: {e}"))
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::messages::MetadataRequest;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    use proptest::prelude::*;

    use super::*;

    fn metadata_frame(version: i16) -> BytesMut {
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Metadata as i16)
            .with_request_api_version(version)
            .with_correlation_id(42)
            .with_client_id(Some(StrBytes::from_static_str("t")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, ApiKey::Metadata.request_header_version(version))
            .unwrap();
        MetadataRequest::default()
            .encode(&mut buf, version)
            .unwrap();
        buf
    }

    #[test]
    fn a_valid_frame_decodes() {
        for version in 0..=13 {
            let (header, request) = decode_frame(metadata_frame(version).freeze()).unwrap();
            assert_eq!(header.correlation_id, 42);
            assert!(matches!(request, RequestKind::Metadata(_)), "v{version}");
        }
    }

    proptest! {
        /// Goal: no byte string makes the decoder panic. Method: arbitrary
        /// bytes, and valid frames with one byte changed or truncated.
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_frame(Bytes::from(data));
        }

        #[test]
        fn damaged_frames_never_panic(version in 0i16..=13, at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<bool>()) {
            let mut frame = metadata_frame(version);
            let i = at.index(frame.len());
            if cut {
                frame.truncate(i);
            } else {
                frame[i] = byte;
            }
            let _ = decode_frame(frame.freeze());
        }
    }
}
