//! Chunk rows and the dead objects they leave.

use rusqlite::{Connection, params};

use super::WriteContext;
use crate::Result;
use crate::store::rows::ChunkRows;

impl ChunkRows for WriteContext<'_> {
    async fn bury_unreferenced(&mut self, object_keys: &[String]) -> Result<()> {
        bury_unreferenced(self.connection, object_keys, self.now_ms)
    }
}

/// Makes every object of `object_keys` that no chunk references dead
/// since `now_ms` (an object already dead keeps its time).
pub(in crate::store::sqlite) fn bury_unreferenced(
    connection: &Connection,
    object_keys: &[String],
    now_ms: i64,
) -> Result<()> {
    let mut insert = connection.prepare_cached(
        "INSERT OR IGNORE INTO dead_objects (object_key, dead_since_ms)
         SELECT ?1, ?2 WHERE NOT EXISTS (SELECT 1 FROM chunks WHERE object_key = ?1)",
    )?;
    // Marker chunks have no object.
    for key in object_keys.iter().filter(|key| !key.is_empty()) {
        insert.execute(params![key, now_ms])?;
    }
    Ok(())
}
