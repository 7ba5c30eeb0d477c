//! The catalog lease's rules: who gets the lease, under which term.

use crate::store::{CatalogLease, LeaseClaim};

/// What a claim does to the lease row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LeaseDecision {
    /// Store this lease.
    Write(CatalogLease),
    /// Leave the row as it is (someone else holds a live lease, or a
    /// release by a catalog that does not hold it).
    Keep,
}

/// Decides a claim against the `current` lease at `now_ms`.
pub(crate) fn decide(
    current: Option<&CatalogLease>,
    claim: &LeaseClaim,
    now_ms: i64,
) -> LeaseDecision {
    let mine = current.is_some_and(|lease| lease.holder == claim.holder);
    if claim.release {
        return match current {
            Some(lease) if mine => LeaseDecision::Write(CatalogLease {
                expires_ms: now_ms.min(lease.expires_ms),
                ..lease.clone()
            }),
            _ => LeaseDecision::Keep,
        };
    }
    let term = match current {
        None => 1,
        Some(lease) if mine => lease.term,
        Some(lease) if lease.expires_ms <= now_ms => lease.term + 1,
        Some(_) => return LeaseDecision::Keep,
    };
    LeaseDecision::Write(CatalogLease {
        holder: claim.holder.clone(),
        address: claim.address.clone(),
        term,
        expires_ms: now_ms.saturating_add(claim.lease_ms.max(1)),
    })
}

/// Whether `claim`'s catalog holds `lease` at `now_ms`.
pub(crate) fn holds(lease: Option<&CatalogLease>, claim: &LeaseClaim, now_ms: i64) -> bool {
    lease.is_some_and(|lease| lease.holder == claim.holder && lease.expires_ms > now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(holder: &str) -> LeaseClaim {
        LeaseClaim {
            holder: holder.to_string(),
            address: format!("http://{holder}"),
            lease_ms: 100,
            release: false,
        }
    }

    fn lease(holder: &str, term: u64, expires_ms: i64) -> CatalogLease {
        CatalogLease {
            holder: holder.to_string(),
            address: format!("http://{holder}"),
            term,
            expires_ms,
        }
    }

    #[test]
    fn first_claim_renewal_takeover_and_release() {
        assert_eq!(
            decide(None, &claim("a"), 10),
            LeaseDecision::Write(lease("a", 1, 110))
        );
        let held = lease("a", 1, 110);
        assert_eq!(
            decide(Some(&held), &claim("a"), 50),
            LeaseDecision::Write(lease("a", 1, 150))
        );
        assert_eq!(decide(Some(&held), &claim("b"), 109), LeaseDecision::Keep);
        assert_eq!(
            decide(Some(&held), &claim("b"), 110),
            LeaseDecision::Write(lease("b", 2, 210))
        );
        let release = LeaseClaim {
            release: true,
            ..claim("a")
        };
        assert_eq!(
            decide(Some(&held), &release, 50),
            LeaseDecision::Write(lease("a", 1, 50))
        );
        assert_eq!(
            decide(Some(&lease("b", 2, 210)), &release, 50),
            LeaseDecision::Keep
        );
        assert!(holds(Some(&held), &claim("a"), 109));
        assert!(!holds(Some(&held), &claim("a"), 110));
        assert!(!holds(Some(&held), &claim("b"), 50));
    }
}
