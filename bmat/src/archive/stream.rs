//! The blocking halves of the pipelines, run on blocking threads:
//! - pack: files → tar → zstd (multithreaded, frame checksum) → any writer (in `save`,
//!   the part cutter);
//! - unpack: compressed bytes → SHA-256 and byte count → zstd → tar → staging tree,
//!   then the size and hash are checked against what the registry said.

use std::cell::Cell;
use std::io::{self, Read, Write};

use bmat_wire::api::CacheProblem;
use sha2::{Digest, Sha256};

use crate::archive::corruption::{corruption, is_corruption};
use crate::archive::handoff;
use crate::archive::unpack::Stage;
use crate::archive::{ArchiveWriter, TreeStagings, UnpackError, Unpacked, WriteReport, unpack};
use crate::progress::Progress;
use crate::trees::roots::{Roots, TreePath};

/// Compression settings.
#[derive(Debug, Clone, Copy)]
pub struct Compression {
    pub level: i32,
    pub workers: u32,
}

/// Archives `paths` (each in its tree of `roots`; a path alone is one of the main
/// tree) into `out`, compressed. Returns the writer
/// (flushed, to be finished by the caller) and what the archiver noticed.
pub fn pack<W: Write, P: Sync>(
    roots: &Roots,
    paths: &[P],
    out: W,
    compression: Compression,
    progress: &Progress,
) -> io::Result<(W, WriteReport)>
where
    for<'p> &'p P: Into<TreePath>,
{
    let mut encoder = zstd::stream::write::Encoder::new(out, compression.level)?;
    if compression.workers > 1 {
        encoder.multithread(compression.workers)?;
    }
    encoder.include_checksum(true)?;
    let mut counted = CountingWriter {
        inner: encoder,
        progress,
    };
    let ((), report) = archive_to(roots, paths, |tar_in| {
        tar_in.copy_to(&mut counted).map(drop)
    })?;
    let out = counted.inner.finish()?;
    Ok((out, report))
}

/// Archives `paths` into a tar stream that `consume` reads (in `pack`, zstd; for a
/// contents cache, the split into contents).
///
/// Two threads: a scoped one walks, reads files and builds the tar stream; this one
/// runs `consume`. See [`crate::archive::handoff`] for why.
pub fn archive_to<T, P: Sync>(
    roots: &Roots,
    paths: &[P],
    consume: impl FnOnce(&mut handoff::ChunkReader) -> io::Result<T>,
) -> io::Result<(T, WriteReport)>
where
    for<'p> &'p P: Into<TreePath>,
{
    let (tar_out, mut tar_in) = handoff::pipe();
    let (consumed, archived) = std::thread::scope(|s| {
        let archiver = s.spawn(move || {
            let mut archive = ArchiveWriter::with_roots(tar_out, roots.clone());
            for path in paths {
                archive.add(path)?;
            }
            let (tar_out, report) = archive.finish()?;
            tar_out.finish()?;
            Ok::<_, io::Error>(report)
        });
        // On an error `tar_in` is dropped here, which stops the archiver.
        let consumed = consume(&mut tar_in);
        drop(tar_in);
        let archived = archiver
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the archiver thread panicked")));
        (consumed, archived)
    });
    // A compression or upload failure makes the archiver fail too: report the cause.
    let consumed = consumed?;
    Ok((consumed, archived?))
}

/// Why an unpack failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// An entry no restore may write: the archive's fault.
    #[error(transparent)]
    Refused(UnpackError),
    /// This job's tree or environment stands in the way: the archive may be sound.
    #[error(transparent)]
    Blocked(UnpackError),
    /// zstd or tar could not read it.
    #[error("corrupt archive: {0}")]
    Corrupt(String),
    /// Not the size or SHA-256 the registry holds.
    #[error("corrupt archive: {0}")]
    Mismatch(String),
    #[error("{0}")]
    Io(io::Error),
}

impl From<UnpackError> for RestoreError {
    fn from(e: UnpackError) -> Self {
        match e {
            UnpackError::Refused { .. } => RestoreError::Refused(e),
            UnpackError::Blocked { .. } => RestoreError::Blocked(e),
            UnpackError::Io(io) => RestoreError::from(io),
        }
    }
}

