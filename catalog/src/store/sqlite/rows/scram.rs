//! SCRAM credential rows.

use rusqlite::{Connection, params};
use strata_catalog_api::proto::ScramCredential;

use super::WriteContext;
use crate::Result;
use crate::store::rows::ScramRows;

impl ScramRows for WriteContext<'_> {
    async fn scram_exists(&mut self, user: &str, mechanism: i32) -> Result<bool> {
        Ok(self
            .connection
            .prepare_cached(
                "SELECT 1 FROM scram_credentials WHERE user_name = ?1 AND mechanism = ?2",
            )?
            .exists(params![user, mechanism])?)
    }

    async fn delete_scram(&mut self, user: &str, mechanism: i32) -> Result<()> {
        self.connection
            .prepare_cached(
                "DELETE FROM scram_credentials WHERE user_name = ?1 AND mechanism = ?2",
            )?
            .execute(params![user, mechanism])?;
        Ok(())
    }

    async fn upsert_scram(&mut self, c: &ScramCredential) -> Result<()> {
        self.connection
            .prepare_cached(
                "INSERT INTO scram_credentials
                     (user_name, mechanism, salt, stored_key, server_key, iterations)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (user_name, mechanism) DO UPDATE SET salt = excluded.salt,
                     stored_key = excluded.stored_key, server_key = excluded.server_key,
                     iterations = excluded.iterations",
            )?
            .execute(params![
                c.user,
                c.mechanism,
                c.salt,
                c.stored_key,
                c.server_key,
                c.iterations
            ])?;
        Ok(())
    }
}

/// The credentials of `users` (all when empty), by user and mechanism.
pub(in crate::store::sqlite) fn credentials(
    connection: &Connection,
    users: &[String],
) -> Result<Vec<ScramCredential>> {
    let mut statement = connection.prepare_cached(
        "SELECT user_name, mechanism, salt, stored_key, server_key, iterations
         FROM scram_credentials ORDER BY user_name, mechanism",
    )?;
    let rows = statement.query_map([], |row| {
        Ok(ScramCredential {
            user: row.get(0)?,
            mechanism: row.get(1)?,
            salt: row.get(2)?,
            stored_key: row.get(3)?,
            server_key: row.get(4)?,
            iterations: row.get(5)?,
        })
    })?;
    let mut out = Vec::new();
    for row in rows {
        let credential = row?;
        if users.is_empty() || users.contains(&credential.user) {
            out.push(credential);
        }
    }
    Ok(out)
}
