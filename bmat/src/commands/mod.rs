//! The commands: each runs one cache step and comes to an [`outcome::Outcome`].

pub mod delete;
pub mod list;
pub mod outcome;
pub mod restore;
pub mod rust;
pub mod save;
pub mod save_list;
