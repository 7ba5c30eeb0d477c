//! ApiVersions: the versions this agent implements.

use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, ResponseKind};

use super::{Pending, SUPPORTED};
use crate::error_code;

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .copied()
        .chain(super::group::group_apis())
        .map(|(key, min, max)| {
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect()
}

/// Kafka's feature flag for the transaction protocol: level 2 is KIP-890
/// part 2 (EndTxn v5 bumps the epoch per transaction, Produce v12+ and
/// TxnOffsetCommit v5 add partitions and groups implicitly).
pub(crate) const TRANSACTION_VERSION_FEATURE: &str = "transaction.version";

/// The `transaction.version` level this agent finalizes.
pub(crate) const TRANSACTION_VERSION: i16 = 2;

/// The epoch of the finalized features: they never change at run time,
/// and clients keep the answer with the greatest epoch (-1 = none).
const FINALIZED_FEATURES_EPOCH: i64 = 1;

/// Answers a supported ApiVersions request. v3+ carries the features:
/// `transaction.version` 2 is supported and finalized, so clients that
/// know KIP-890 part 2 use it; older clients ignore it.
pub(crate) fn handle(_version: i16, _request: ApiVersionsRequest) -> ApiVersionsResponse {
    let name = kafka_protocol::protocol::StrBytes::from_static_str(TRANSACTION_VERSION_FEATURE);
    ApiVersionsResponse::default()
        .with_error_code(error_code::NONE)
        .with_api_keys(api_keys())
        .with_supported_features(vec![
            SupportedFeatureKey::default()
                .with_name(name.clone())
                .with_min_version(0)
                .with_max_version(TRANSACTION_VERSION),
        ])
        .with_finalized_features_epoch(FINALIZED_FEATURES_EPOCH)
        .with_finalized_features(vec![
            FinalizedFeatureKey::default()
                .with_name(name)
                .with_min_version_level(TRANSACTION_VERSION)
                .with_max_version_level(TRANSACTION_VERSION),
        ])
}

/// The answer to an ApiVersions request in a version this agent does not
/// know: a v0 response with UNSUPPORTED_VERSION and the supported ranges.
pub(crate) fn unsupported(correlation_id: i32) -> Pending {
    let response = ApiVersionsResponse::default()
        .with_error_code(error_code::UNSUPPORTED_VERSION)
        .with_api_keys(api_keys());
    let frame = super::encode(
        ApiKey::ApiVersions,
        0,
        correlation_id,
        &ResponseKind::ApiVersions(response),
    );
    Box::pin(async move { frame })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_advertised_range_is_decodable_by_the_codec() {
        // Goal: never advertise a version the codec cannot decode.
        for (key, min, max) in SUPPORTED
            .iter()
            .copied()
            .chain(super::super::group::group_apis())
        {
            let mut range = key.valid_versions();
            if key == ApiKey::Produce {
                // v0-v2 are decoded through v3 (frame::decode_legacy_produce).
                range.min = 0;
            }
            assert!(
                min >= range.min && max <= range.max,
                "{key:?} {min}..={max} vs {range:?}"
            );
        }
    }

    #[tokio::test]
    async fn unsupported_answer_is_v0_with_error_35() {
        let super::super::Reply::Frame(frame) = unsupported(7).await else {
            panic!("no frame")
        };
        // size(4) correlation(4) error_code(2)
        assert_eq!(&frame[4..8], &7i32.to_be_bytes());
        assert_eq!(&frame[8..10], &35i16.to_be_bytes());
    }
}
