//! Kafka APIs: one module per API, and the dispatch between them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;
use tracing::error;

use crate::security::RequestContext;
use crate::server::Shared;

pub(crate) mod api_versions;
mod configs;
mod delete_records;
mod describe_cluster;
mod fetch;
pub(crate) mod fetch_memory;
mod find_coordinator;
pub(crate) mod group;
mod group_unavailable;
mod list_offsets;
mod metadata;
mod produce;
mod scram_credentials;
pub(crate) use produce::validations_max;
mod producers;
mod topics;
mod transactions;
mod txn_admin;

/// What a connection does once a request is handled.
#[derive(Debug)]
pub(crate) enum Reply {
    /// Send this framed response.
    Frame(Bytes),
    /// Send this framed response, then give its memory back to the fetch
    /// budget.
    Held(Bytes, fetch_memory::FetchGrant),
    /// Send nothing (produce with acks=0).
    Nothing,
    /// Close the connection: the request cannot be answered (as Kafka does
    /// for requests it cannot parse), or the answer could not be built.
    Close,
}

/// A response being prepared.
pub(crate) type Pending = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// The APIs and versions this agent implements, as advertised in
/// ApiVersions. Every version listed here is handled.
pub(crate) const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    // v0-v2 are decoded through v3; see `frame::decode_legacy_produce`.
    (ApiKey::Produce, 0, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::FindCoordinator, 0, 6),
    // Transactions: AddPartitionsToTxn v4+ is batched with `verify_only`
    // (KIP-890 part 1); EndTxn / TxnOffsetCommit v5 are KIP-890 part 2
    // (epoch bump per transaction, implicit adds; `transaction.version` 2
    // in ApiVersions). InitProducerId v6 (KIP-939) is not in the codec.
    (ApiKey::AddPartitionsToTxn, 0, 5),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 5),
    (ApiKey::TxnOffsetCommit, 0, 5),
    // Transaction admin (kafka-transactions.sh list / describe /
    // find-hanging / abort). ListTransactions v2 (an id regex) is not.
    (ApiKey::WriteTxnMarkers, 1, 1),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 1),
    // SASL (answered by the connection's authenticator, see
    // `security::sasl`). After SaslHandshake v0 the tokens travel as raw
    // frames (librdkafka before 2.x asks for v0 support).
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
];

/// Whether `version` of `key` is one this agent implements.
pub(crate) fn is_supported(key: ApiKey, version: i16) -> bool {
    SUPPORTED
        .iter()
        .copied()
        .chain(group::group_apis())
        .any(|(k, min, max)| k == key && (min..=max).contains(&version))
}

/// Starts a decoded request. Work that must happen in arrival order is done
/// before this returns; the returned future finishes the rest.
pub(crate) async fn start(
    shared: &Arc<Shared>,
    context: &RequestContext,
    header: RequestHeader,
    request: RequestKind,
) -> Pending {
    let version = header.request_api_version;
    let correlation_id = header.correlation_id;
    let api_key = match ApiKey::try_from(header.request_api_key) {
        Ok(key) => key,
        Err(()) => return Box::pin(async { Reply::Close }),
    };
    let shared = shared.clone();
    let context = context.clone();
    let response: Pin<Box<dyn Future<Output = Option<ResponseKind>> + Send>> = match request {
        RequestKind::Produce(r) => produce::start(&shared, version, r).await,
        RequestKind::Fetch(r) => {
            return Box::pin(async move {
                let (response, grant) = fetch::handle(&shared, version, r).await;
                match encode(api_key, version, correlation_id, &response.into()) {
                    Reply::Frame(frame) => Reply::Held(frame, grant),
                    other => other,
                }
            });
        }
        other => Box::pin(async move { handle_simple(&shared, &context, version, other).await }),
    };
    Box::pin(async move {
        match response.await {
            Some(response) => encode(api_key, version, correlation_id, &response),
            None => Reply::Nothing,
        }
    })
}

