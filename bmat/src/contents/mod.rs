//! Caches of format "contents": a save uploads only the file contents its base cache
//! lacks; a restore fetches the contents it needs from every object that holds them.
//! The object layout and manifest ([`layout`]), the save's split of a tar stream
//! ([`split`]) and what of its base it stores again ([`repack`]), the restore's
//! download plan ([`plan`]), decompression ([`decode`]) and reassembly ([`assemble`]).
//! Everything else (what is archived, how it is unpacked, checked and placed) is the
//! archive's: a contents cache is the same tar stream, stored differently.

pub mod assemble;
mod decode;
pub mod layout;
pub mod plan;
mod repack;
pub mod split;

#[cfg(test)]
mod tests;
