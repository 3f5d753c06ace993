//! The trees a cache spans and the paths in them: path rules, the trees of a job,
//! the list `save` reads on stdin, tree manifests, free space.

pub mod disk;
pub mod input;
pub mod manifest;
pub mod paths;
pub mod roots;