async fn handle_simple(
    shared: &Arc<Shared>,
    context: &RequestContext,
    version: i16,
    request: RequestKind,
) -> Option<ResponseKind> {
    Some(match request {
        RequestKind::ApiVersions(r) => api_versions::handle(version, r).into(),
        RequestKind::Metadata(r) => metadata::handle(shared, context, version, r).await.into(),
        RequestKind::ListOffsets(r) => list_offsets::handle(shared, version, r).await.into(),
        RequestKind::CreateTopics(r) => topics::create(shared, version, r).await.into(),
        RequestKind::DeleteTopics(r) => topics::delete(shared, version, r).await.into(),
        RequestKind::CreatePartitions(r) => topics::create_partitions(shared, r).await.into(),
        RequestKind::DescribeConfigs(r) => configs::describe(shared, version, r).await.into(),
        RequestKind::AlterConfigs(r) => configs::alter(shared, r).await.into(),
        RequestKind::IncrementalAlterConfigs(r) => {
            configs::incremental_alter(shared, r).await.into()
        }
        RequestKind::DescribeCluster(r) => {
            describe_cluster::handle(shared, context, version, r).into()
        }
        RequestKind::InitProducerId(r) => producers::init_producer_id(shared, r).await.into(),
        RequestKind::DescribeProducers(r) => producers::describe(shared, r).await.into(),
        RequestKind::DeleteRecords(r) => delete_records::handle(shared, r).await.into(),
        RequestKind::FindCoordinator(r) => {
            find_coordinator::handle(shared, context, version, r).into()
        }
        RequestKind::DescribeUserScramCredentials(r) => {
            scram_credentials::describe(shared, r).await.into()
        }
        RequestKind::AlterUserScramCredentials(r) => {
            scram_credentials::alter(shared, r).await.into()
        }
        RequestKind::AddPartitionsToTxn(r) => transactions::add_partitions(shared, version, r)
            .await
            .into(),
        RequestKind::AddOffsetsToTxn(r) => {
            transactions::add_offsets(shared, version, r).await.into()
        }
        RequestKind::EndTxn(r) => transactions::end(shared, version, r).await.into(),
        RequestKind::TxnOffsetCommit(r) => {
            transactions::offset_commit(shared, version, r).await.into()
        }
        RequestKind::ListTransactions(r) => txn_admin::list(shared, r).await.into(),
        RequestKind::DescribeTransactions(r) => txn_admin::describe(shared, r).await.into(),
        RequestKind::WriteTxnMarkers(r) => txn_admin::write_markers(shared, r).await.into(),
        // `is_supported` admitted only the APIs above; group APIs never get
        // here (they are forwarded to the catalog undecoded).
        _ => return None,
    })
}

/// Encodes a response frame: size, header, body.
pub(crate) fn encode(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> Reply {
    frame(api_key, version, correlation_id, |buf| match response {
        // Produce responses v2 and v3 are the same on the wire; v0 and v1
        // drop fields (see `legacy_produce_response`).
        ResponseKind::Produce(r) if version < 3 => {
            legacy_produce_response(r, version, buf);
            Ok(())
        }
        _ => response.encode(buf, version),
    })
}

/// Frames a response: size, the response header for `api_key` v`version`,
/// then whatever `body` writes.
pub(crate) fn frame(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: impl FnOnce(&mut BytesMut) -> anyhow::Result<()>,
) -> Reply {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0); // size, patched below
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let result = header
        .encode(&mut buf, api_key.response_header_version(version))
        .and_then(|()| body(&mut buf));
    if let Err(e) = result {
        // A response we built but cannot encode is our bug; dropping the
        // connection is the only honest answer.
        error!(?api_key, version, error = %e, "cannot encode response");
        return Reply::Close;
    }
    // A frame's size is an i32: a response that does not fit (the limits
    // on fetches should make this impossible) closes the connection
    // rather than sending a wrapped, negative size.
    let Ok(size) = i32::try_from(buf.len() - 4) else {
        error!(
            ?api_key,
            version,
            bytes = buf.len(),
            "response too large to frame"
        );
        return Reply::Close;
    };
    buf[0..4].copy_from_slice(&size.to_be_bytes());
    Reply::Frame(buf.freeze())
}

/// A topic name from the protocol as a `&str`.
pub(crate) fn topic_str(name: &kafka_protocol::messages::TopicName) -> &str {
    name.0.as_str()
}

/// Protocol string from a Rust string.
pub(crate) fn str_bytes(s: &str) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(s.to_string())
}

/// Writes a Produce response in v0-v2: responses[name, partitions[index,
/// error_code, base_offset, log_append_time_ms (v2)]], throttle_time_ms (v1+).
fn legacy_produce_response(
    response: &kafka_protocol::messages::ProduceResponse,
    version: i16,
    buf: &mut BytesMut,
) {
    buf.put_i32(response.responses.len() as i32);
    for topic in &response.responses {
        let name = topic.name.0.as_bytes();
        buf.put_i16(name.len() as i16);
        buf.extend_from_slice(name);
        buf.put_i32(topic.partition_responses.len() as i32);
        for p in &topic.partition_responses {
            buf.put_i32(p.index);
            buf.put_i16(p.error_code);
            buf.put_i64(p.base_offset);
            if version >= 2 {
                buf.put_i64(p.log_append_time_ms);
            }
        }
    }
    if version >= 1 {
        buf.put_i32(response.throttle_time_ms);
    }
}
