//! Layers of settings merged over the defaults, later layers winning, each setting
//! remembering the layer it came from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::{Config, Error};

/// Where a setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(PathBuf),
    Env,
    Args,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Env => f.write_str("environment"),
            Origin::Args => f.write_str("command line"),
        }
    }
}

/// Settings as a JSON object of sections. A key ending in `+` appends to a list
/// instead of replacing it (`"exclude+": ["*.log"]`).
#[derive(Debug, Clone)]
pub struct Layer {
    pub origin: Origin,
    values: Map<String, Value>,
}

/// The environment variables read, as `BENCH_<SECTION>_<KEY>`.
const ENV_PREFIX: &str = "BENCH_";

impl Layer {
    pub fn new(origin: Origin) -> Layer {
        Layer {
            origin,
            values: Map::new(),
        }
    }

    /// A JSON configuration file.
    pub fn from_file(path: &Path) -> Result<Layer, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let origin = Origin::File(path.to_owned());
        match serde_json::from_str(&text) {
            Ok(Value::Object(values)) => Ok(Layer { origin, values }),
            Ok(_) => Err(Error::Key {
                origin,
                key: String::new(),
                reason: "the file is not a JSON object",
            }),
            Err(source) => Err(Error::Json { origin, source }),
        }
    }

    /// `BENCH_STORE_LEVEL=5`, `BENCH_SCAN_EXCLUDE=*.log,*.tmp`: variables of other
    /// names are ignored.
    pub fn from_env<I>(vars: I) -> Result<Layer, Error>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut layer = Layer::new(Origin::Env);
        for (name, raw) in vars {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let Some((section, key)) = rest.split_once('_') else {
                continue;
            };
            let key = format!("{}.{}", section.to_lowercase(), key.to_lowercase());
            layer.set(&key, &raw)?;
        }
        Ok(layer)
    }

    /// `section.key=value` pairs, as given with `--set`.
    pub fn from_args<'a>(pairs: impl IntoIterator<Item = &'a str>) -> Result<Layer, Error> {
        let mut layer = Layer::new(Origin::Args);
        for pair in pairs {
            let (key, raw) = pair.split_once('=').ok_or_else(|| Error::Key {
                origin: Origin::Args,
                key: pair.to_owned(),
                reason: "expected section.key=value",
            })?;
            layer.set(key.trim(), raw.trim())?;
        }
        Ok(layer)
    }

    /// Sets `section.key` from text: JSON when it parses as JSON (`5`, `true`,
    /// `null`), a list when the default is a list (comma-separated), else a string.
    pub fn set(&mut self, dotted: &str, raw: &str) -> Result<(), Error> {
        let bad = |reason| Error::Key {
            origin: self.origin.clone(),
            key: dotted.to_owned(),
            reason,
        };
        let (section, key) = dotted
            .split_once('.')
            .ok_or_else(|| bad("expected section.key"))?;
        let defaults = serde_json::to_value(Config::default()).map_err(|source| Error::Json {
            origin: Origin::Default,
            source,
        })?;
        let default = defaults
            .get(section)
            .and_then(|s| s.get(key.trim_end_matches('+')))
            .ok_or_else(|| bad("no such setting"))?;
        let value = if default.is_array() {
            Value::Array(
                raw.split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_owned()))
                    .collect(),
            )
        } else {
            serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
        };
        let section = self
            .values
            .entry(section)
            .or_insert_with(|| Value::Object(Map::new()));
        match section {
            Value::Object(map) => {
                map.insert(key.to_owned(), value);
                Ok(())
            }
            _ => Err(bad("section is not an object")),
        }
    }
}

/// A configuration and, by `section.key`, where each setting came from.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub config: Config,
    pub origins: BTreeMap<String, Origin>,
}

impl Resolved {
    pub fn origin(&self, key: &str) -> &Origin {
        self.origins.get(key).unwrap_or(&Origin::Default)
    }
}

/// The defaults with `layers` merged over them in order, validated.
pub fn resolve(layers: &[Layer]) -> Result<Resolved, Error> {
    let json = |origin: &Origin| {
        let origin = origin.clone();
        move |source| Error::Json { origin, source }
    };
    let mut merged =
        match serde_json::to_value(Config::default()).map_err(json(&Origin::Default))? {
            Value::Object(map) => map,
            _ => unreachable!("Config serialises to an object"),
        };
    let mut origins = BTreeMap::new();
    for layer in layers {
        merge(&mut merged, &layer.values, "", &layer.origin, &mut origins);
    }
    let last = layers.last().map_or(Origin::Default, |l| l.origin.clone());
    let config: Config = serde_json::from_value(Value::Object(merged)).map_err(json(&last))?;
    let problems = crate::validate::check(&config);
    if !problems.is_empty() {
        return Err(Error::Invalid { problems });
    }
    Ok(Resolved { config, origins })
}

fn merge(
    into: &mut Map<String, Value>,
    from: &Map<String, Value>,
    prefix: &str,
    origin: &Origin,
    origins: &mut BTreeMap<String, Origin>,
) {
    for (key, value) in from {
        let (key, append) = match key.strip_suffix('+') {
            Some(key) => (key, true),
            None => (key.as_str(), false),
        };
        let path = format!("{prefix}{key}");
        match (into.get_mut(key), value) {
            (Some(Value::Object(inner)), Value::Object(value)) => {
                merge(inner, value, &format!("{path}."), origin, origins);
            }
            (Some(Value::Array(list)), Value::Array(more)) if append => {
                list.extend(more.iter().cloned());
                origins.insert(path, origin.clone());
            }
            _ => {
                into.insert(key.to_owned(), value.clone());
                origins.insert(path, origin.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_layers_win_and_lists_append() {
        let env = Layer::from_env([
            ("BENCH_STORE_LEVEL".to_owned(), "9".to_owned()),
            ("BENCH_SCAN_EXCLUDE+".to_owned(), "*.log,*.tmp".to_owned()),
            ("HOME".to_owned(), "/root".to_owned()),
        ])
        .expect("env");
        let args = Layer::from_args(["store.level=12", "report.format=json"]).expect("args");
        let resolved = resolve(&[env, args]).expect("resolve");
        let config = &resolved.config;
        assert_eq!(config.store.level, 12);
        assert_eq!(config.report.format, crate::Format::Json);
        assert_eq!(config.scan.exclude.len(), 5);
        assert_eq!(resolved.origin("store.level"), &Origin::Args);
        assert_eq!(resolved.origin("scan.exclude"), &Origin::Env);
        assert_eq!(resolved.origin("sync.verify"), &Origin::Default);
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(Layer::from_args(["store.colour=1"]).is_err());
        assert!(Layer::from_args(["level"]).is_err());
        let args = Layer::from_args(["store.level=40", "sync.concurrency=0"]).expect("args");
        match resolve(&[args]) {
            Err(Error::Invalid { problems }) => assert_eq!(problems.len(), 2),
            other => panic!("expected invalid, got {other:?}"),
        }
    }
}
