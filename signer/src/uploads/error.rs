//! What can go wrong in an upload's life, one variant per failure; the HTTP edge maps
//! each to a status in one place (`crate::http::error`).

use bmat_wire::KeyError;
use bmat_wire::api::UploadState;

use super::contents::ContentsError;
use crate::config::MAX_PARTS;
use crate::registry::RegistryError;
use crate::s3::S3Error;
use crate::text::shown;

/// Part URLs in one answer: plenty for a client that asks ahead, small enough that
/// one request cannot make the signer presign thousands of URLs.
pub const MAX_URLS_PER_REQUEST: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("invalid key {}: {source}", shown(.key))]
    InvalidKey {
        key: String,
        #[source]
        source: KeyError,
    },
    #[error("invalid upload id {}: not a ULID", shown(.0))]
    InvalidId(String),
    /// Unknown, or another owner's or scope's: the same answer.
    #[error("no upload {0}")]
    NotFound(String),
    #[error("expected size {size} bytes is over the maximum cache size of {cap} bytes")]
    ExpectedTooLarge { size: u64, cap: u64 },
    #[error(
        "scope {scope} has {max} uploads in progress, the most allowed \
         (limits.max_live_uploads); try again when one ends"
    )]
    TooManyLive { scope: String, max: u64 },
    #[error(
        "the unprotected scopes of owner {owner} have {max} uploads in progress, the \
         most allowed (limits.max_live_unprotected_uploads); try again when one ends"
    )]
    TooManyLiveUnprotected { owner: String, max: u64 },
    #[error("upload {0} was aborted while it was being created; begin again")]
    AbortedWhileCreating(String),
    #[error("upload {id} is {}; {needed}", .state.as_str())]
    WrongState {
        id: String,
        state: UploadState,
        /// What the request needed, in words.
        needed: &'static str,
    },
    #[error("upload {0} is no longer uploading")]
    NoLongerUploading(String),
    #[error("upload {0} has no S3 upload")]
    NoS3Upload(String),
    #[error("upload {0} no longer exists in S3; it was aborted")]
    GoneFromS3(String),
    #[error("part_numbers is empty")]
    NoPartNumbers,
    #[error("{0} part numbers asked; at most {MAX_URLS_PER_REQUEST} per request")]
    TooManyPartNumbers(usize),
    #[error("size is for one part (the last) at a time")]
    SizeForOnePart,
    #[error("part number {0} is outside S3's range 1..={MAX_PARTS}")]
    PartOutOfRange(u32),
    #[error("part number {0} is asked for twice")]
    PartTwice(u32),
    #[error("part {n} would start at byte {start}, past the maximum cache size of {cap} bytes")]
    PartPastCap { n: u32, start: u64, cap: u64 },
    #[error(
        "part {n} of {size} bytes: parts are 1 to {largest} bytes here (part size \
         {part_size}, maximum cache size {cap})"
    )]
    PartSize {
        n: u32,
        size: u64,
        largest: u64,
        part_size: u64,
        cap: u64,
    },
    #[error("parts is empty")]
    NoParts,
    #[error("part numbers must be ascending and unique; {n} follows {previous}")]
    PartsNotAscending { n: u32, previous: u32 },
    #[error("sha256 {} is not 64 lower-case hex digits", shown(.0))]
    BadSha256(String),
    #[error(
        "size {size} bytes is over the maximum cache size of {cap} bytes; the upload was aborted"
    )]
    SizeOverCap { size: u64, cap: u64 },
    #[error(
        "{0} is missing: a completion records what the archive unpacks to (restores stop \
         past it); the upload was aborted"
    )]
    NoExtent(&'static str),
    #[error("{field} {value} is more than any archive holds; the upload was aborted")]
    ImpossibleExtent { field: &'static str, value: u64 },
    #[error("part {0} was not uploaded (S3 does not list it)")]
    PartNotUploaded(u32),
    #[error("part {n}: ETag {given} does not match S3's {real}")]
    EtagMismatch { n: u32, given: String, real: String },
    #[error(
        "the uploaded parts add up to {total} bytes, over the maximum cache size of {cap} \
         bytes; the upload was aborted"
    )]
    PartsOverCap { total: u64, cap: u64 },
    #[error("size {claimed} does not match the uploaded parts' total of {total} bytes")]
    SizeMismatch { claimed: u64, total: u64 },
    #[error(transparent)]
    Contents(#[from] ContentsError),
    #[error("S3 failed while {doing}")]
    S3 {
        doing: &'static str,
        #[source]
        source: S3Error,
    },
    /// A `finished` row without what completing it needs (the registry broke a rule).
    #[error("finished upload {id} has no {what}")]
    FinishedWithout { id: String, what: &'static str },
    #[error("the registry failed")]
    Registry(#[from] RegistryError),
}

pub(super) fn s3(doing: &'static str) -> impl FnOnce(S3Error) -> UploadError {
    move |source| UploadError::S3 { doing, source }
}
