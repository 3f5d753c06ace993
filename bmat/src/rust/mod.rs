//! The Rust cache's parts: the key ([`key`], from the toolchain, the third-party part
//! of Cargo.lock and the flags that change artefacts, the host's C library, [`host`], and what the user
//! declares, [`declared`]), the workspace as cargo describes
//! it ([`workspace`]), the files a cache holds (the third-party units of the build
//! directory, [`artefacts`], and what Cargo's home holds for the locked packages,
//! [`cargo_home`]) and the carrying of restored units to another Cargo home
//! ([`relocate`]). The command flow that puts them together is
//! `commands/rust.rs`.

pub mod artefacts;
pub mod cargo_home;
pub mod declared;
pub mod explain;
pub mod freshness;
pub mod host;
pub mod key;
pub mod layer;
pub mod lockfile;
pub mod relocate;
pub mod toolchain;
pub mod workspace;
