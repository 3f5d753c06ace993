//! cargo xtask: the local stack (S3, signer, shim) used by the integration tests and
//! the demo, and the developer commands around it.

pub mod bench;
pub mod copy;
pub mod dedup_study;
pub mod demo;
pub mod garage_install;
pub mod layout;
pub mod stack;
pub mod test_cmd;
