//! The catalog lease (high availability): one active catalog, takeover
//! after expiry, and term fencing of every write.

use crate::Error;
use crate::conformance::{
    ManualClock, chunk_write, commit, commit_request, create_topic, plain_batch,
};
use crate::store::{CatalogStore, LeaseClaim};

fn claim(holder: &str, lease_ms: i64) -> LeaseClaim {
    LeaseClaim {
        holder: holder.to_string(),
        address: format!("http://{holder}:9093"),
        lease_ms,
        release: false,
    }
}

fn is_not_active<T: std::fmt::Debug>(result: &crate::Result<T>) -> bool {
    matches!(result, Err(Error::NotActive { .. }))
}

/// Two catalogs, `a` and `b`, are two stores on ONE database (two
/// processes of a rolling update) sharing `clock`. Checks: the first claim
/// gets term 1 and the second claimant is refused while the lease lives;
/// the holder renews under the same term; after expiry `b` takes over
/// with term 2; from then on every write of `a` (a paused active that
/// resumed) fails with `NotActive` and changes nothing, while `b` writes;
/// `a`'s renewal is refused and names `b`; a release lets `a` take over
/// at once with term 3, and `b` is fenced in turn.
pub async fn lease_fencing(a: &dyn CatalogStore, b: &dyn CatalogStore, clock: &ManualClock) {
    clock.set(1_000);
    let first = a.claim_lease(claim("a", 10_000)).await.expect("claim a");
    assert!(first.held, "{first:?}");
    let lease = first.lease.expect("a lease row");
    assert_eq!((lease.holder.as_str(), lease.term), ("a", 1));
    assert_eq!(lease.expires_ms, 11_000);
    let topic = create_topic(a, "conformance.lease", 1).await;

    let refused = b.claim_lease(claim("b", 10_000)).await.expect("claim b");
    assert!(!refused.held, "{refused:?}");
    let named = refused.lease.expect("the holder's lease");
    assert_eq!(named.holder, "a");
    assert_eq!(named.address, "http://a:9093");
    // A standby that never held the lease writes nothing either.
    assert!(is_not_active(
        &b.commit_segment(commit_request(
            "lease-standby",
            vec![chunk_write(&topic, 0, 0, vec![plain_batch(1, 1)])]
        ))
        .await
    ));

    clock.set(6_000);
    let renewed = a.claim_lease(claim("a", 10_000)).await.expect("renew a");
    assert!(renewed.held);
    let renewed = renewed.lease.expect("lease");
    assert_eq!((renewed.term, renewed.expires_ms), (1, 16_000));
    let before = commit(
        a,
        commit_request(
            "lease-a-1",
            vec![chunk_write(&topic, 0, 0, vec![plain_batch(2, 1)])],
        ),
    )
    .await;
    assert_eq!(before.chunks[0].high_watermark, 2);

    // `a` stops renewing (paused); its lease runs out and `b` takes over.
    clock.set(16_000);
    let taken = b.claim_lease(claim("b", 10_000)).await.expect("takeover");
    assert!(taken.held, "{taken:?}");
    assert_eq!(taken.lease.as_ref().map(|l| l.term), Some(2));

    // `a` resumes and writes under its stale term: refused, nothing stored.
    let sequence_before = b.last_commit_sequence().await.expect("sequence");
    let stale = a
        .commit_segment(commit_request(
            "lease-a-2",
            vec![chunk_write(&topic, 0, 0, vec![plain_batch(3, 1)])],
        ))
        .await;
    assert!(is_not_active(&stale), "{stale:?}");
    assert!(is_not_active(
        &a.create_topic(crate::store::NewTopic {
            topic_id: uuid::Uuid::new_v4(),
            name: "conformance.lease.stale".to_string(),
            partition_count: 1,
            configs: Default::default(),
        })
        .await
    ));
    assert!(is_not_active(
        &a.commit_offsets("lease-group", vec![]).await
    ));
    assert_eq!(
        b.last_commit_sequence().await.expect("sequence"),
        sequence_before
    );

    // The new active writes; offsets continue after the old active's
    // (the high watermark after one more record).
    let after = commit(
        b,
        commit_request(
            "lease-b-1",
            vec![chunk_write(&topic, 0, 0, vec![plain_batch(1, 1)])],
        ),
    )
    .await;
    assert_eq!(after.chunks[0].high_watermark, 3);

    // `a`'s renewal is refused: it learns who is active and steps down.
    let lost = a.claim_lease(claim("a", 10_000)).await.expect("renew a");
    assert!(!lost.held);
    assert_eq!(lost.lease.as_ref().map(|l| l.holder.as_str()), Some("b"));

    // A clean shutdown of `b` releases the lease: `a` takes it at once.
    let released = b
        .claim_lease(LeaseClaim {
            release: true,
            ..claim("b", 10_000)
        })
        .await
        .expect("release");
    assert!(!released.held);
    let back = a.claim_lease(claim("a", 10_000)).await.expect("claim a");
    assert!(back.held, "{back:?}");
    assert_eq!(back.lease.as_ref().map(|l| l.term), Some(3));
    assert!(is_not_active(
        &b.commit_segment(commit_request(
            "lease-b-2",
            vec![chunk_write(&topic, 0, 0, vec![plain_batch(1, 1)])]
        ))
        .await
    ));
    let resumed = commit(
        a,
        commit_request(
            "lease-a-3",
            vec![chunk_write(&topic, 0, 0, vec![plain_batch(1, 1)])],
        ),
    )
    .await;
    assert_eq!(resumed.chunks[0].high_watermark, 4);
}
