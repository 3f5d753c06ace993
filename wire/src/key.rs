//! Names the three binaries agree on: cache keys and scopes.
//!
//! - A key is `[A-Za-z0-9._-]`, 1 to 128 characters, not starting with `.` or `-`.
//! - A scope (a CI ref: `refs/heads/main`, `refs/pull/42/merge`) and an owner
//!   (`acme/widgets`) are `[A-Za-z0-9._/-]`, 1 to 256 characters, not starting with
//!   `.`, `-` or `/`.
//!
//! The same rules are checked by bmat (so a bad key is a usage error, exit 2, before any
//! network traffic) and again by the signer (which trusts nothing it is sent). Keys are
//! also safe to put in a URL path segment unescaped, which the API relies on.

use std::fmt;

pub const MAX_KEY_LEN: usize = 128;
pub const MAX_SCOPE_LEN: usize = 256;

/// The scope of caches written before scopes existed, and of `[[tokens]]` entries of
/// the signer's config that name none.
pub const DEFAULT_SCOPE: &str = "default";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    Empty,
    TooLong {
        len: usize,
        max: usize,
    },
    BadStart(char),
    /// The character found and the alphabet allowed.
    BadChar(char, &'static str),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Empty => write!(f, "is empty"),
            KeyError::TooLong { len, max } => {
                write!(f, "is {len} characters long; at most {max} are allowed")
            }
            KeyError::BadStart(c) => write!(f, "must not start with {c:?}"),
            KeyError::BadChar(c, allowed) => {
                write!(f, "contains {c:?}; only {allowed} are allowed")
            }
        }
    }
}

impl std::error::Error for KeyError {}

/// One naming rule: the alphabet, the length and the characters a name may not start with.
struct Rule {
    max: usize,
    slash: bool,
    alphabet: &'static str,
}

const KEY: Rule = Rule {
    max: MAX_KEY_LEN,
    slash: false,
    alphabet: KEY_ALPHABET,
};
const SCOPE: Rule = Rule {
    max: MAX_SCOPE_LEN,
    slash: true,
    alphabet: SCOPE_ALPHABET,
};
const KEY_ALPHABET: &str = "letters, digits, '.', '_' and '-'";
const SCOPE_ALPHABET: &str = "letters, digits, '.', '_', '-' and '/'";

impl Rule {
    fn check(&self, name: &str) -> Result<(), KeyError> {
        let Some(first) = name.chars().next() else {
            return Err(KeyError::Empty);
        };
        let allowed = |c: char| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') || (self.slash && c == '/')
        };
        if let Some(bad) = name.chars().find(|c| !allowed(*c)) {
            return Err(KeyError::BadChar(bad, self.alphabet));
        }
        if name.len() > self.max {
            return Err(KeyError::TooLong {
                len: name.len(),
                max: self.max,
            });
        }
        if matches!(first, '.' | '-' | '/') {
            return Err(KeyError::BadStart(first));
        }
        Ok(())
    }
}

/// Checks a full cache key.
pub fn validate_key(key: &str) -> Result<(), KeyError> {
    KEY.check(key)
}

/// Checks a fallback prefix: the same alphabet and start rule as a key, so every key
/// it can match is itself valid.
pub fn validate_prefix(prefix: &str) -> Result<(), KeyError> {
    KEY.check(prefix)
}

/// Checks a scope (a CI ref such as `refs/pull/42/merge`).
pub fn validate_scope(scope: &str) -> Result<(), KeyError> {
    SCOPE.check(scope)
}

/// Checks an owner name (`acme/widgets`): the scope rule.
pub fn validate_owner(owner: &str) -> Result<(), KeyError> {
    SCOPE.check(owner)
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
            ("a/b", KeyError::BadChar('/', KEY_ALPHABET)),
            ("a b", KeyError::BadChar(' ', KEY_ALPHABET)),
            ("../x", KeyError::BadChar('/', KEY_ALPHABET)),
            ("é", KeyError::BadChar('é', KEY_ALPHABET)),
            ("a\0", KeyError::BadChar('\0', KEY_ALPHABET)),
            ("a\n", KeyError::BadChar('\n', KEY_ALPHABET)),
            ("a%2f", KeyError::BadChar('%', KEY_ALPHABET)),
        ];
        for (key, want) in cases {
            assert_eq!(validate_key(key).as_ref(), Err(want), "{key:?}");
        }
        assert_eq!(
            validate_key(&"k".repeat(129)),
            Err(KeyError::TooLong { len: 129, max: 128 })
        );
    }

    #[test]
    fn scopes_are_refs() {
        for scope in [
            "refs/heads/main",
            "refs/pull/42/merge",
            DEFAULT_SCOPE,
            &"s".repeat(256),
        ] {
            assert_eq!(validate_scope(scope), Ok(()), "{scope}");
        }
        assert_eq!(validate_scope("/abs"), Err(KeyError::BadStart('/')));
        assert_eq!(validate_scope(""), Err(KeyError::Empty));
        assert_eq!(
            validate_scope("refs/heads/a b"),
            Err(KeyError::BadChar(' ', SCOPE_ALPHABET))
        );
        assert_eq!(
            validate_scope(&"s".repeat(257)),
            Err(KeyError::TooLong { len: 257, max: 256 })
        );
        assert_eq!(validate_owner("acme/widgets"), Ok(()));
    }
}
