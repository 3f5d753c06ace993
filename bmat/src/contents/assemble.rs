//! Restore: the tar stream put back together from the skeleton and the contents,
//! byte for byte what the saver's archiver wrote. Every content is checked against its
//! BLAKE3 hash as it is put back; one that does not match ends the stream as damage,
//! so the unpacker's staging is thrown away and nothing is placed.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{self, BufReader, Read, Write};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::layout::{Frame, Manifest};
use super::plan::Plan;
use crate::archive::corruption::corruption;
use crate::archive::stream::Watched;

/// Writes the tar stream to `out`, reading frames from `frames` (the download of
/// `plan.spans`, in order). The manifest must be checked and `skeleton` as long as it
/// says.
pub fn assemble(
    frames: &mut impl Read,
    skeleton: &[u8],
    m: &Manifest,
    plan: &Plan,
    out: &mut impl Write,
) -> io::Result<()> {
    // Contents of frames read whole are hashed on a thread of their own, beside the
    // decompression here and the unpacker: hashing every byte is the one cost an
    // archive's restore does not have. Its verdict comes before this returns, so before
    // anything is placed.
    std::thread::scope(|s| {
        let (to_check, checks) = sync_channel::<Check>(CHECKS_QUEUED);
        let checker = s.spawn(move || check_all(checks, m));
        let written = put_back(frames, skeleton, m, plan, out, &to_check);
        drop(to_check);
        let checked = checker
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the content checker panicked")));
        written.and(checked)
    })
}

/// Contents queued for the checker, at most (each holds its frame: a few MiB).
const CHECKS_QUEUED: usize = 4;

/// A content to check: its bytes are `bytes[at..at + len]`.
struct Check {
    bytes: Arc<Vec<u8>>,
    content: u32,
}

fn check_all(checks: Receiver<Check>, m: &Manifest) -> io::Result<()> {
    for check in checks {
        let content = &m.contents[check.content as usize];
        let bytes = &check.bytes[content.at as usize..(content.at + content.len) as usize];
        verify(blake3::hash(bytes), m, check.content)?;
    }
    Ok(())
}

fn verify(hash: blake3::Hash, m: &Manifest, content: u32) -> io::Result<()> {
    let content = &m.contents[content as usize];
    if hash.to_hex().as_str() == content.hash {
        return Ok(());
    }
    let frame = &m.frames[content.frame as usize];
    Err(corruption(format!(
        "a content's bytes do not match its hash {} (object {})",
        content.hash, m.objects[frame.object as usize]
    )))
}

fn put_back(
    frames: &mut impl Read,
    skeleton: &[u8],
    m: &Manifest,
    plan: &Plan,
    out: &mut impl Write,
    to_check: &SyncSender<Check>,
) -> io::Result<()> {
    let mut held: HashMap<u32, Arc<Vec<u8>>> = HashMap::new();
    let mut whole = Whole::new()?;
    let mut gaps = plan.gaps.iter();
    let mut pos = 0usize;
    for (cut, step) in m.cuts.iter().zip(&plan.steps) {
        let at = cut.at as usize;
        out.write_all(&skeleton[pos..at])?;
        pos = at;
        let content = &m.contents[cut.content as usize];
        let frame = &m.frames[step.frame as usize];
        let (start, end) = (content.at, content.at + content.len);
        if step.fetch {
            // The bytes between this frame and the last one of the same range.
            let gap = gaps.next().copied().unwrap_or(0);
            if io::copy(&mut frames.by_ref().take(gap), &mut io::sink())? != gap {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "download interrupted",
                ));
            }
        }
        if step.fetch && !step.keep && frame.raw > WHOLE {
            // Too large to hold: straight through, only this content's bytes kept,
            // hashed here.
            let mut hasher = blake3::Hasher::new();
            let mut offset = 0u64;
            decode(frames, frame, |chunk| {
                let from = start.saturating_sub(offset).min(chunk.len() as u64) as usize;
                let to = end.saturating_sub(offset).min(chunk.len() as u64) as usize;
                offset += chunk.len() as u64;
                if from < to {
                    hasher.update(&chunk[from..to]);
                    out.write_all(&chunk[from..to])?;
                }
                Ok(())
            })?;
            verify(hasher.finalize(), m, cut.content)?;
            continue;
        }
        let bytes = if step.fetch {
            Arc::new(whole.decode(frames, frame)?)
        } else {
            held.get(&step.frame)
                .cloned()
                .ok_or_else(|| io::Error::other("the restore plan lost a frame"))?
        };
        out.write_all(&bytes[start as usize..end as usize])?;
        if step.keep {
            held.insert(step.frame, bytes.clone());
        } else {
            held.remove(&step.frame);
        }
        if to_check
            .send(Check {
                bytes,
                content: cut.content,
            })
            .is_err()
        {
            // The checker stopped at a mismatch: its error is the one returned.
            return Ok(());
        }
    }
    out.write_all(&skeleton[pos..])?;
    Ok(())
}

