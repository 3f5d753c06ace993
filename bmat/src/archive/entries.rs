//! Walks a tar stream entry by entry with pax (`x`) and GNU long-name (`L`) and
//! long-link (`K`) extension headers resolved, refusing an oversized one before
//! reading it.
//!
//! The tar crate's own walk reads every extension header whole into memory, whatever
//! size it claims: a 33 KB archive (zeros compress well) whose pax header claims
//! 1 GiB made a restore allocate 1 GiB. So the tar crate walks raw entries here and
//! the extension headers are read by this module, each at most [`MAX_EXTENSION`]
//! bytes, one of each kind per entry. Entries are placed by their header's size; a
//! pax `size` record that disagrees with it is refused rather than followed.

use std::io::{self, Read};

use super::corruption::{as_corruption, corruption};
use super::error::UnpackError;
use crate::trees::times::Mtime;

/// The largest extension header read (a pax header with a 4 KiB path and a 4 KiB
/// link target is about 8 KiB).
pub const MAX_EXTENSION: u64 = 64 << 10;

/// What an entry's extension headers say, merged with its own header.
#[derive(Debug)]
pub struct Names {
    pub path: Vec<u8>,
    /// Link target (symlinks and hard links).
    pub link: Option<Vec<u8>>,
    /// The pax `mtime` (nanoseconds) when present, else the header's whole seconds.
    pub mtime: Mtime,
}

/// Raw entries of an archive, extension headers folded into the entry they describe.
pub struct Entries<'a, R: Read> {
    raw: tar::Entries<'a, R>,
}

#[derive(Default)]
struct Extensions {
    pax: Option<Vec<u8>>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

impl<'a, R: Read> Entries<'a, R> {
    pub fn new(archive: &'a mut tar::Archive<R>) -> io::Result<Self> {
        Ok(Entries {
            raw: archive.entries()?.raw(true),
        })
    }

    /// The next entry and its names; `None` at the end-of-archive marker.
    pub fn next_entry(&mut self) -> Result<Option<(tar::Entry<'a, R>, Names)>, UnpackError> {
        let mut ext = Extensions::default();
        loop {
            let Some(entry) = self.raw.next() else {
                if ext.pax.is_some() || ext.long_name.is_some() || ext.long_link.is_some() {
                    return Err(corruption(
                        "the archive ends with an extension header that describes no entry",
                    )
                    .into());
                }
                return Ok(None);
            };
            // Reading the stream here only fails when the tar is damaged (or as an
            // echo of a decompression failure, which the caller reports instead).
            let mut entry = entry.map_err(as_corruption)?;
            let (slot, what) = match entry.header().entry_type().as_byte() {
                b'x' => (&mut ext.pax, "pax"),
                b'L' => (&mut ext.long_name, "GNU long name"),
                b'K' => (&mut ext.long_link, "GNU long link"),
                _ => {
                    let names = ext.resolve(&entry)?;
                    return Ok(Some((entry, names)));
                }
            };
            let shown = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let size = entry.size();
            if size > MAX_EXTENSION {
                return Err(UnpackError::Refused {
                    path: shown,
                    reason: format!(
                        "{what} extension header too large: {size} bytes, at most {MAX_EXTENSION}"
                    ),
                });
            }
            if slot.is_some() {
                return Err(UnpackError::Refused {
                    path: shown,
                    reason: format!("two {what} extension headers for one entry"),
                });
            }
            let mut data = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut data)?;
            *slot = Some(data);
        }
    }
}

impl Extensions {
    fn resolve<R: Read>(self, entry: &tar::Entry<'_, R>) -> Result<Names, UnpackError> {
        let header = entry.header();
        let pax = |key: &[u8]| -> Option<&[u8]> {
            tar::PaxExtensions::new(self.pax.as_deref()?)
                .flatten()
                .find(|e| e.key_bytes() == key)
                .map(|e| e.value_bytes())
        };
        let path = match (&self.long_name, pax(b"path")) {
            (Some(long), _) => trim_nuls(long).to_vec(),
            (None, Some(p)) => p.to_vec(),
            (None, None) => header.path_bytes().into_owned(),
        };
        let link = match (&self.long_link, pax(b"linkpath")) {
            (Some(long), _) => Some(trim_nuls(long).to_vec()),
            (None, Some(p)) => Some(p.to_vec()),
            (None, None) => header.link_name_bytes().map(|l| l.into_owned()),
        };
        let refuse = |reason: String| UnpackError::Refused {
            path: String::from_utf8_lossy(&path).into_owned(),
            reason,
        };
        if let Some(size) = pax(b"size") {
            let claimed = std::str::from_utf8(size)
                .ok()
                .and_then(|s| s.parse::<u64>().ok());
            if claimed != Some(entry.size()) {
                return Err(refuse(format!(
                    "its pax size {:?} disagrees with its header's {}",
                    String::from_utf8_lossy(size),
                    entry.size()
                )));
            }
        }
        let mtime = match pax(b"mtime")
            .and_then(|m| std::str::from_utf8(m).ok())
            .and_then(Mtime::from_pax)
        {
            Some(m) => m,
            None => {
                let secs = header.mtime()?;
                Mtime {
                    secs: secs.min(i64::MAX as u64) as i64,
                    nanos: 0,
                }
            }
        };
        Ok(Names { path, link, mtime })
    }
}

/// A GNU long name is stored with a trailing NUL.
fn trim_nuls(name: &[u8]) -> &[u8] {
    let end = name.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    &name[..end]
}
