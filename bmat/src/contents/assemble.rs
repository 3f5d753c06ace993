//! Restore: the tar stream put back together from the skeleton and the contents,
//! byte for byte what the saver's archiver wrote. Every content is checked against its
//! BLAKE3 hash as it is put back; one that does not match ends the stream as damage,
//! so the unpacker's staging is thrown away and nothing is placed.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::sync::Arc;

use super::decode::{self, Decoded, Frames};
use super::layout::Manifest;
use super::plan::Plan;
use crate::archive::corruption::corruption;
use crate::archive::handoff::{ChunkWriter, Lent};

/// A content at least this long is lent to the tar stream (its decoded frame's
/// buffer, shared) rather than copied into it; a shorter one costs less to copy than
/// the message.
const LEND_FROM: usize = 64 << 10;

/// Where the tar stream goes: the unpacker's pipe, or (tests) memory.
pub trait TarOut: Write {
    /// Puts `lent`'s bytes next in the stream; by default a copy.
    fn lend(&mut self, lent: Lent) -> io::Result<()> {
        let written = self.write_all(&lent.buf[lent.range.clone()]);
        lent.give_back();
        written
    }
}

impl TarOut for ChunkWriter {
    fn lend(&mut self, lent: Lent) -> io::Result<()> {
        ChunkWriter::lend(self, lent)
    }
}

impl TarOut for Vec<u8> {}

/// Writes the tar stream to `out`, reading frames from `frames` (the download of
/// `plan.spans`, in order; decoded on a thread of their own, see [`decode`]). The
/// manifest must be checked and `skeleton` as long as it says.
pub fn assemble(
    frames: impl Read + Send,
    skeleton: &[u8],
    m: &Manifest,
    plan: &Plan,
    out: &mut impl TarOut,
) -> io::Result<()> {
    std::thread::scope(|s| {
        // Dropped when this returns, before the scope joins: a decoder still sending
        // then stops.
        let mut decoded = decode::start(s, frames, m, plan);
        put_back(&mut decoded, skeleton, m, plan, out)
    })
}

fn put_back(
    decoded: &mut Frames,
    skeleton: &[u8],
    m: &Manifest,
    plan: &Plan,
    out: &mut impl TarOut,
) -> io::Result<()> {
    let mut held: HashMap<u32, Arc<Vec<u8>>> = HashMap::new();
    let lend = decoded.lender();
    let mut pos = 0usize;
    for (cut, step) in m.cuts.iter().zip(&plan.steps) {
        let at = cut.at as usize;
        out.write_all(&skeleton[pos..at])?;
        pos = at;
        let content = &m.contents[cut.content as usize];
        let frame = &m.frames[step.frame as usize];
        let mut hasher = blake3::Hasher::new();
        let (start, end) = (content.at, content.at + content.len);
        // Checks `range` of `buf` and puts it next in the stream.
        let mut put = |buf: &Arc<Vec<u8>>, range: Range<usize>| {
            hasher.update(&buf[range.clone()]);
            if range.len() >= LEND_FROM {
                out.lend(lend(buf, range))
            } else {
                out.write_all(&buf[range])
            }
        };
        if step.fetch && decode::in_parts(step, frame) {
            // Not held for later: straight through, only this content's bytes kept.
            let mut offset = 0u64;
            while offset < frame.raw {
                let Decoded::Part(chunk) = decoded.next()? else {
                    return Err(io::Error::other("the frame decoder sent a whole frame"));
                };
                let from = start.saturating_sub(offset).min(chunk.len() as u64) as usize;
                let to = end.saturating_sub(offset).min(chunk.len() as u64) as usize;
                offset += chunk.len() as u64;
                let chunk = Arc::new(chunk);
                if from < to {
                    put(&chunk, from..to)?;
                }
                decoded.release(chunk);
            }
        } else {
            let raw = if step.fetch {
                let Decoded::Whole(mut raw) = decoded.next()? else {
                    return Err(io::Error::other("the frame decoder sent part of a frame"));
                };
                if step.keep {
                    // Its buffer may be far larger than the frame: held frames count
                    // by their size.
                    raw.shrink_to_fit();
                }
                Arc::new(raw)
            } else {
                held.remove(&step.frame)
                    .ok_or_else(|| io::Error::other("the restore plan lost a frame"))?
            };
            put(&raw, start as usize..end as usize)?;
            if step.keep {
                held.insert(step.frame, raw);
            } else {
                decoded.release(raw);
            }
        }
        if hasher.finalize().to_hex().as_str() != content.hash {
            return Err(corruption(format!(
                "a content's bytes do not match its hash {} (object {})",
                content.hash, m.objects[frame.object as usize]
            )));
        }
    }
    out.write_all(&skeleton[pos..])?;
    Ok(())
}