/// Frames up to this size (decompressed) are read whole and decompressed in one call
/// with one reused zstd context: most frames are small, and a context per frame costs
/// more than their bytes. (The saver makes no larger frame but for a file too large to
/// hold, which is streamed.)
const WHOLE: u64 = 64 << 20;

/// A frame read and decompressed whole, with one zstd context and one buffer for the
/// compressed bytes reused from frame to frame.
struct Whole {
    context: zstd::bulk::Decompressor<'static>,
    compressed: Vec<u8>,
}

impl Whole {
    fn new() -> io::Result<Whole> {
        Ok(Whole {
            context: zstd::bulk::Decompressor::new()?,
            compressed: Vec::new(),
        })
    }

    /// Reads the next frame (exactly `frame.len` bytes; a read error is the download's)
    /// and decompresses it to exactly `frame.raw` bytes (anything else is damage).
    fn decode(&mut self, input: &mut impl Read, frame: &Frame) -> io::Result<Vec<u8>> {
        self.compressed.clear();
        let read = input
            .by_ref()
            .take(frame.len)
            .read_to_end(&mut self.compressed)?;
        if read as u64 != frame.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "download interrupted",
            ));
        }
        let mut raw = Vec::with_capacity(frame.raw as usize);
        let n = self
            .context
            .decompress_to_buffer(&self.compressed[..], &mut raw)
            .map_err(|e| corruption(format!("a frame does not decompress: {e}")))?;
        if n as u64 != frame.raw {
            return Err(corruption(format!(
                "a frame is not the size recorded ({n} bytes from it, {} recorded)",
                frame.raw
            )));
        }
        Ok(raw)
    }
}

/// Decompresses the next frame of `input` (exactly `frame.len` bytes, exactly
/// `frame.raw` once decompressed), handing the bytes to `sink`. A read error is the
/// download's; anything zstd or the sizes object to is damage.
fn decode(
    input: &mut impl Read,
    frame: &Frame,
    mut sink: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let failed = Cell::new(None);
    let watched = Watched {
        inner: input.by_ref().take(frame.len),
        failed: &failed,
    };
    let damaged = |e: io::Error, failed: &Cell<Option<io::Error>>| {
        failed
            .take()
            .unwrap_or_else(|| corruption(format!("a frame does not decompress: {e}")))
    };
    let mut decoder = zstd::stream::read::Decoder::with_buffer(BufReader::new(watched))
        .map_err(|e| damaged(e, &failed))?
        .single_frame();
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    loop {
        let n = match decoder.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(damaged(e, &failed)),
        };
        total += n as u64;
        if total > frame.raw {
            return Err(corruption("a frame decompresses to more than recorded"));
        }
        sink(&buf[..n])?;
    }
    let mut rest = decoder.finish();
    let left = rest.buffer().len() as u64 + io::copy(rest.get_mut(), &mut io::sink())?;
    if let Some(e) = failed.take() {
        return Err(e);
    }
    if total != frame.raw || left != 0 {
        return Err(corruption(format!(
            "a frame is not the size recorded ({total} bytes from it, {} recorded; {left} compressed bytes after it)",
            frame.raw
        )));
    }
    Ok(())
}
