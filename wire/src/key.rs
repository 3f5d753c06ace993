//! Cache keys: `[A-Za-z0-9._-]`, 1 to 128 characters, not starting with `.` or `-`.
//!
//! The same rule is checked by bmat (so a bad key is a usage error, exit 2, before any
//! network traffic) and again by the signer (which trusts nothing it is sent). Keys are
//! also safe to put in a URL path segment unescaped, which the API relies on.

use std::fmt;

pub const MAX_KEY_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    Empty,
    TooLong(usize),
    BadStart(char),
    BadChar(char),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Empty => write!(f, "is empty"),
            KeyError::TooLong(n) => {
                write!(
                    f,
                    "is {n} characters long; at most {MAX_KEY_LEN} are allowed"
                )
            }
            KeyError::BadStart(c) => write!(f, "must not start with {c:?}"),
            KeyError::BadChar(c) => write!(
                f,
                "contains {c:?}; only letters, digits, '.', '_' and '-' are allowed"
            ),
        }
    }
}

impl std::error::Error for KeyError {}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Checks a full cache key.
pub fn validate_key(key: &str) -> Result<(), KeyError> {
    let Some(first) = key.chars().next() else {
        return Err(KeyError::Empty);
    };
    if let Some(bad) = key.chars().find(|c| !allowed(*c)) {
        return Err(KeyError::BadChar(bad));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(KeyError::TooLong(key.len()));
    }
    if first == '.' || first == '-' {
        return Err(KeyError::BadStart(first));
    }
    Ok(())
}

/// Checks a fallback prefix: the same alphabet and start rule as a key, so every key
/// it can match is itself valid.
pub fn validate_prefix(prefix: &str) -> Result<(), KeyError> {
    validate_key(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_keys() {
        for key in [
            "a",
            "rust-deps-1.95.0-x86_64-unknown-linux-gnu-0123abcd",
            "A_b.c-9",
            &"k".repeat(128),
        ] {
            assert_eq!(validate_key(key), Ok(()), "{key}");
        }
    }

    #[test]
    fn refuses_bad_keys_with_the_reason() {
        let cases: &[(&str, KeyError)] = &[
            ("", KeyError::Empty),
            (".hidden", KeyError::BadStart('.')),
            ("-flag", KeyError::BadStart('-')),
            ("a/b", KeyError::BadChar('/')),
            ("a b", KeyError::BadChar(' ')),
            ("../x", KeyError::BadChar('/')),
            ("é", KeyError::BadChar('é')),
            ("a\0", KeyError::BadChar('\0')),
            ("a\n", KeyError::BadChar('\n')),
            ("a%2f", KeyError::BadChar('%')),
        ];
        for (key, want) in cases {
            assert_eq!(validate_key(key).as_ref(), Err(want), "{key:?}");
        }
        assert_eq!(validate_key(&"k".repeat(129)), Err(KeyError::TooLong(129)));
    }
}
