//! Where caches live ([`Place`]) and how numbers cross into SQLite: sizes are stored as
//! i64 (the config keeps every limit below 2^63) and read back clamped at zero.

use bmat_wire::api::Extent;
use rusqlite::Row;

use super::error::RegistryError;

/// Where caches live: an owner's scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place<'a> {
    pub owner: &'a str,
    pub scope: &'a str,
}

pub(super) fn to_i64(v: u64) -> Result<i64, RegistryError> {
    i64::try_from(v).map_err(|_| RegistryError::SizeOutOfRange(v))
}

/// A stored count or size as the unsigned number it stands for.
pub(super) fn unsigned(v: i64) -> u64 {
    v.max(0) as u64
}

/// The recorded extent of a cache or upload row (`unpacked_size`, `entries`).
pub(super) fn extent_from_row(r: &Row<'_>) -> rusqlite::Result<Extent> {
    Ok(Extent {
        unpacked_size: r.get::<_, Option<i64>>("unpacked_size")?.map(unsigned),
        entries: r.get::<_, Option<i64>>("entries")?.map(unsigned),
    })
}
