//! Content-defined chunks of a file: FastCDC (2020), 1 MiB on average, between
//! 256 KiB and 4 MiB. An edit moves the boundaries near it only, so the chunks of a
//! file that changed in one place are mostly the old ones.

use std::ops::Range;

use fastcdc::v2020::FastCDC;

pub const MIN: u32 = 256 << 10;
pub const AVG: u32 = 1 << 20;
pub const MAX: u32 = 4 << 20;

/// The chunks of `data`, in order and covering it; data smaller than [`MIN`] is one
/// chunk (an empty file too).
pub fn boundaries(data: &[u8]) -> Vec<Range<usize>> {
    if data.len() < MIN as usize {
        return std::iter::once(0..data.len()).collect();
    }
    FastCDC::new(data, MIN, AVG, MAX)
        .map(|c| c.offset..c.offset + c.length)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic bytes without structure (xorshift), so chunking has something
    /// to find.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn small_data_is_one_chunk() {
        assert_eq!(boundaries(&[]), vec![0..0]);
        assert_eq!(boundaries(&[7; 1000]), vec![0..1000]);
    }

    #[test]
    fn chunks_cover_the_data_within_bounds_and_survive_an_insertion() {
        let data = noise(12 << 20, 42);
        let chunks = boundaries(&data);
        assert!(chunks.len() > 3, "{} chunks", chunks.len());
        assert_eq!(chunks[0].start, 0);
        assert_eq!(chunks.last().map(|c| c.end), Some(data.len()));
        for pair in chunks.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
        for c in &chunks[..chunks.len() - 1] {
            assert!((MIN as usize..=MAX as usize).contains(&c.len()), "{c:?}");
        }
        // Bytes inserted near the start: every chunk after the first few is kept.
        let mut edited = b"a few new bytes".to_vec();
        edited.extend_from_slice(&data);
        let old: std::collections::HashSet<&[u8]> =
            chunks.iter().map(|c| &data[c.clone()]).collect();
        let kept = boundaries(&edited)
            .into_iter()
            .filter(|c| old.contains(&edited[c.clone()]))
            .count();
        assert!(kept >= chunks.len() - 2, "{kept} of {} kept", chunks.len());
    }
}
