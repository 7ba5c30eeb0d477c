//! The catalog lease: take, renew or release it (see
//! `CatalogStore::claim_lease`), and the fencing check of every write.

use crate::store::lease_rules::{self, LeaseDecision};
use crate::store::rows::LeaseRows;
use crate::store::{LeaseClaim, LeaseFence, LeaseStatus};
use crate::{Error, Result};

/// Applies `claim` to the lease row.
pub(crate) async fn claim<R: LeaseRows>(rows: &mut R, claim: &LeaseClaim) -> Result<LeaseStatus> {
    let now_ms = rows.now_ms();
    let current = rows.read_lease().await?;
    let lease = match lease_rules::decide(current.as_ref(), claim, now_ms) {
        LeaseDecision::Write(lease) => {
            rows.write_lease(&lease).await?;
            Some(lease)
        }
        LeaseDecision::Keep => current,
    };
    Ok(LeaseStatus {
        held: !claim.release && lease_rules::holds(lease.as_ref(), claim, now_ms),
        lease,
    })
}

/// The fencing check: `fence` is the term this store writes under, `found`
/// the database's term (0 when nobody ever held the lease).
pub(crate) fn check(fence: u64, found: u64) -> Result<()> {
    if fence == LeaseFence::UNFENCED || fence == found {
        Ok(())
    } else {
        Err(Error::NotActive {
            held: fence,
            current: found,
        })
    }
}
