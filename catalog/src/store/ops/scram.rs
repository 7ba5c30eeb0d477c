//! SCRAM credentials (KIP-554): per-user all-or-nothing changes.

use strata_catalog_api::error_code;
use strata_catalog_api::proto::{AlterScramCredentialsRequest, AlterScramResult};

use crate::Result;
use crate::store::rows::ScramRows;

/// Applies `change` (see `CatalogStore::alter_scram_credentials`).
pub(crate) async fn alter<R: ScramRows>(
    rows: &mut R,
    change: &AlterScramCredentialsRequest,
) -> Result<Vec<AlterScramResult>> {
    let mut users: Vec<&str> = Vec::new();
    for user in change
        .deletions
        .iter()
        .map(|d| d.user.as_str())
        .chain(change.upsertions.iter().map(|u| u.user.as_str()))
    {
        if !users.contains(&user) {
            users.push(user);
        }
    }
    let mut results = Vec::with_capacity(users.len());
    for user in users {
        let deletions = change.deletions.iter().filter(|d| d.user == user);
        let mut missing = None;
        for deletion in deletions.clone() {
            if !rows.scram_exists(user, deletion.mechanism).await? {
                missing = Some(deletion.mechanism);
                break;
            }
        }
        if let Some(mechanism) = missing {
            results.push(AlterScramResult {
                user: user.to_string(),
                error_code: i32::from(error_code::RESOURCE_NOT_FOUND),
                error_message: format!(
                    "user `{user}` has no credential of mechanism {mechanism} to delete"
                ),
            });
            continue;
        }
        for deletion in deletions {
            rows.delete_scram(user, deletion.mechanism).await?;
        }
        for upsertion in change.upsertions.iter().filter(|u| u.user == user) {
            rows.upsert_scram(upsertion).await?;
        }
        results.push(AlterScramResult {
            user: user.to_string(),
            error_code: 0,
            error_message: String::new(),
        });
    }
    Ok(results)
}