impl From<io::Error> for RestoreError {
    /// Corrupt only when the error was marked where the damage was found (see
    /// [`crate::archive::corruption`]); any other I/O error is the machine's.
    fn from(e: io::Error) -> Self {
        if is_corruption(&e) {
            RestoreError::Corrupt(e.to_string())
        } else {
            RestoreError::Io(e)
        }
    }
}

/// What the registry says a cache unpacks to, checked as it unpacks (a zstd bomb or an
/// archive of millions of entries stops at once, not when the disk is full).
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Bytes of the tar stream.
    pub max_unpacked: u64,
    /// Whether `max_unpacked` is what the saver recorded (going past it is damage)
    /// or only the free space found (going past it is this job's full disk).
    pub unpacked_recorded: bool,
    pub max_entries: Option<u64>,
}

impl Bounds {
    pub const NONE: Bounds = Bounds {
        max_unpacked: u64::MAX,
        unpacked_recorded: false,
        max_entries: None,
    };
}

/// What the registry says an archive is: its compressed size and SHA-256, checked at
/// the end, and the bounds of what it unpacks to.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub size: u64,
    pub sha256: &'a str,
    pub bounds: Bounds,
}

impl<'a> Expected<'a> {
    /// Size and hash only, no bound on what the archive unpacks to.
    pub fn unbounded(size: u64, sha256: &'a str) -> Self {
        Expected {
            size,
            sha256,
            bounds: Bounds::NONE,
        }
    }
}

/// Unpacks the compressed archive read from `input` into `staging`, then checks that
/// exactly `expected.size` bytes with its SHA-256 were read.
pub fn unpack_verified<R: Read>(
    input: R,
    staging: impl Stage + Send,
    expected: &Expected<'_>,
    progress: &Progress,
) -> Result<Unpacked, RestoreError> {
    let (size, sha256) = (expected.size, expected.sha256);
    let mut hashing = HashingReader {
        inner: input,
        hasher: Sha256::new(),
        count: 0,
    };
    let unpacked = unpack_stream(staging, &expected.bounds, progress, |tar_out| {
        decompress(&mut hashing, tar_out)
    })?;
    io::copy(&mut hashing, &mut io::sink())?;
    if hashing.count != size {
        return Err(RestoreError::Mismatch(format!(
            "{} bytes read, {size} expected",
            hashing.count
        )));
    }
    let got = hex::encode(hashing.hasher.finalize());
    if !got.eq_ignore_ascii_case(sha256) {
        return Err(RestoreError::Mismatch(format!(
            "SHA-256 is {got}, {sha256} expected"
        )));
    }
    Ok(unpacked)
}

/// Unpacks the tar stream that `produce` writes (on this thread) into `staging` (on a
/// scoped one, see [`crate::archive::handoff`]), within `bounds`. An error of
/// `produce` is the input's (a download, or damage it found).
pub fn unpack_stream(
    staging: impl Stage + Send,
    bounds: &Bounds,
    progress: &Progress,
    produce: impl FnOnce(&mut handoff::ChunkWriter) -> io::Result<()>,
) -> Result<Unpacked, RestoreError> {
    let (mut tar_out, tar_in) = handoff::pipe();
    let (produced, unpacked) = std::thread::scope(|s| {
        let unpacker = s.spawn(move || {
            let mut counted = CountingReader {
                inner: tar_in,
                progress,
                count: 0,
                limit: bounds.max_unpacked,
                recorded: bounds.unpacked_recorded,
            };
            let unpacked = unpack(&mut counted, staging, bounds.max_entries)?;
            // The tar end marker may come before the end of the stream: read on, so
            // that zstd checks its frame checksum and every byte is hashed.
            io::copy(&mut counted, &mut io::sink())?;
            Ok::<_, RestoreError>(unpacked)
        });
        let produced = produce(&mut tar_out);
        let produced = match produced {
            Ok(()) => tar_out.finish(),
            // The unpacker must not take a cut stream for a whole one.
            Err(e) => {
                tar_out.fail(io::Error::new(e.kind(), e.to_string()));
                Err(e)
            }
        };
        let unpacked = unpacker
            .join()
            .unwrap_or_else(|_| Err(RestoreError::Io(io::Error::other("the unpacker panicked"))));
        (produced, unpacked)
    });
    // When the unpacker stops (a refused entry, a full disk) the producer only sees a
    // broken pipe: the unpacker's error is the cause then.
    match (produced, unpacked) {
        (Err(e), _) if e.kind() != io::ErrorKind::BrokenPipe => Err(e.into()),
        (_, Err(e)) => Err(e),
        (Err(e), Ok(_)) => Err(e.into()),
        (Ok(()), Ok(unpacked)) => Ok(unpacked),
    }
}

