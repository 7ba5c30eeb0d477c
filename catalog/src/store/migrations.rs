//! Schema versioning shared by every store: which migrations a database
//! at a given version still needs.

use crate::{Error, Result};

/// The migrations a database at schema version `current` still needs,
/// each with the version it brings the database to. Fails with
/// `SchemaTooNew` if the database is newer than `migrations` knows.
pub(crate) fn pending<'a>(
    migrations: &'a [&'a str],
    current: i64,
) -> Result<impl Iterator<Item = (i64, &'a str)>> {
    let supported = i64::try_from(migrations.len()).expect("few migrations");
    if current > supported {
        return Err(Error::SchemaTooNew {
            found: current,
            supported,
        });
    }
    let pending = migrations
        .iter()
        .enumerate()
        .skip(usize::try_from(current).unwrap_or(0))
        .map(|(index, migration)| {
            let version = i64::try_from(index).expect("few migrations") + 1;
            (version, *migration)
        });
    Ok(pending)
}
