//! The tool's error codes, generated at build time from `data/codes.txt`, and what
//! the build was (version, target, profile).

use std::fmt;

include!(concat!(env!("OUT_DIR"), "/codes.rs"));

impl Code {
    /// Every code, in the order of `data/codes.txt`.
    pub fn all() -> impl Iterator<Item = Code> {
        TABLE.iter().map(|row| row.0)
    }

    fn row(self) -> &'static (Code, &'static str, u8, &'static str, &'static str) {
        // The table is generated in the enum's order.
        &TABLE[self as usize]
    }

    /// `E0101`.
    pub fn code(self) -> &'static str {
        self.row().1
    }

    pub fn exit_status(self) -> u8 {
        self.row().2
    }

    /// `blob-missing`.
    pub fn name(self) -> &'static str {
        self.row().3
    }

    pub fn message(self) -> &'static str {
        self.row().4
    }

    /// The code of `E0101` or of `blob-missing`.
    pub fn find(key: &str) -> Option<Code> {
        TABLE
            .iter()
            .find(|row| row.1.eq_ignore_ascii_case(key) || row.3 == key)
            .map(|row| row.0)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code(), self.name())
    }
}

/// What this build of the tool is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildInfo {
    pub version: &'static str,
    pub target: &'static str,
    pub profile: &'static str,
}

pub const BUILD: BuildInfo = BuildInfo {
    version: env!("CARGO_PKG_VERSION"),
    target: env!("BENCH_BUILD_TARGET"),
    profile: env!("BENCH_BUILD_PROFILE"),
};

impl fmt::Display for BuildInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}, {})", self.version, self.target, self.profile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_enum_agree() {
        for (i, code) in Code::all().enumerate() {
            assert_eq!(code as usize, i);
            assert_eq!(Code::find(code.code()), Some(code));
            assert_eq!(Code::find(code.name()), Some(code));
        }
        assert_eq!(Code::BlobMissing.code(), "E0101");
        assert_eq!(Code::find("e0102"), Some(Code::BlobCorrupt));
        assert_eq!(Code::find("nope"), None);
        assert!(!BUILD.target.is_empty());
    }
}
