//! JSON bodies of the signer API (`/v1`). Every request carries
//! `Authorization: Bearer <token>`; agent-shim adds it for bmat.
//!
//! | method | path                          | request            | response           |
//! |--------|-------------------------------|--------------------|--------------------|
//! | GET    | /v1/health                    | –                  | [`Health`]         |
//! | POST   | /v1/lookup                    | [`LookupRequest`]  | [`LookupResponse`] |
//! | POST   | /v1/uploads                   | [`BeginRequest`]   | [`BeginResponse`]  |
//! | POST   | /v1/uploads/{id}/parts        | [`PartUrlsRequest`]| [`PartUrlsResponse`]|
//! | POST   | /v1/uploads/{id}/complete     | [`CompleteRequest`]| [`UploadStatus`]   |
//! | GET    | /v1/uploads/{id}              | –                  | [`UploadStatus`]   |
//! | DELETE | /v1/uploads/{id}              | –                  | [`UploadStatus`]   |
//! | GET    | /v1/caches[?prefix=P]         | –                  | [`CacheList`]      |
//! | DELETE | /v1/caches/{key}              | –                  | [`Deleted`]        |
//! | POST   | /v1/reports                   | [`ReportRequest`]  | [`ReportAnswer`]   |
//! | POST   | /v1/tokens                    | [`MintRequest`]    | [`MintedToken`]    |
//! | DELETE | /v1/tokens/{id}               | –                  | [`Revoked`]        |
//! | GET    | /v1/stats                     | –                  | [`Usage`]          |
//!
//! A job token acts in one owner's scope (docs/design.md, "Trust model"): lookups
//! search its own scope, then its read scopes; uploads and deletes need `write` and
//! stay in its own scope.
//! An operator credential mints and revokes job tokens and lists and deletes caches of
//! its owners (`GET /v1/caches?owner=O&scope=S`, `DELETE /v1/caches/{key}?owner=O&scope=S`),
//! and reads their usage (`GET /v1/stats[?owner=O][&scope=S]`, operators only).
//!
//! Any error answers with a fitting status and an [`ErrorBody`].

use serde::{Deserialize, Serialize};

pub const API_PREFIX: &str = "/v1";

/// Every error: one line a person can act on, and for the few errors a client acts on
/// by itself, a code.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 403: the token may read but not write (a save is then skipped, not failed).
    ReadOnly,
    /// 401: the token expired.
    TokenExpired,
    /// 401: the token was revoked.
    TokenRevoked,
    /// 429: the token spent a budget of the window (reports): retrying within the job
    /// cannot succeed.
    BudgetSpent,
    /// A code this client does not know yet.
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Health {
    pub ok: bool,
    pub version: String,
    /// Background tasks that died and have not run a pass since their restart, and
    /// `prefix lease` when another signer took the prefix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub down: Vec<String>,
}

/// Exact key first, then each fallback prefix in order; within a prefix the newest
/// cache wins.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LookupRequest {
    pub key: String,
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// Caches to pass over: candidates that already failed this restore.
    #[serde(default)]
    pub exclude: Vec<CacheRef>,
    /// The cache formats this client restores besides archives ([`FORMAT_ARCHIVE`],
    /// always understood): a cache of another format is passed over, so that a client
    /// from before content manifests never takes one for a broken archive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub formats: Vec<u8>,
    /// A save looking for the cache whose contents it may reuse, not a restore: not
    /// counted as a hit or a miss.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub for_save: bool,
}

/// A cache that is one tar.zst archive (every cache saved before content manifests).
pub const FORMAT_ARCHIVE: u8 = 1;
/// A cache whose object holds the contents it added and a manifest of every entry,
/// naming contents by hash and where they lie: in this object or in objects of caches
/// the saving job could read (docs/design.md, "Content-addressed caches").
pub const FORMAT_CONTENTS: u8 = 2;

fn format_archive() -> u8 {
    FORMAT_ARCHIVE
}

fn is_archive(format: &u8) -> bool {
    *format == FORMAT_ARCHIVE
}

/// Another cache's object a cache of [`FORMAT_CONTENTS`] reads contents from, with a
/// presigned GET URL in a lookup's hit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectUrl {
    /// The object's id (the ULID of the upload that wrote it).
    pub id: String,
    pub url: String,
    pub size: u64,
}

/// One cache, as a job names it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CacheRef {
    pub scope: String,
    pub key: String,
}

