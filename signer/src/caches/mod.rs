//! The life of a cache, in one place: found by a lookup ([`lookup`]), reported on by
//! the job that restored it and healed ([`report`]), listed ([`list`]), deleted by a
//! client or as a step of the others ([`delete`]), evicted for age or quota
//! ([`evict`]; which caches the quotas take is [`quota`]). Who may list and drop which caches is [`access`]; lookups and
//! evictions are counted by [`usage`]. Every failure is a [`CacheError`].

pub mod access;
pub mod delete;
pub mod error;
pub mod evict;
pub mod list;
pub mod lookup;
pub mod quota;
pub mod report;
pub mod usage;

pub use error::CacheError;
