//! SCRAM credentials: upsert, replace, delete, all-or-nothing per user.

use strata_catalog_api::proto::{AlterScramCredentialsRequest, ScramCredential, ScramDeletion};

use crate::error_code::RESOURCE_NOT_FOUND;
use crate::store::CatalogStore;

fn credential(user: &str, mechanism: i32, iterations: i32) -> ScramCredential {
    let bytes = if mechanism == 1 { 32 } else { 64 };
    ScramCredential {
        user: user.to_string(),
        mechanism,
        salt: vec![7; 16],
        stored_key: vec![1; bytes],
        server_key: vec![2; bytes],
        iterations,
    }
}

/// Goal: credentials round-trip, an upsert replaces, a deletion of a
/// missing credential fails its user's whole change and nothing else.
pub async fn scram_credentials(store: &dyn CatalogStore) {
    let alice = "conformance-scram-alice";
    let bob = "conformance-scram-bob";
    let results = store
        .alter_scram_credentials(AlterScramCredentialsRequest {
            deletions: vec![],
            upsertions: vec![
                credential(alice, 1, 4096),
                credential(alice, 2, 4096),
                credential(bob, 2, 8192),
            ],
        })
        .await
        .expect("upsert");
    assert_eq!(results.len(), 2, "one result per user: {results:?}");
    assert!(results.iter().all(|r| r.error_code == 0), "{results:?}");
    let stored = store
        .scram_credentials(vec![alice.to_string()])
        .await
        .expect("read");
    assert_eq!(
        stored,
        vec![credential(alice, 1, 4096), credential(alice, 2, 4096)]
    );

    // Replace alice's SHA-512 credential; bob's deletion of a SHA-256
    // credential he does not have fails, and his upsert with it.
    let results = store
        .alter_scram_credentials(AlterScramCredentialsRequest {
            deletions: vec![ScramDeletion {
                user: bob.to_string(),
                mechanism: 1,
            }],
            upsertions: vec![credential(alice, 2, 10000), credential(bob, 2, 16384)],
        })
        .await
        .expect("alter");
    let bob_result = results
        .iter()
        .find(|r| r.user == bob)
        .expect("bob's result");
    assert_eq!(bob_result.error_code, i32::from(RESOURCE_NOT_FOUND));
    let alice_result = results
        .iter()
        .find(|r| r.user == alice)
        .expect("alice's result");
    assert_eq!(alice_result.error_code, 0);
    let all = store.scram_credentials(vec![]).await.expect("read all");
    assert!(all.contains(&credential(alice, 2, 10000)));
    assert!(
        all.contains(&credential(bob, 2, 8192)),
        "bob unchanged: {all:?}"
    );

    let results = store
        .alter_scram_credentials(AlterScramCredentialsRequest {
            deletions: vec![
                ScramDeletion {
                    user: alice.to_string(),
                    mechanism: 1,
                },
                ScramDeletion {
                    user: alice.to_string(),
                    mechanism: 2,
                },
                ScramDeletion {
                    user: bob.to_string(),
                    mechanism: 2,
                },
            ],
            upsertions: vec![],
        })
        .await
        .expect("delete");
    assert!(results.iter().all(|r| r.error_code == 0), "{results:?}");
    let left = store
        .scram_credentials(vec![alice.to_string(), bob.to_string()])
        .await
        .expect("read");
    assert!(left.is_empty(), "{left:?}");
}
