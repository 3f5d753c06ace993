//! Restore: the tar stream put back together from the skeleton and the contents,
//! byte for byte what the saver's archiver wrote. Every content is checked against its
//! BLAKE3 hash as it is put back; one that does not match ends the stream as damage,
//! so the unpacker's staging is thrown away and nothing is placed.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{self, BufReader, Read, Write};

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
    let mut held: HashMap<u32, Vec<u8>> = HashMap::new();
    let mut whole = Whole::new()?;
    let mut gaps = plan.gaps.iter();
    let mut pos = 0usize;
    for (cut, step) in m.cuts.iter().zip(&plan.steps) {
        let at = cut.at as usize;
        out.write_all(&skeleton[pos..at])?;
        pos = at;
        let content = &m.contents[cut.content as usize];
        let frame = &m.frames[step.frame as usize];
        let mut hasher = blake3::Hasher::new();
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
            // Too large to hold: straight through, only this content's bytes kept.
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
        } else {
            let bytes = if step.fetch {
                whole.decode(frames, frame)?;
                if step.keep {
                    held.insert(step.frame, whole.take());
                    &held[&step.frame]
                } else {
                    whole.raw()
                }
            } else {
                held.get(&step.frame)
                    .ok_or_else(|| io::Error::other("the restore plan lost a frame"))?
            };
            let bytes = &bytes[start as usize..end as usize];
            hasher.update(bytes);
            out.write_all(bytes)?;
            if !step.keep {
                held.remove(&step.frame);
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

/// Frames up to this size (decompressed) are read whole and decompressed in one call
/// with one reused zstd context: most frames are small, and a context per frame costs
/// more than their bytes. (The saver makes no larger frame but for a file too large to
/// hold, which is streamed.)
const WHOLE: u64 = 64 << 20;

/// A frame read and decompressed whole, in buffers reused from frame to frame.
struct Whole {
    context: zstd::bulk::Decompressor<'static>,
    compressed: Vec<u8>,
    raw: Vec<u8>,
}

impl Whole {
    fn new() -> io::Result<Whole> {
        Ok(Whole {
            context: zstd::bulk::Decompressor::new()?,
            compressed: Vec::new(),
            raw: Vec::new(),
        })
    }

    /// Reads the next frame (exactly `frame.len` bytes; a read error is the download's)
    /// and decompresses it to exactly `frame.raw` bytes (anything else is damage).
    fn decode(&mut self, input: &mut impl Read, frame: &Frame) -> io::Result<()> {
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
        self.raw.clear();
        self.raw.reserve(frame.raw as usize);
        let n = self
            .context
            .decompress_to_buffer(&self.compressed[..], &mut self.raw)
            .map_err(|e| corruption(format!("a frame does not decompress: {e}")))?;
        if n as u64 != frame.raw {
            return Err(corruption(format!(
                "a frame is not the size recorded ({n} bytes from it, {} recorded)",
                frame.raw
            )));
        }
        Ok(())
    }

    fn raw(&self) -> &[u8] {
        &self.raw
    }

    fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.raw)
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
