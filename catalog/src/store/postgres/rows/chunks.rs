//! Chunk rows and the dead objects they leave.

use deadpool_postgres::GenericClient;

use super::WriteContext;
use crate::Result;
use crate::store::rows::ChunkRows;

impl ChunkRows for WriteContext<'_, '_> {
    async fn bury_unreferenced(&mut self, object_keys: &[String]) -> Result<()> {
        bury_unreferenced(self.transaction, object_keys, self.now_ms).await
    }
}

/// Makes every object of `object_keys` that no chunk references dead
/// since `now_ms` (an object already dead keeps its time), in one
/// statement.
pub(in crate::store::postgres) async fn bury_unreferenced(
    client: &impl GenericClient,
    object_keys: &[String],
    now_ms: i64,
) -> Result<()> {
    if object_keys.is_empty() {
        return Ok(());
    }
    let statement = client
        .prepare_cached(
            "INSERT INTO dead_objects (object_key, dead_since_ms)
             SELECT k, $2 FROM unnest($1::text[]) AS k
             WHERE k <> '' AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.object_key = k)
             ON CONFLICT (object_key) DO NOTHING",
        )
        .await?;
    client.execute(&statement, &[&object_keys, &now_ms]).await?;
    Ok(())
}
