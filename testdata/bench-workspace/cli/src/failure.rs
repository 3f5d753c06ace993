//! Which error code an error is: the first error of the chain that says.

use bench_buildinfo::Code;

/// The code of the most specific known error in `error`'s chain.
pub fn code_of(error: &anyhow::Error) -> Code {
    error
        .chain()
        .find_map(|cause| {
            let cause = cause as &(dyn std::error::Error + 'static);
            None.or_else(|| cause.downcast_ref().map(store))
                .or_else(|| cause.downcast_ref().map(index))
                .or_else(|| cause.downcast_ref().map(config))
                .or_else(|| cause.downcast_ref().map(manifest))
                .or_else(|| cause.downcast_ref::<Failure>().map(|f| f.0))
                .or_else(|| cause.downcast_ref::<std::io::Error>().map(|_| Code::Io))
        })
        .unwrap_or(Code::Io)
}

/// A command's own failure, where no underlying error says what happened.
#[derive(Debug)]
pub struct Failure(pub Code, pub String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for Failure {}

fn store(e: &bench_store::Error) -> Code {
    use bench_store::Error as E;
    match e {
        E::NotFound(_) => Code::BlobMissing,
        E::Corrupt { .. } => Code::BlobCorrupt,
        E::BadHash { .. } => Code::BlobBadHash,
        E::Full { .. } => Code::StoreFull,
        E::Io { .. } | E::Zstd(_) => Code::Io,
    }
}

fn index(e: &bench_index::Error) -> Code {
    use bench_index::Error as E;
    match e {
        E::Unknown(_) | E::ShortPrefix { .. } => Code::ManifestUnknown,
        E::Ambiguous { .. } => Code::ManifestAmbiguous,
        E::Json { .. } => Code::ManifestInvalid,
        E::Io { .. } => Code::Io,
        E::Store(e) => store(e),
        E::Manifest(e) => manifest(e),
    }
}

fn config(e: &bench_config::Error) -> Code {
    match e {
        bench_config::Error::Invalid { .. } | bench_config::Error::Key { .. } => {
            Code::ConfigInvalid
        }
        bench_config::Error::Io { .. } | bench_config::Error::Json { .. } => Code::ConfigUnreadable,
    }
}

fn manifest(e: &bench_core::Error) -> Code {
    match e {
        bench_core::Error::Pattern { .. } => Code::Usage,
        bench_core::Error::Io { .. } => Code::Io,
        _ => Code::ManifestInvalid,
    }
}
