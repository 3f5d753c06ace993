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
    let mut pos = 0usize;
    for (cut, step) in m.cuts.iter().zip(&plan.steps) {
        let at = cut.at as usize;
        out.write_all(&skeleton[pos..at])?;
        pos = at;
        let content = &m.contents[cut.content as usize];
        let frame = &m.frames[step.frame as usize];
        let mut hasher = blake3::Hasher::new();
        let (start, end) = (content.at, content.at + content.len);
        if step.fetch && !step.keep {
            // Straight through: only this content's bytes are kept from the frame.
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
            if step.fetch {
                let mut whole = Vec::with_capacity(frame.raw as usize);
                decode(frames, frame, |chunk| {
                    whole.extend_from_slice(chunk);
                    Ok(())
                })?;
                held.insert(step.frame, whole);
            }
            let Some(bytes) = held.get(&step.frame) else {
                return Err(io::Error::other("the restore plan lost a frame"));
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
