//! SCRAM credential rows.

use deadpool_postgres::GenericClient;
use strata_catalog_api::proto::ScramCredential;

use super::WriteContext;
use crate::Result;
use crate::store::rows::ScramRows;

impl ScramRows for WriteContext<'_, '_> {
    async fn scram_exists(&mut self, user: &str, mechanism: i32) -> Result<bool> {
        Ok(self
            .query_opt(
                "SELECT 1 FROM scram_credentials WHERE user_name = $1 AND mechanism = $2",
                &[&user, &mechanism],
            )
            .await?
            .is_some())
    }

    async fn delete_scram(&mut self, user: &str, mechanism: i32) -> Result<()> {
        self.execute(
            "DELETE FROM scram_credentials WHERE user_name = $1 AND mechanism = $2",
            &[&user, &mechanism],
        )
        .await?;
        Ok(())
    }

    async fn upsert_scram(&mut self, c: &ScramCredential) -> Result<()> {
        self.execute(
            "INSERT INTO scram_credentials
                 (user_name, mechanism, salt, stored_key, server_key, iterations)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (user_name, mechanism) DO UPDATE SET salt = excluded.salt,
                 stored_key = excluded.stored_key, server_key = excluded.server_key,
                 iterations = excluded.iterations",
            &[
                &c.user,
                &c.mechanism,
                &c.salt,
                &c.stored_key,
                &c.server_key,
                &c.iterations,
            ],
        )
        .await?;
        Ok(())
    }
}

/// The credentials of `users` (all when empty), by user and mechanism.
pub(in crate::store::postgres) async fn credentials(
    client: &impl GenericClient,
    users: &[String],
) -> Result<Vec<ScramCredential>> {
    let statement = client
        .prepare_cached(
            "SELECT user_name, mechanism, salt, stored_key, server_key, iterations
             FROM scram_credentials
             WHERE cardinality($1::text[]) = 0 OR user_name = ANY($1)
             ORDER BY user_name, mechanism",
        )
        .await?;
    client
        .query(&statement, &[&users])
        .await?
        .iter()
        .map(|row| {
            Ok(ScramCredential {
                user: row.try_get(0)?,
                mechanism: row.try_get(1)?,
                salt: row.try_get(2)?,
                stored_key: row.try_get(3)?,
                server_key: row.try_get(4)?,
                iterations: row.try_get(5)?,
            })
        })
        .collect()
}