/// Decompresses all of `input` into `out`, a chunk at a time. An error is the input's
/// (the download's), the pipe's (the unpacker stopped), or else zstd's, which found
/// the archive damaged.
fn decompress(input: &mut impl Read, out: &mut handoff::ChunkWriter) -> io::Result<()> {
    let failed = Cell::new(None);
    let mut decoder = zstd::stream::read::Decoder::new(Watched {
        inner: input,
        failed: &failed,
    })?;
    loop {
        match out.fill_from(&mut decoder) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => {
                return Err(match failed.take() {
                    Some(input) => input,
                    None if e.kind() == io::ErrorKind::BrokenPipe => e,
                    None => corruption(format!("zstd: {e}")),
                });
            }
        }
    }
}

/// Keeps the error of the reader it wraps, so that it can be told from the decoder's
/// own (which only passes an `io::Error` on).
pub(crate) struct Watched<'a, R> {
    pub inner: R,
    pub failed: &'a Cell<Option<io::Error>>,
}

impl<R: Read> Read for Watched<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::Interrupted {
                return e;
            }
            let echo = io::Error::new(e.kind(), e.to_string());
            self.failed.set(Some(e));
            echo
        })
    }
}

/// The whole restore of one archive into `roots`: unpack into a staging directory
/// inside each tree, verify size and hash, refuse entries that would go through a
/// symlink on disk, then move everything into place (see [`TreeStagings`]). On any
/// error the staging directories are removed and the trees are as they were.
pub fn unpack_into_tree<R: Read>(
    input: R,
    roots: &Roots,
    expected: &Expected<'_>,
    progress: &Progress,
) -> Result<Unpacked, RestoreError> {
    let mut stagings = TreeStagings::create(roots).map_err(RestoreError::Io)?;
    let unpacked = unpack_verified(input, &mut stagings, expected, progress)?;
    stagings.place(&unpacked)?;
    Ok(unpacked)
}

/// [`unpack_into_tree`] of the tar stream `produce` writes (a contents cache's,
/// reassembled and checked content by content as it goes).
pub fn unpack_stream_into_tree(
    roots: &Roots,
    bounds: &Bounds,
    progress: &Progress,
    produce: impl FnOnce(&mut handoff::ChunkWriter) -> io::Result<()>,
) -> Result<Unpacked, RestoreError> {
    let mut stagings = TreeStagings::create(roots).map_err(RestoreError::Io)?;
    let unpacked = unpack_stream(&mut stagings, bounds, progress, produce)?;
    stagings.place(&unpacked)?;
    Ok(unpacked)
}

impl RestoreError {
    /// The compressed input ended before its expected size: the download stopped.
    pub fn is_input_cut_short(&self) -> bool {
        matches!(self, RestoreError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof)
    }

    /// What is wrong with the cache, when the archive bytes (not this job's tree,
    /// environment or machine) are to blame: what the signer is told, so that it can
    /// drop a broken cache. `None` is a local failure, of which the signer hears
    /// nothing (docs/design.md, "Healing").
    pub fn defect(&self) -> Option<CacheProblem> {
        match self {
            RestoreError::Mismatch(_) => Some(CacheProblem::Corrupt),
            RestoreError::Refused(_) | RestoreError::Corrupt(_) => Some(CacheProblem::Undecodable),
            RestoreError::Blocked(_) | RestoreError::Io(_) => None,
        }
    }
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Counts the decompressed bytes, and fails once they pass `limit`: as damage when
/// the limit was `recorded` for the archive, else as a full disk.
struct CountingReader<'a, R> {
    inner: R,
    progress: &'a Progress,
    count: u64,
    limit: u64,
    recorded: bool,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add_raw(n as u64);
        self.count += n as u64;
        if self.count > self.limit && self.recorded {
            return Err(corruption(format!(
                "the archive unpacks to more than the {} bytes recorded for it",
                self.limit
            )));
        }
        if self.count > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "the archive unpacks to more than the {} bytes free (no size was recorded for it)",
                    self.limit
                ),
            ));
        }
        Ok(n)
    }
}

struct CountingWriter<'a, W> {
    inner: W,
    progress: &'a Progress,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.progress.add_raw(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
