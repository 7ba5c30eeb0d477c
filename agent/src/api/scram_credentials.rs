//! DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554):
//! forwarded to the catalog, which stores the credentials. Upsertions
//! carry a salted password (the client salts and iterates); the agent turns
//! it into StoredKey and ServerKey, so the salted password itself is never
//! stored.

use std::collections::HashSet;
use std::sync::Arc;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use strata_catalog_api::proto::{
    AlterScramCredentialsRequest, DescribeScramCredentialsRequest,
    ScramCredential as ProtoCredential, ScramDeletion,
};
use tracing::warn;

use super::str_bytes;
use crate::error_code;
use crate::security::scram::{ITERATIONS_MAX, ITERATIONS_MIN, ScramCredential, ScramMechanism};
use crate::server::Shared;

/// Answers DescribeUserScramCredentials from the catalog.
pub(crate) async fn describe(
    shared: &Arc<Shared>,
    request: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let users: Vec<String> = request
        .users
        .unwrap_or_default()
        .iter()
        .map(|u| u.name.to_string())
        .collect();
    let answer = shared
        .catalog
        .describe_scram_credentials(DescribeScramCredentialsRequest { users })
        .await;
    match answer {
        Ok(answer) => DescribeUserScramCredentialsResponse::default().with_results(
            answer
                .users
                .into_iter()
                .map(|u| {
                    DescribeUserScramCredentialsResult::default()
                        .with_user(str_bytes(&u.user))
                        .with_error_code(u.error_code as i16)
                        .with_error_message(
                            (!u.error_message.is_empty()).then(|| str_bytes(&u.error_message)),
                        )
                        .with_credential_infos(
                            u.credentials
                                .iter()
                                .map(|c| {
                                    CredentialInfo::default()
                                        .with_mechanism(c.mechanism as i8)
                                        .with_iterations(c.iterations)
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
        Err(status) => {
            warn!(%status, "catalog unavailable for DescribeUserScramCredentials");
            DescribeUserScramCredentialsResponse::default()
                .with_error_code(error_code::COORDINATOR_NOT_AVAILABLE)
                .with_error_message(Some(str_bytes("the catalog is unavailable; retry")))
        }
    }
}

/// Answers AlterUserScramCredentials: checks each change, then forwards
/// the valid ones to the catalog.
pub(crate) async fn alter(
    shared: &Arc<Shared>,
    request: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let mut refused: Vec<(String, i16, String)> = Vec::new();
    let mut forward = AlterScramCredentialsRequest::default();
    // As Kafka: a user named twice for one mechanism is refused.
    let mut seen = HashSet::new();
    let mut duplicated = HashSet::new();
    for (user, mechanism) in request
        .deletions
        .iter()
        .map(|d| (d.name.to_string(), d.mechanism))
        .chain(
            request
                .upsertions
                .iter()
                .map(|u| (u.name.to_string(), u.mechanism)),
        )
    {
        if !seen.insert((user.clone(), mechanism)) {
            duplicated.insert(user);
        }
    }
    for user in &duplicated {
        refused.push((
            user.clone(),
            error_code::DUPLICATE_RESOURCE,
            "a user's mechanism may appear only once per request".to_string(),
        ));
    }
    for deletion in &request.deletions {
        let user = deletion.name.to_string();
        if duplicated.contains(&user) || refused.iter().any(|r| r.0 == user) {
            continue;
        }
        match check_mechanism(&user, deletion.mechanism) {
            Ok(mechanism) => forward.deletions.push(ScramDeletion {
                user,
                mechanism: i32::from(mechanism.kafka_type()),
            }),
            Err(r) => refused.push(r),
        }
    }
    for upsertion in &request.upsertions {
        let user = upsertion.name.to_string();
        if duplicated.contains(&user) || refused.iter().any(|r| r.0 == user) {
            continue;
        }
        match check_upsertion(&user, upsertion) {
            Ok(credential) => forward.upsertions.push(credential),
            Err(r) => refused.push(r),
        }
    }
    // A user with any refused change gets none of its changes applied.
    forward
        .deletions
        .retain(|d| !refused.iter().any(|r| r.0 == d.user));
    forward
        .upsertions
        .retain(|u| !refused.iter().any(|r| r.0 == u.user));
    let mut results: Vec<AlterUserScramCredentialsResult> = refused
        .into_iter()
        .map(|(user, code, message)| result(&user, code, &message))
        .collect();
    if forward.deletions.is_empty() && forward.upsertions.is_empty() {
        return AlterUserScramCredentialsResponse::default().with_results(results);
    }
    let users: Vec<String> = forward
        .deletions
        .iter()
        .map(|d| d.user.clone())
        .chain(forward.upsertions.iter().map(|u| u.user.clone()))
        .collect();
    match shared.catalog.alter_scram_credentials(forward).await {
        Ok(answer) => results.extend(
            answer
                .results
                .iter()
                .map(|r| result(&r.user, r.error_code as i16, &r.error_message)),
        ),
        Err(status) => {
            warn!(%status, "catalog unavailable for AlterUserScramCredentials");
            let mut unique: Vec<&String> = users.iter().collect();
            unique.sort();
            unique.dedup();
            results.extend(unique.into_iter().map(|user| {
                result(
                    user,
                    error_code::COORDINATOR_NOT_AVAILABLE,
                    "the catalog is unavailable; retry",
                )
            }));
        }
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}

fn result(user: &str, code: i16, message: &str) -> AlterUserScramCredentialsResult {
    AlterUserScramCredentialsResult::default()
        .with_user(str_bytes(user))
        .with_error_code(code)
        .with_error_message((!message.is_empty()).then(|| str_bytes(message)))
}

fn check_mechanism(user: &str, mechanism: i8) -> Result<ScramMechanism, (String, i16, String)> {
    ScramMechanism::from_kafka_type(mechanism).ok_or_else(|| {
        (
            user.to_string(),
            error_code::UNSUPPORTED_SASL_MECHANISM,
            format!(
                "unknown SCRAM mechanism {mechanism}: use 1 (SCRAM-SHA-256) or 2 (SCRAM-SHA-512)"
            ),
        )
    })
}

fn check_upsertion(
    user: &str,
    upsertion: &kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion,
) -> Result<ProtoCredential, (String, i16, String)> {
    let mechanism = check_mechanism(user, upsertion.mechanism)?;
    let unacceptable = |message: String| {
        (
            user.to_string(),
            error_code::UNACCEPTABLE_CREDENTIAL,
            message,
        )
    };
    if user.is_empty() {
        return Err(unacceptable("the user name is empty".to_string()));
    }
    let iterations = u32::try_from(upsertion.iterations).unwrap_or(0);
    if !(ITERATIONS_MIN..=ITERATIONS_MAX).contains(&iterations) {
        return Err(unacceptable(format!(
            "iterations must be between {ITERATIONS_MIN} and {ITERATIONS_MAX}, not {}",
            upsertion.iterations
        )));
    }
    if upsertion.salt.is_empty() || upsertion.salted_password.is_empty() {
        return Err(unacceptable(
            "the salt and the salted password must not be empty".to_string(),
        ));
    }
    let credential = ScramCredential::from_salted_password(
        mechanism,
        &upsertion.salted_password,
        &upsertion.salt,
        iterations,
    );
    Ok(to_proto(user, &credential))
}

/// The catalog's form of a credential.
pub(crate) fn to_proto(user: &str, credential: &ScramCredential) -> ProtoCredential {
    ProtoCredential {
        user: user.to_string(),
        mechanism: i32::from(credential.mechanism.kafka_type()),
        salt: credential.salt.clone(),
        stored_key: credential.stored_key.clone(),
        server_key: credential.server_key.clone(),
        iterations: credential.iterations as i32,
    }
}
