//! SCRAM credentials (KIP-554): describe, alter, and the lookup agents
//! make when a client authenticates.

use std::collections::HashSet;

use strata_catalog_api::error_code;
use strata_catalog_api::proto::{
    AlterScramCredentialsRequest, AlterScramCredentialsResponse, AlterScramResult,
    DescribeScramCredentialsRequest, DescribeScramCredentialsResponse, DescribedScramUser,
    GetScramCredentialRequest, GetScramCredentialResponse, ScramCredential, ScramCredentialInfo,
};
use tonic::{Request, Response, Status};

use super::CatalogService;
use crate::Error;

/// Fewest and most PBKDF2 iterations (Kafka's bounds).
const ITERATIONS: std::ops::RangeInclusive<i32> = 4096..=16384;
/// Most changes one AlterScramCredentials may carry.
const CHANGES_MAX: usize = 1000;
/// Most users one DescribeScramCredentials may name.
const USERS_MAX: usize = 1000;
/// Longest user name, in bytes.
const USER_BYTES_MAX: usize = 1024;

/// SHA-256 and SHA-512 output sizes by Kafka mechanism type.
fn key_bytes(mechanism: i32) -> Option<usize> {
    match mechanism {
        1 => Some(32),
        2 => Some(64),
        _ => None,
    }
}

#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn describe(
    service: &CatalogService,
    request: Request<DescribeScramCredentialsRequest>,
) -> Result<Response<DescribeScramCredentialsResponse>, Status> {
    let users = request.into_inner().users;
    if users.len() > USERS_MAX {
        return Err(Error::InvalidArgument {
            field: "users",
            reason: format!("at most {USERS_MAX} users per request"),
        }
        .into());
    }
    let stored = service.store.scram_credentials(users.clone()).await?;
    let mut described: Vec<DescribedScramUser> = Vec::new();
    for credential in &stored {
        if described.last().is_none_or(|u| u.user != credential.user) {
            described.push(DescribedScramUser {
                user: credential.user.clone(),
                ..Default::default()
            });
        }
        let last = described.last_mut().expect("pushed above");
        last.credentials.push(ScramCredentialInfo {
            mechanism: credential.mechanism,
            iterations: credential.iterations,
        });
    }
    if !users.is_empty() {
        // As Kafka: one result per user named, in the order named.
        let mut seen = HashSet::new();
        let mut ordered = Vec::with_capacity(users.len());
        for user in &users {
            if !seen.insert(user) {
                ordered.push(error_user(
                    user,
                    error_code::DUPLICATE_RESOURCE,
                    "named twice",
                ));
                continue;
            }
            match described.iter().find(|u| &u.user == user) {
                Some(found) => ordered.push(found.clone()),
                None => ordered.push(error_user(
                    user,
                    error_code::RESOURCE_NOT_FOUND,
                    "no SCRAM credentials for this user",
                )),
            }
        }
        described = ordered;
    }
    Ok(Response::new(DescribeScramCredentialsResponse {
        users: described,
    }))
}

fn error_user(user: &str, code: i16, message: &str) -> DescribedScramUser {
    DescribedScramUser {
        user: user.to_string(),
        error_code: i32::from(code),
        error_message: message.to_string(),
        credentials: Vec::new(),
    }
}

#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn alter(
    service: &CatalogService,
    request: Request<AlterScramCredentialsRequest>,
) -> Result<Response<AlterScramCredentialsResponse>, Status> {
    let mut change = request.into_inner();
    if change.deletions.len() + change.upsertions.len() > CHANGES_MAX {
        return Err(Error::InvalidArgument {
            field: "deletions/upsertions",
            reason: format!("at most {CHANGES_MAX} changes per request"),
        }
        .into());
    }
    let refused = check(&change);
    change
        .deletions
        .retain(|d| !refused.iter().any(|r| r.user == d.user));
    change
        .upsertions
        .retain(|u| !refused.iter().any(|r| r.user == u.user));
    let mut results = refused;
    if !change.deletions.is_empty() || !change.upsertions.is_empty() {
        results.extend(service.store.alter_scram_credentials(change).await?);
    }
    Ok(Response::new(AlterScramCredentialsResponse { results }))
}

/// One result per user with an invalid change (none of its changes apply).
fn check(change: &AlterScramCredentialsRequest) -> Vec<AlterScramResult> {
    let mut refused: Vec<AlterScramResult> = Vec::new();
    let mut refuse = |user: &str, code: i16, message: String| {
        if !refused.iter().any(|r| r.user == user) {
            refused.push(AlterScramResult {
                user: user.to_string(),
                error_code: i32::from(code),
                error_message: message,
            });
        }
    };
    let mut seen = HashSet::new();
    let named = change
        .deletions
        .iter()
        .map(|d| (&d.user, d.mechanism))
        .chain(change.upsertions.iter().map(|u| (&u.user, u.mechanism)));
    for (user, mechanism) in named {
        if user.is_empty() || user.len() > USER_BYTES_MAX {
            refuse(
                user,
                error_code::UNACCEPTABLE_CREDENTIAL,
                format!("user names are 1 to {USER_BYTES_MAX} bytes"),
            );
        }
        if key_bytes(mechanism).is_none() {
            refuse(
                user,
                error_code::UNSUPPORTED_SASL_MECHANISM,
                format!(
                    "unknown SCRAM mechanism {mechanism}: use 1 (SCRAM-SHA-256) or 2 (SCRAM-SHA-512)"
                ),
            );
        }
        if !seen.insert((user, mechanism)) {
            refuse(
                user,
                error_code::DUPLICATE_RESOURCE,
                "a user's mechanism may appear only once per request".to_string(),
            );
        }
    }
    for upsertion in &change.upsertions {
        if let Some(reason) = unacceptable(upsertion) {
            refuse(&upsertion.user, error_code::UNACCEPTABLE_CREDENTIAL, reason);
        }
    }
    refused
}

fn unacceptable(credential: &ScramCredential) -> Option<String> {
    if !ITERATIONS.contains(&credential.iterations) {
        return Some(format!(
            "iterations must be between {} and {}, not {}",
            ITERATIONS.start(),
            ITERATIONS.end(),
            credential.iterations
        ));
    }
    let bytes = key_bytes(credential.mechanism)?;
    if credential.stored_key.len() != bytes || credential.server_key.len() != bytes {
        return Some(format!("stored and server keys must be {bytes} bytes"));
    }
    if credential.salt.is_empty() || credential.salt.len() > 1024 {
        return Some("the salt must be 1 to 1024 bytes".to_string());
    }
    None
}

#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn get(
    service: &CatalogService,
    request: Request<GetScramCredentialRequest>,
) -> Result<Response<GetScramCredentialResponse>, Status> {
    let request = request.into_inner();
    let credential = service
        .store
        .scram_credentials(vec![request.user])
        .await?
        .into_iter()
        .find(|c| c.mechanism == request.mechanism);
    Ok(Response::new(GetScramCredentialResponse { credential }))
}
