//! Restore: the tar stream put back together from the skeleton and the contents,
//! byte for byte what the saver's archiver wrote. Every content is checked against its
//! BLAKE3 hash as it is put back; one that does not match ends the stream as damage,
//! so the unpacker's staging is thrown away and nothing is placed.

use std::collections::HashMap;
use std::io::{self, Read, Write};

use super::decode::{self, Decoded, Frames};
use super::layout::Manifest;
use super::plan::Plan;
use crate::archive::corruption::corruption;

/// Writes the tar stream to `out`, reading frames from `frames` (the download of
/// `plan.spans`, in order; decoded on a thread of their own, see [`decode`]). The
/// manifest must be checked and `skeleton` as long as it says.
pub fn assemble(
    frames: impl Read + Send,
    skeleton: &[u8],
    m: &Manifest,
    plan: &Plan,
    out: &mut impl Write,
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
    out: &mut impl Write,
) -> io::Result<()> {
    let mut held: HashMap<u32, Vec<u8>> = HashMap::new();
    let mut pos = 0usize;
    for (cut, step) in m.cuts.iter().zip(&plan.steps) {
        let at = cut.at as usize;
        out.write_all(&skeleton[pos..at])?;
        pos = at;
        let content = &m.contents[cut.content as usize];
        let frame = &m.frames[step.frame as usize];
        let mut hasher = blake3::Hasher::new();
        let (start, end) = (content.at, content.at + content.len);
        let mut put = |bytes: &[u8]| {
            hasher.update(bytes);
            out.write_all(bytes)
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
                if from < to {
                    put(&chunk[from..to])?;
                }
                decoded.recycle(chunk);
            }
        } else {
            let raw = if step.fetch {
                let Decoded::Whole(raw) = decoded.next()? else {
                    return Err(io::Error::other("the frame decoder sent part of a frame"));
                };
                raw
            } else {
                held.remove(&step.frame)
                    .ok_or_else(|| io::Error::other("the restore plan lost a frame"))?
            };
            put(&raw[start as usize..end as usize])?;
            if step.keep {
                // Its buffer may be far larger than the frame (see `decode`): held
                // frames count by their size.
                let mut raw = raw;
                raw.shrink_to_fit();
                held.insert(step.frame, raw);
            } else {
                decoded.recycle(raw);
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
