//! The trees a cache spans and the paths in them: path rules, the trees of a job,
//! tree manifests, free space, file times.

pub mod disk;
pub mod manifest;
pub mod paths;
pub mod roots;
pub mod times;
