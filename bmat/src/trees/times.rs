//! Modification times with nanoseconds: read from metadata, written to and parsed
//! from pax `mtime` records, and set on restored entries (symlinks included).

use std::ffi::CString;
use std::fs::Metadata;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Seconds since the epoch (negative before it) plus 0..1e9 nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mtime {
    pub secs: i64,
    pub nanos: u32,
}

impl Mtime {
    pub fn of(meta: &Metadata) -> Mtime {
        Mtime {
            secs: meta.mtime(),
            nanos: meta.mtime_nsec().clamp(0, 999_999_999) as u32,
        }
    }

    /// The pax decimal form: `1700000000.123456789`, `-1.5` for 1.5 s before 1970.
    pub fn to_pax(self) -> String {
        if self.secs < 0 && self.nanos > 0 {
            format!("-{}.{:09}", -(self.secs + 1), 1_000_000_000 - self.nanos)
        } else {
            format!("{}.{:09}", self.secs, self.nanos)
        }
    }

    /// Parses a pax `mtime` value (any number of decimals; extra precision dropped).
    pub fn from_pax(value: &str) -> Option<Mtime> {
        let (negative, digits) = match value.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, value),
        };
        let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let secs: i64 = whole.parse().ok()?;
        let mut nanos: u32 = 0;
        for (i, b) in frac.bytes().take(9).enumerate() {
            nanos += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
        }
        Some(if negative && nanos > 0 {
            Mtime {
                secs: -secs - 1,
                nanos: 1_000_000_000 - nanos,
            }
        } else if negative {
            Mtime {
                secs: -secs,
                nanos: 0,
            }
        } else {
            Mtime { secs, nanos }
        })
    }

    /// Nanoseconds since the epoch.
    pub fn as_nanos(self) -> i128 {
        i128::from(self.secs) * 1_000_000_000 + i128::from(self.nanos)
    }

    /// The time `nanos` since the epoch (saturating at what `secs` holds).
    pub fn from_nanos(nanos: i128) -> Mtime {
        let secs = nanos.div_euclid(1_000_000_000);
        Mtime {
            secs: i64::try_from(secs).unwrap_or(if secs < 0 { i64::MIN } else { i64::MAX }),
            nanos: nanos.rem_euclid(1_000_000_000) as u32,
        }
    }

    /// Now, by this machine's clock.
    pub fn now() -> Mtime {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Mtime::from_nanos(since.as_nanos() as i128)
    }

    /// Sets the mtime of an open file (no path lookup).
    pub fn apply_to_file(self, file: &std::fs::File) -> io::Result<()> {
        let times = std::fs::FileTimes::new().set_modified(self.to_system_time());
        file.set_times(times)
    }

    fn to_system_time(self) -> std::time::SystemTime {
        use std::time::{Duration, UNIX_EPOCH};
        if self.secs >= 0 {
            UNIX_EPOCH + Duration::new(self.secs as u64, self.nanos)
        } else {
            UNIX_EPOCH - Duration::from_secs(self.secs.unsigned_abs())
                + Duration::from_nanos(u64::from(self.nanos))
        }
    }

    /// Sets the mtime of `path` itself, never of what a symlink points to.
    pub fn apply(self, path: &Path) -> io::Result<()> {
        let c_path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
        let times = [
            libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_OMIT,
            },
            libc::timespec {
                tv_sec: self.secs as libc::time_t,
                tv_nsec: self.nanos as libc::c_long,
            },
        ];
        // SAFETY: c_path is a valid NUL-terminated string and times has the two
        // entries utimensat reads.
        let rc = unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                c_path.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_values_round_trip() {
        for m in [
            Mtime {
                secs: 1_700_000_000,
                nanos: 123_456_789,
            },
            Mtime { secs: 0, nanos: 0 },
            Mtime {
                secs: -2,
                nanos: 500_000_000,
            },
            Mtime { secs: -3, nanos: 0 },
        ] {
            assert_eq!(Mtime::from_pax(&m.to_pax()), Some(m), "{}", m.to_pax());
        }
        assert_eq!(
            Mtime {
                secs: -2,
                nanos: 500_000_000
            }
            .to_pax(),
            "-1.500000000"
        );
    }

    #[test]
    fn pax_values_from_other_writers_parse() {
        assert_eq!(
            Mtime::from_pax("1700000000"),
            Some(Mtime {
                secs: 1_700_000_000,
                nanos: 0
            })
        );
        assert_eq!(
            Mtime::from_pax("1700000000.5"),
            Some(Mtime {
                secs: 1_700_000_000,
                nanos: 500_000_000
            })
        );
        assert_eq!(
            Mtime::from_pax("1.1234567891234"),
            Some(Mtime {
                secs: 1,
                nanos: 123_456_789
            }),
            "extra digits are dropped"
        );
        assert_eq!(Mtime::from_pax("abc"), None);
        assert_eq!(Mtime::from_pax("1.2x"), None);
        assert_eq!(Mtime::from_pax(""), None);
    }

    #[test]
    fn apply_sets_a_symlink_not_its_target() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let target = dir.path().join("target");
        std::fs::write(&target, b"x")?;
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("target", &link)?;
        let before = Mtime::of(&std::fs::metadata(&target)?);
        let want = Mtime {
            secs: 1_000_000_000,
            nanos: 42,
        };
        want.apply(&link)?;
        assert_eq!(Mtime::of(&std::fs::symlink_metadata(&link)?), want);
        assert_eq!(Mtime::of(&std::fs::metadata(&target)?), before);
        Ok(())
    }
}