/// What became of a restore, for the registry: a success moves the cache's last use
/// (a bare lookup does not), a problem may drop a broken cache so that the next save
/// writes a good one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReportRequest {
    pub scope: String,
    pub key: String,
    /// The hit's SHA-256: a report about another archive of the key is ignored.
    pub sha256: String,
    /// The hit's `issued_at_ms`. Not trusted: the signer reads the time from
    /// `lookup_id`.
    #[serde(default)]
    pub issued_at_ms: i64,
    /// The hit's `lookup_id`. Without one the signer issued for this job and cache,
    /// an `undecodable` report drops nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup_id: Option<String>,
    /// `None`: restored.
    #[serde(default)]
    pub problem: Option<CacheProblem>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CacheProblem {
    /// S3 has no object.
    Missing,
    /// The bytes downloaded do not have the registered size or SHA-256.
    Corrupt,
    /// The bytes match, but do not unpack (bad zstd or tar, refused entries, past the
    /// recorded extent).
    Undecodable,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReportAnswer {
    /// The cache was deleted: a lookup now finds the next candidate, a save writes anew.
    pub dropped: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LookupResponse {
    /// `None` is a miss.
    pub hit: Option<CacheHit>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CacheHit {
    /// The key that matched: the requested one, or one found by a fallback prefix.
    pub key: String,
    /// Presigned GET URL of the compressed archive; ranged GETs allowed. Short-lived.
    pub url: String,
    /// Size in bytes of the compressed archive.
    pub size: u64,
    /// Lower-case hex SHA-256 of the compressed archive.
    pub sha256: String,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
    /// The scope the cache belongs to: the token's own, or one of its read scopes.
    #[serde(default = "default_scope")]
    pub scope: String,
    /// False when the hit came from one of the token's read scopes.
    #[serde(default = "yes")]
    pub own_scope: bool,
    #[serde(default, flatten)]
    pub extent: Extent,
    /// When the signer answered (Unix ms).
    #[serde(default)]
    pub issued_at_ms: i64,
    /// The signer's proof of this lookup (who asked, which cache, when): a report
    /// sends it back, and the signer judges the report by it, not by a client's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup_id: Option<String>,
    /// [`FORMAT_ARCHIVE`] or [`FORMAT_CONTENTS`].
    #[serde(default = "format_archive", skip_serializing_if = "is_archive")]
    pub format: u8,
    /// This cache's own object's id (`url` is its URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// For [`FORMAT_CONTENTS`]: every other object its manifest may read from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<ObjectUrl>,
}

fn default_scope() -> String {
    crate::DEFAULT_SCOPE.to_owned()
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BeginRequest {
    pub key: String,
    /// Compressed size, when the client knows it up front (it usually does not: the
    /// archive is streamed). Refused at once when over the cap.
    #[serde(default)]
    pub expected_size: Option<u64>,
    /// The part size the client would like (it holds the parts in flight in memory).
    /// The signer answers with the size to use: this one brought within S3's limits
    /// (5 MiB to 5 GiB, and few enough parts for its maximum cache size), or its
    /// configured default when none is asked for.
    #[serde(default)]
    pub part_size: Option<u64>,
    /// A refresh: a cache of the key older than this many seconds does not make the
    /// begin a skip; the upload replaces it when it completes (one refresh at a time,
    /// like any upload of the key).
    #[serde(default)]
    pub refresh_after_secs: Option<u64>,
    /// Save only when the job's scope matches one of these (an exact scope, or a
    /// prefix ending in `*`): `refs/heads/*` lets branches write and pull requests
    /// only read. Empty: any scope.
    #[serde(default)]
    pub only_scopes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum BeginResponse {
    /// Nothing to do: a cache exists for the key, or another job is uploading it.
    Skip { reason: SkipReason },
    /// Go ahead: ask for part URLs, then complete.
    Upload {
        upload_id: String,
        /// Every part but the last must be exactly this size (S3 wants ≥ 5 MiB).
        part_size: u64,
        /// The largest archive the signer will accept, in bytes.
        max_size: u64,
        /// The cache formats the signer stores besides archives: a client saves a
        /// contents cache only to a signer that keeps its refs (an older one would
        /// store it as an archive no restore could read).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        formats: Vec<u8>,
    },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    Exists,
    InProgress,
    /// The job's scope matches none of the begin's `only_scopes`.
    Scope,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartUrlsRequest {
    /// 1-based, as S3 numbers parts; each at most once.
    pub part_numbers: Vec<u32>,
    /// The exact size of the one part asked for, when it is the archive's last and
    /// shorter than the part size. Without it, every URL is for a part of exactly the
    /// part size: each URL's body length is signed, and S3 refuses any other.
    #[serde(default)]
    pub size: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartUrlsResponse {
    pub urls: Vec<PartUrl>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartUrl {
    pub part_number: u32,
    /// Presigned UploadPart PUT URL.
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CompleteRequest {
    pub parts: Vec<CompletedPart>,
    /// Total compressed size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256 of the whole compressed archive.
    pub sha256: String,
    /// What the archive unpacks to: restores stop past it.
    #[serde(default, flatten)]
    pub extent: Extent,
    /// [`FORMAT_ARCHIVE`] or [`FORMAT_CONTENTS`].
    #[serde(default = "format_archive", skip_serializing_if = "is_archive")]
    pub format: u8,
    /// For [`FORMAT_CONTENTS`]: the other objects (ids) the manifest reads contents
    /// from. Each must be needed by a cache of the owner in a scope this job may read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refs: Vec<String>,
    /// For [`FORMAT_CONTENTS`]: the compressed bytes of every content the cache needs
    /// (its own and those it reuses) plus its manifest: what an archive of it would
    /// about weigh. `size` is what this save stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logical_size: Option<u64>,
}

/// The uncompressed size of an archive (its tar stream) and its number of entries, as
/// the saver recorded them. A restore checks free space against the size first and
/// stops as soon as the archive goes past either. Unknown for caches saved before
/// they were recorded.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Extent {
    #[serde(default)]
    pub unpacked_size: Option<u64>,
    #[serde(default)]
    pub entries: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CompletedPart {
    pub part_number: u32,
    /// The ETag header S3 answered the part's PUT with, quotes included.
    pub etag: String,
}

/// Life of an upload: `creating` → `uploading` → `finished` → `completed` | `aborted`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UploadState {
    /// Row written, CreateMultipartUpload not yet answered.
    Creating,
    /// Parts may be uploaded.
    Uploading,
    /// The client completed; queued for CompleteMultipartUpload.
    Finished,
    /// The cache exists and can be looked up.
    Completed,
    /// Given up; the multipart upload is (or will be) aborted.
    Aborted,
}

impl UploadState {
    pub fn as_str(self) -> &'static str {
        match self {
            UploadState::Creating => "creating",
            UploadState::Uploading => "uploading",
            UploadState::Finished => "finished",
            UploadState::Completed => "completed",
            UploadState::Aborted => "aborted",
        }
    }

    /// Holds its key: no other upload of the key may begin, and its multipart upload
    /// in S3 must not be reaped. (The registry's SQL says the same in its partial
    /// unique index; a unit test there checks that both agree.)
    pub fn is_live(self) -> bool {
        matches!(
            self,
            UploadState::Creating | UploadState::Uploading | UploadState::Finished
        )
    }

    pub const ALL: [UploadState; 5] = [
        UploadState::Creating,
        UploadState::Uploading,
        UploadState::Finished,
        UploadState::Completed,
        UploadState::Aborted,
    ];

    pub fn parse(s: &str) -> Option<UploadState> {
        Some(match s {
            "creating" => UploadState::Creating,
            "uploading" => UploadState::Uploading,
            "finished" => UploadState::Finished,
            "completed" => UploadState::Completed,
            "aborted" => UploadState::Aborted,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UploadStatus {
    pub upload_id: String,
    pub key: String,
    pub state: UploadState,
}

/// One page of caches, by scope then key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CacheList {
    pub caches: Vec<CacheInfo>,
    /// Where the next page starts (`?after_scope=…&after_key=…`); `None` on the last.
    #[serde(default)]
    pub next: Option<CacheRef>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CacheInfo {
    pub owner: String,
    pub scope: String,
    pub key: String,
    pub size: u64,
    pub sha256: String,
    pub created_at: i64,
    pub last_used_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Deleted {
    pub deleted: bool,
}

/// `DELETE /v1/caches?scope=S&prefix=P`: every cache of one scope whose key starts
/// with the prefix (all of the scope without one) is gone; how many, and their bytes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeletedCaches {
    pub deleted: u64,
    pub bytes: u64,
}

/// Which caches an operator lists or deletes in (`?owner=O&scope=S`); a job token's
/// own owner and scope are implied and these must be absent or equal to them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CacheSelector {
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    /// Listing: the page starts after this scope and key (a previous page's `next`).
    #[serde(default)]
    pub after_scope: Option<String>,
    #[serde(default)]
    pub after_key: Option<String>,
    /// Listing: at most this many caches (default and maximum 1000).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Listing: only caches whose key starts with this.
    #[serde(default)]
    pub prefix: Option<String>,
}

/// An operator asks for a job token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MintRequest {
    pub owner: String,
    /// The scope the token writes (with `write`) and searches first.
    pub scope: String,
    /// Scopes searched after its own, in this order; never written.
    #[serde(default)]
    pub read_scopes: Vec<String>,
    pub write: bool,
    /// Lifetime; the signer's default when absent, refused above its maximum.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MintedToken {
    /// The bearer token. Shown once: the signer keeps only its SHA-256.
    pub token: String,
    /// Names the token to revoke it (`DELETE /v1/tokens/{id}`).
    pub id: String,
    /// Seconds since the Unix epoch.
    pub expires_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Revoked {
    pub revoked: bool,
}

/// Which usage an operator reads (`GET /v1/stats?owner=O&scope=S`): both optional;
/// without an owner, every owner the credential covers that has caches or activity.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UsageSelector {
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
}

/// Usage of the owners an operator asked about, by owner.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Usage {
    pub owners: Vec<OwnerUsage>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct OwnerUsage {
    pub owner: String,
    /// The owner's quota in bytes (`limits.owner_quota`), across all its scopes.
    pub quota: u64,
    /// Compressed bytes the owner stores (of the selected scope, if one was): its
    /// caches' and its retained objects' (objects of deleted caches that live caches
    /// still read).
    pub bytes: u64,
    /// What its caches would weigh as archives: their sizes, or for caches of
    /// contents their logical sizes.
    #[serde(default)]
    pub logical_bytes: u64,
    pub caches: u64,
    /// The current hour and the 23 before it.
    pub last_day: Activity,
    /// The current hour and the 167 before it.
    pub last_week: Activity,
    /// By scope name.
    pub scopes: Vec<ScopeUsage>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ScopeUsage {
    pub scope: String,
    /// As [`OwnerUsage::bytes`], of this scope.
    pub bytes: u64,
    #[serde(default)]
    pub logical_bytes: u64,
    pub caches: u64,
    pub last_day: Activity,
    pub last_week: Activity,
}

/// What happened in a window. Lookups count in the asking job's own scope (a hit from
/// a read scope too); evictions (TTL or quota) in the evicted cache's scope.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Activity {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn begin_response_is_tagged_by_outcome() {
        let skip = serde_json::to_string(&BeginResponse::Skip {
            reason: SkipReason::InProgress,
        });
        assert_eq!(
            skip.ok().as_deref(),
            Some(r#"{"outcome":"skip","reason":"in_progress"}"#)
        );
    }

    #[test]
    fn unknown_error_codes_still_parse() {
        let body: Result<ErrorBody, _> =
            serde_json::from_str(r#"{"error":"x","code":"something_new"}"#);
        assert_eq!(body.ok().and_then(|b| b.code), Some(ErrorCode::Other));
        let body: Result<ErrorBody, _> = serde_json::from_str(r#"{"error":"x"}"#);
        assert_eq!(body.ok().map(|b| b.code), Some(None));
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for s in [
            UploadState::Creating,
            UploadState::Uploading,
            UploadState::Finished,
            UploadState::Completed,
            UploadState::Aborted,
        ] {
            assert_eq!(UploadState::parse(s.as_str()), Some(s));
        }
    }
}

/// When a deferred command runs, given the job's status at `bmat job end`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RunIf {
    #[default]
    Always,
    /// The job succeeded (status 0).
    Success,
    /// The job failed (any other status).
    Failure,
}

impl RunIf {
    pub fn allows(self, status: i32) -> bool {
        match self {
            RunIf::Always => true,
            RunIf::Success => status == 0,
            RunIf::Failure => status != 0,
        }
    }
}

/// A command a job queued on its agent shim to run at its end (`bmat job defer`,
/// `--save-at-end`), as the job would have run it. Never holds the shim's token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeferredCommand {
    pub argv: Vec<String>,
    /// Absolute working directory.
    pub cwd: String,
    /// The job's environment when it queued the command.
    pub env: Vec<(String, String)>,
    /// A file whose content is the command's stdin (a save's list of paths).
    #[serde(default)]
    pub stdin_file: Option<String>,
    #[serde(default)]
    pub run_if: RunIf,
}

/// `POST /v1/job/deferred`: the command is queued, the queue's length after it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Queued {
    pub queued: usize,
}

/// `POST /v1/job/deferred/take`: the queue, in order; the shim's queue is empty after.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeferredQueue {
    pub commands: Vec<DeferredCommand>,
}

/// One cache step of the job as bmat reported it to the job's agent shim
/// (`POST /v1/job/steps`), for the summary `bmat job end` prints.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobStep {
    /// `restore`, `save`, `rust restore`, `rust save`, `workspace layer`, …
    pub command: String,
    pub key: String,
    /// bmat's outcome (`hit`, `miss`, `saved`, `skipped`, `failed`, …).
    pub outcome: String,
    #[serde(default)]
    pub matched_key: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub bytes: Option<u64>,
    #[serde(default)]
    pub archive_bytes: Option<u64>,
    pub seconds: f64,
    /// When the step ended (Unix ms).
    #[serde(default)]
    pub ended_at_ms: Option<i64>,
    /// A Rust save: this job's build, from the end of its Rust restore to the save.
    #[serde(default)]
    pub build_seconds: Option<f64>,
    /// A Rust restore: the build time the job that made the restored cache recorded.
    #[serde(default)]
    pub cache_build_seconds: Option<f64>,
}

/// `GET /v1/job/steps`: the job's cache steps so far, in order.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct JobSteps {
    pub steps: Vec<JobStep>,
}
