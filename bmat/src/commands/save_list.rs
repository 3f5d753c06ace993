//! The paths `bmat cache save` reads on stdin: split, checked, each placed in its tree
//! (`~/…` in `$HOME`, the rest in the working directory).

use crate::archive::names::starts_reserved;
use crate::trees::paths::{PathError, RelPath, shown};
use crate::trees::roots::{Extra, Tree, TreePath};

/// Splits stdin into paths (newline- or NUL-separated; empty entries ignored),
/// places each in its tree and drops duplicates, keeping the first
/// occurrence's position. `~/…` is a path under `$HOME` (see [`crate::trees::roots`]);
/// `~user/…` is not expanded, it is a relative name like any other.
pub fn parse_list(input: &[u8], nul: bool) -> Result<Vec<TreePath>, PathError> {
    let sep = if nul { b'\0' } else { b'\n' };
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for raw in input.split(|b| *b == sep).filter(|r| !r.is_empty()) {
        let path = entry_of(raw)?;
        if seen.insert(path.clone()) {
            out.push(path);
        }
    }
    Ok(out)
}

/// The tree and path of one path given to `cache save`. `$HOME` as a whole (`~`,
/// `~/`, `~/.`) is refused: it holds credentials and everything else.
fn entry_of(raw: &[u8]) -> Result<TreePath, PathError> {
    if let Some(in_home) = raw
        .strip_prefix(b"~/")
        .or(if raw == b"~" { Some(b"") } else { None })
    {
        let inner = RelPath::from_input(in_home).map_err(|e| match e {
            PathError::Escapes(_) => PathError::EscapesHome(shown(raw)),
            other => other,
        })?;
        if inner.is_root() {
            return Err(PathError::WholeHome(shown(raw)));
        }
        return Ok(TreePath {
            tree: Tree::Extra(Extra::Home),
            path: inner,
        });
    }
    let path = RelPath::from_input(raw)?;
    if starts_reserved(&path) {
        return Err(PathError::Reserved(shown(raw)));
    }
    Ok(TreePath::main(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_split_on_the_separator_and_drop_duplicates() {
        let got = parse_list(b"a\nb/\n\n./a\nc d\n", false)
            .map(|v| v.iter().map(|p| p.to_string()).collect::<Vec<_>>());
        assert_eq!(
            got,
            Ok(vec!["a".to_owned(), "b".to_owned(), "c d".to_owned()])
        );
        let got = parse_list(b"x\ny\0line\nbreak\0x\0", true).map(|v| v.len());
        assert_eq!(got, Ok(3), "NUL mode keeps newlines inside names");
    }

    #[test]
    fn all_of_home_is_refused_a_path_inside_it_is_not() {
        for input in ["~", "~/", "~/.", "~/./", "~/a/.."] {
            let got = parse_list(format!("ok\n{input}\n").as_bytes(), false);
            assert!(
                matches!(got, Err(PathError::WholeHome(_))),
                "{input}: {got:?}"
            );
        }
        let got = parse_list(b"~/.cargo/registry\n~/./x\n", false).map(|v| v.len());
        assert_eq!(got, Ok(2));
    }

    #[test]
    fn a_list_fails_on_its_first_bad_path() {
        assert!(matches!(
            parse_list(b"ok\n/abs\n", false),
            Err(PathError::Absolute(_))
        ));
    }
}
