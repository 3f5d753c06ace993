//! The trees a cache spans and the paths in them: path rules, the trees of a job,
//! tree manifests, free space, file times, files rewritten after a restore.

pub mod confined;
pub mod disk;
pub mod manifest;
pub mod paths;
pub mod roots;
pub mod times;
