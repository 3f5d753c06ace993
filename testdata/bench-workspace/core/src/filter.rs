//! Shell-style globs on '/'-separated paths, and include/exclude filters of them.

use regex::Regex;

use crate::Error;

/// A glob: `*` matches within one path component, `**` across components, `?` one
/// character, `[abc]` / `[!abc]` a class. A glob without '/' matches the file name
/// at any depth, as in `.gitignore`.
#[derive(Debug, Clone)]
pub struct Glob {
    text: String,
    re: Regex,
}

impl Glob {
    pub fn new(text: &str) -> Result<Glob, Error> {
        let anchored = text.contains('/');
        let body = translate(text.trim_start_matches('/'));
        let source = if anchored {
            format!("^{body}$")
        } else {
            format!("(^|/){body}$")
        };
        let re = Regex::new(&source).map_err(|source| Error::Pattern {
            pattern: text.to_owned(),
            source,
        })?;
        Ok(Glob {
            text: text.to_owned(),
            re,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, path: &str) -> bool {
        self.re.is_match(path)
    }
}

/// The regular expression of a glob's body.
fn translate(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len() * 2);
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                // `**/` also matches no directory at all.
                if chars.peek() == Some(&'/') {
                    chars.next();
                    out.push_str("(.*/)?");
                } else {
                    out.push_str(".*");
                }
            }
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            '[' => {
                let mut class = String::from("[");
                if matches!(chars.peek(), Some('!') | Some('^')) {
                    chars.next();
                    class.push('^');
                }
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == ']' {
                        closed = true;
                        break;
                    }
                    if c == '\\' || c == '[' {
                        class.push('\\');
                    }
                    class.push(c);
                }
                if closed {
                    out.push_str(&class);
                    out.push(']');
                } else {
                    // An unclosed '[' is a literal, as in most shells.
                    out.push_str(&regex::escape(&class.replacen('^', "!", 1)));
                }
            }
            c => out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    out
}

/// Paths to keep: those an include glob matches (all when there is none) and no
/// exclude glob does.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    include: Vec<Glob>,
    exclude: Vec<Glob>,
}

impl Filter {
    pub fn new<I, E>(include: I, exclude: E) -> Result<Filter, Error>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
        E: IntoIterator,
        E::Item: AsRef<str>,
    {
        Ok(Filter {
            include: compile(include)?,
            exclude: compile(exclude)?,
        })
    }

    pub fn accepts(&self, path: &str) -> bool {
        let included = self.include.is_empty() || self.include.iter().any(|g| g.matches(path));
        included && self.excluded_by(path).is_none()
    }

    /// The first exclude glob that matches `path`, to say why it was left out.
    pub fn excluded_by(&self, path: &str) -> Option<&Glob> {
        self.exclude.iter().find(|g| g.matches(path))
    }

    /// Whether a directory can hold nothing the filter accepts, so a scan can skip it.
    pub fn prunes_dir(&self, dir: &str) -> bool {
        self.exclude
            .iter()
            .any(|g| g.matches(dir) && !g.as_str().ends_with("/*"))
    }
}

fn compile<G>(globs: G) -> Result<Vec<Glob>, Error>
where
    G: IntoIterator,
    G::Item: AsRef<str>,
{
    globs.into_iter().map(|g| Glob::new(g.as_ref())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(text: &str) -> Glob {
        Glob::new(text).expect("glob")
    }

    #[test]
    fn globs() {
        assert!(glob("*.rs").matches("src/lib.rs"));
        assert!(glob("*.rs").matches("lib.rs"));
        assert!(!glob("src/*.rs").matches("src/bin/main.rs"));
        assert!(glob("src/**/*.rs").matches("src/main.rs"));
        assert!(glob("src/**/*.rs").matches("src/bin/x/main.rs"));
        assert!(glob("file?.[ch]").matches("a/file1.h"));
        assert!(!glob("file[!0-9].c").matches("file1.c"));
        assert!(glob("a[b").matches("a[b"));
        assert!(glob("v1.0").matches("v1.0") && !glob("v1.0").matches("v1x0"));
    }

    #[test]
    fn filters() {
        let f = Filter::new(["*.rs", "Cargo.*"], ["target/**"]).expect("filter");
        assert!(f.accepts("src/lib.rs"));
        assert!(f.accepts("Cargo.toml"));
        assert!(!f.accepts("README.md"));
        assert!(!f.accepts("target/debug/build.rs"));
        assert!(f.prunes_dir("target/debug"));
        assert!(Filter::new(["["], [""; 0]).is_ok());
    }
}
