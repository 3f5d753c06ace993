//! What a completion says about its cache's format (docs/design.md, "Content-addressed
//! caches"): an archive, or contents with a logical size and the other objects it
//! reads. Only the shape is checked here; whether the job may read those objects is
//! checked where they are recorded (`Registry::finish_upload`), in one transaction.

use bmat_wire::api::{CompleteRequest, FORMAT_ARCHIVE, FORMAT_CONTENTS};

use crate::text::shown;

/// Objects one cache may read besides its own.
pub const MAX_REFS: usize = 1000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContentsError {
    #[error(
        "format {0} is not one this signer stores ({FORMAT_ARCHIVE}: archive, {FORMAT_CONTENTS}: contents)"
    )]
    UnknownFormat(u8),
    #[error("refs are only for format {FORMAT_CONTENTS} (contents)")]
    RefsOfArchive,
    #[error("logical_size is only for format {FORMAT_CONTENTS} (contents)")]
    LogicalSizeOfArchive,
    #[error("logical_size is missing: format {FORMAT_CONTENTS} (contents) records it")]
    NoLogicalSize,
    #[error("logical_size {0} is more than any cache holds")]
    ImpossibleLogicalSize(u64),
    #[error("{0} refs; a cache reads at most {MAX_REFS} other objects")]
    TooManyRefs(usize),
    #[error("ref {} is not a canonical ULID", shown(.0))]
    NotAnId(String),
    #[error("ref {0} is this upload's own object")]
    OwnObject(String),
    #[error("ref {0} is named twice")]
    Twice(String),
    #[error("a referenced object is not one this job may read: {0}")]
    Unreadable(String),
}

/// Checks the format, logical size and refs of a completion of upload `own`.
pub fn check(req: &CompleteRequest, own: &str) -> Result<(), ContentsError> {
    match req.format {
        FORMAT_ARCHIVE if !req.refs.is_empty() => return Err(ContentsError::RefsOfArchive),
        FORMAT_ARCHIVE if req.logical_size.is_some() => {
            return Err(ContentsError::LogicalSizeOfArchive);
        }
        FORMAT_ARCHIVE => return Ok(()),
        FORMAT_CONTENTS => {}
        other => return Err(ContentsError::UnknownFormat(other)),
    }
    match req.logical_size {
        None => return Err(ContentsError::NoLogicalSize),
        Some(n) if i64::try_from(n).is_err() => {
            return Err(ContentsError::ImpossibleLogicalSize(n));
        }
        Some(_) => {}
    }
    if req.refs.len() > MAX_REFS {
        return Err(ContentsError::TooManyRefs(req.refs.len()));
    }
    let mut seen = std::collections::HashSet::new();
    for id in &req.refs {
        if !crate::names::is_ulid(id) {
            return Err(ContentsError::NotAnId(id.clone()));
        }
        if id == own {
            return Err(ContentsError::OwnObject(id.clone()));
        }
        if !seen.insert(id) {
            return Err(ContentsError::Twice(id.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bmat_wire::api::Extent;

    use super::*;

    fn req(format: u8, logical_size: Option<u64>, refs: &[&str]) -> CompleteRequest {
        CompleteRequest {
            parts: vec![],
            size: 1,
            sha256: String::new(),
            extent: Extent::default(),
            format,
            refs: refs.iter().map(|r| r.to_string()).collect(),
            logical_size,
        }
    }

    #[test]
    fn formats_logical_sizes_and_refs_are_checked() {
        const OWN: &str = "01BX5ZZKBKACTAV9WEVGEMMVRZ";
        const A: &str = "01BX5ZZKBKACTAV9WEVGEMMVS0";
        use ContentsError as E;
        assert_eq!(check(&req(1, None, &[]), OWN), Ok(()));
        assert_eq!(check(&req(2, Some(5), &[A]), OWN), Ok(()));
        assert_eq!(check(&req(2, Some(5), &[]), OWN), Ok(()));
        assert_eq!(check(&req(3, None, &[]), OWN), Err(E::UnknownFormat(3)));
        assert_eq!(check(&req(1, None, &[A]), OWN), Err(E::RefsOfArchive));
        assert_eq!(
            check(&req(1, Some(5), &[]), OWN),
            Err(E::LogicalSizeOfArchive)
        );
        assert_eq!(check(&req(2, None, &[]), OWN), Err(E::NoLogicalSize));
        assert_eq!(
            check(&req(2, Some(u64::MAX), &[]), OWN),
            Err(E::ImpossibleLogicalSize(u64::MAX))
        );
        let lower = A.to_lowercase();
        assert_eq!(
            check(&req(2, Some(5), &[&lower]), OWN),
            Err(E::NotAnId(lower.clone()))
        );
        assert_eq!(
            check(&req(2, Some(5), &[OWN]), OWN),
            Err(E::OwnObject(OWN.into()))
        );
        assert_eq!(
            check(&req(2, Some(5), &[A, A]), OWN),
            Err(E::Twice(A.into()))
        );
        let many: Vec<String> = (0..=MAX_REFS)
            .map(|_| ulid::Ulid::new().to_string())
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(
            check(&req(2, Some(5), &many), OWN),
            Err(E::TooManyRefs(MAX_REFS + 1))
        );
    }
}
