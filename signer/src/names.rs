//! Names a client gives (keys, scopes, owners, prefixes): checked against the wire's
//! rules, and quoted safely in error messages.

use bmat_wire::{KeyError, validate_key, validate_owner, validate_prefix, validate_scope};

use crate::text::shown;

/// A name that breaks the wire's rules: which name, as given, and why.
#[derive(Debug, thiserror::Error)]
#[error("invalid {what} {}: {source}", shown(.value))]
pub struct InvalidName {
    /// What the name is, in words ("key", "read scope", "fallback prefix" …).
    pub what: &'static str,
    pub value: String,
    #[source]
    pub source: KeyError,
}

fn checked(
    what: &'static str,
    value: &str,
    rule: fn(&str) -> Result<(), KeyError>,
) -> Result<(), InvalidName> {
    rule(value).map_err(|source| InvalidName {
        what,
        value: value.to_owned(),
        source,
    })
}

pub fn key(key: &str) -> Result<(), InvalidName> {
    checked("key", key, validate_key)
}

/// `what` says which scope: "scope", "read scope" …
pub fn scope(what: &'static str, scope: &str) -> Result<(), InvalidName> {
    checked(what, scope, validate_scope)
}

pub fn owner(owner: &str) -> Result<(), InvalidName> {
    checked("owner", owner, validate_owner)
}

/// `what` says which prefix: "prefix", "fallback prefix".
pub fn prefix(what: &'static str, prefix: &str) -> Result<(), InvalidName> {
    checked(what, prefix, validate_prefix)
}

/// Whether `id` is a canonical ULID: an object's name under the prefix, a ref.
pub fn is_ulid(id: &str) -> bool {
    ulid::Ulid::from_string(id).is_ok_and(|u| u.to_string() == id)
}

/// Whether `name` matches `pattern`: an exact name, or a prefix ending in `*` (`*`
/// alone matches every name). The config's owner and scope patterns.
pub fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// A list of patterns (see [`matches`]), as the config gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Patterns(pub Vec<String>);

impl Patterns {
    /// Whether any pattern matches `name`.
    pub fn matches(&self, name: &str) -> bool {
        self.0.iter().any(|p| matches(p, name))
    }
}
