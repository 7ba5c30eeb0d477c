//! The catalog addresses a [`GrpcCatalog`](crate::GrpcCatalog) follows:
//! several catalogs share one database, one of them active (it holds the
//! lease), the others standbys that answer every call UNAVAILABLE with
//! [`CATALOG_ROLE_HEADER`] `standby` and, when known, the active catalog's
//! address in [`ACTIVE_CATALOG_HEADER`]. A client uses one address at a
//! time and moves on when a call finds no catalog or a standby there.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tonic::{Code, Status};

/// The gRPC header of a standby's answers naming the active catalog's
/// address (absent while no catalog holds the lease).
pub const ACTIVE_CATALOG_HEADER: &str = "strata-active-catalog";
/// The gRPC header of a standby's answers: `standby`. Such a call did
/// nothing, so it can be sent to another catalog at once.
pub const CATALOG_ROLE_HEADER: &str = "strata-catalog-role";

/// One catalog address and its (lazily connected) client `C`.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint<C> {
    pub(crate) address: String,
    pub(crate) client: C,
}

/// The addresses and the one in use.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints<C> {
    endpoints: Arc<[Endpoint<C>]>,
    current: Arc<AtomicUsize>,
}

/// What to do after a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// The call reached a standby (nothing happened): send it to the next
    /// address now.
    RetryNow,
    /// Give the error to the caller (its own retry policy applies; the
    /// next call goes to the next address if this one seemed down).
    Return,
}

impl<C> Endpoints<C> {
    pub(crate) fn new(endpoints: Vec<Endpoint<C>>) -> Self {
        assert!(!endpoints.is_empty(), "at least one catalog address");
        Self {
            endpoints: endpoints.into(),
            current: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// How many addresses there are.
    pub(crate) fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// The address in use, with its index.
    pub(crate) fn pick(&self) -> (usize, &Endpoint<C>) {
        let index = self.current.load(Ordering::Relaxed) % self.endpoints.len();
        (index, &self.endpoints[index])
    }

    /// Notes that a call to `index` failed with `status`: moves on to the
    /// named active catalog (if it is one of ours) or the next address when
    /// the catalog there seems down or is a standby.
    pub(crate) fn failed(&self, index: usize, status: &Status) -> AfterFailure {
        if self.endpoints.len() == 1 {
            return AfterFailure::Return;
        }
        let standby = status
            .metadata()
            .get(CATALOG_ROLE_HEADER)
            .is_some_and(|role| role == "standby");
        let unreachable = matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded);
        if !standby && !unreachable {
            return AfterFailure::Return;
        }
        let named = status
            .metadata()
            .get(ACTIVE_CATALOG_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(|address| self.position(address))
            .filter(|&named| named != index);
        let next = named.unwrap_or((index + 1) % self.endpoints.len());
        // Only the first caller to see `index` fail moves the pointer, so
        // concurrent failures do not skip an address.
        let _ = self
            .current
            .compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed);
        if standby {
            AfterFailure::RetryNow
        } else {
            AfterFailure::Return
        }
    }

    fn position(&self, address: &str) -> Option<usize> {
        let wanted = address.trim_end_matches('/');
        self.endpoints
            .iter()
            .position(|endpoint| endpoint.address.trim_end_matches('/') == wanted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(addresses: &[&str]) -> Endpoints<()> {
        let endpoints = addresses
            .iter()
            .map(|address| Endpoint {
                address: address.to_string(),
                client: (),
            })
            .collect();
        Endpoints::new(endpoints)
    }

    fn standby(active: Option<&str>) -> Status {
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert(CATALOG_ROLE_HEADER, "standby".parse().unwrap());
        if let Some(active) = active {
            metadata.insert(ACTIVE_CATALOG_HEADER, active.parse().unwrap());
        }
        Status::with_metadata(Code::Unavailable, "standby", metadata)
    }

    #[test]
    fn follows_the_active_catalog() {
        let list = endpoints(&["http://a:1", "http://b:1", "http://c:1"]);
        assert_eq!(list.pick().0, 0);
        // A down catalog: the next address, the error goes to the caller.
        assert_eq!(
            list.failed(0, &Status::unavailable("connection refused")),
            AfterFailure::Return
        );
        assert_eq!(list.pick().0, 1);
        // A standby naming the active one: straight there, retry at once.
        assert_eq!(
            list.failed(1, &standby(Some("http://c:1/"))),
            AfterFailure::RetryNow
        );
        assert_eq!(list.pick().0, 2);
        // A stale failure of an address no longer in use moves nothing.
        list.failed(0, &Status::unavailable("late"));
        assert_eq!(list.pick().0, 2);
        // Kafka-level and caller errors never move.
        assert_eq!(
            list.failed(2, &Status::invalid_argument("bad")),
            AfterFailure::Return
        );
        assert_eq!(list.pick().0, 2);
        // A standby that knows no active catalog: the next address.
        assert_eq!(list.failed(2, &standby(None)), AfterFailure::RetryNow);
        assert_eq!(list.pick().0, 0);
    }
}
