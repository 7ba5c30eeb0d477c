//! The catalog lease row (`catalog_lease`, one row with id 1).

use super::WriteContext;
use crate::Result;
use crate::store::CatalogLease;
use crate::store::ops;
use crate::store::postgres::{to_bigint, to_u64};
use crate::store::rows::LeaseRows;

impl LeaseRows for WriteContext<'_, '_> {
    async fn read_lease(&mut self) -> Result<Option<CatalogLease>> {
        let row = self
            .query_opt(
                "SELECT holder, address, term, expires_ms FROM catalog_lease WHERE id = 1
                 FOR UPDATE",
                &[],
            )
            .await?;
        row.map(|row| {
            Ok(CatalogLease {
                holder: row.try_get(0)?,
                address: row.try_get(1)?,
                term: to_u64("lease term", row.try_get(2)?)?,
                expires_ms: row.try_get(3)?,
            })
        })
        .transpose()
    }

    async fn write_lease(&mut self, lease: &CatalogLease) -> Result<()> {
        let term = to_bigint("lease term", lease.term)?;
        self.execute(
            "INSERT INTO catalog_lease (id, holder, address, term, expires_ms)
             VALUES (1, $1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET holder = excluded.holder,
                 address = excluded.address, term = excluded.term,
                 expires_ms = excluded.expires_ms",
            &[&lease.holder, &lease.address, &term, &lease.expires_ms],
        )
        .await?;
        self.lease_term = lease.term;
        Ok(())
    }

    fn check_term(&self) -> Result<()> {
        ops::lease::check(self.fence, self.lease_term)
    }
}
