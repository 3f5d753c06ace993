//! How the signer words things for people: client strings quoted safely, an error and
//! its causes on one line.

use std::error::Error;

/// A key (or any client string) quoted for an error message: escaped, one line, not
/// absurdly long.
pub fn shown(s: &str) -> String {
    const MAX: usize = 140;
    if s.chars().count() > MAX {
        let head: String = s.chars().take(MAX).collect();
        format!("{head:?}…")
    } else {
        format!("{s:?}")
    }
}

/// `e` and each of its causes, joined by ": ", on one line (as `{:#}` shows an
/// `anyhow::Error`).
pub fn chain(e: &dyn Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_keys_stay_on_one_line() {
        assert_eq!(shown("a\nb"), "\"a\\nb\"");
        assert!(shown(&"k".repeat(500)).len() < 200);
    }
}
