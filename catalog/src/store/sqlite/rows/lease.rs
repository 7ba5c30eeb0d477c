//! The catalog lease row (`catalog_lease`, one row with id 1).

use rusqlite::{Connection, OptionalExtension, params};

use super::WriteContext;
use crate::store::CatalogLease;
use crate::store::ops;
use crate::store::rows::LeaseRows;
use crate::{Error, Result};

impl LeaseRows for WriteContext<'_> {
    async fn read_lease(&mut self) -> Result<Option<CatalogLease>> {
        let row: Option<(String, String, i64, i64)> = self
            .connection
            .prepare_cached(
                "SELECT holder, address, term, expires_ms FROM catalog_lease WHERE id = 1",
            )?
            .query_row([], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .optional()?;
        row.map(|(holder, address, term, expires_ms)| {
            Ok(CatalogLease {
                holder,
                address,
                term: to_term(term)?,
                expires_ms,
            })
        })
        .transpose()
    }

    async fn write_lease(&mut self, lease: &CatalogLease) -> Result<()> {
        let term = i64::try_from(lease.term).map_err(|_| Error::Corrupt {
            what: format!("lease term {}", lease.term),
        })?;
        self.connection
            .prepare_cached(
                "INSERT INTO catalog_lease (id, holder, address, term, expires_ms)
                 VALUES (1, ?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET holder = excluded.holder,
                     address = excluded.address, term = excluded.term,
                     expires_ms = excluded.expires_ms",
            )?
            .execute(params![lease.holder, lease.address, term, lease.expires_ms])?;
        self.lease_term = lease.term;
        Ok(())
    }

    fn check_term(&self) -> Result<()> {
        ops::lease::check(self.fence, self.lease_term)
    }
}

/// The lease term in the database; 0 when nobody ever held the lease.
pub(in crate::store::sqlite) fn read_term(connection: &Connection) -> rusqlite::Result<u64> {
    let term: Option<i64> = connection
        .prepare_cached("SELECT term FROM catalog_lease WHERE id = 1")?
        .query_row([], |row| row.get(0))
        .optional()?;
    Ok(term.and_then(|term| u64::try_from(term).ok()).unwrap_or(0))
}

fn to_term(value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| Error::Corrupt {
        what: format!("lease term {value}"),
    })
}
