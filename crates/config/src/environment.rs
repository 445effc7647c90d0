use std::collections::BTreeMap;

use crate::{ConfigError, ConfigErrors};

/// Prefix of variables that override configuration keys: `LANDFALL__SERVER__LISTEN` sets
/// `server.listen`. Each `__` separates one level; names are lower-cased.
pub const OVERRIDE_PREFIX: &str = "LANDFALL__";

/// The environment the configuration is resolved against: secret references and overrides.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    variables: BTreeMap<String, String>,
}

impl Environment {
    /// The process environment.
    #[must_use]
    pub fn from_process() -> Self {
        Self::from_pairs(std::env::vars())
    }

    /// An explicit set of variables (tests, embedding).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            variables: pairs
                .into_iter()
                .map(|(key, value)| (key.into(), value.into()))
                .collect(),
        }
    }

    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.variables.get(name).map(String::as_str)
    }

    /// Writes every `LANDFALL__…` variable into the table. A value that parses as a TOML value
    /// (`8080`, `true`, `["a"]`, `{ x = 1 }`) is taken as such; anything else is a string.
    pub(crate) fn apply_overrides(&self, table: &mut toml::Table) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        for (name, raw) in self.variables.range(OVERRIDE_PREFIX.to_owned()..) {
            let Some(key_path) = name.strip_prefix(OVERRIDE_PREFIX) else {
                break;
            };
            let segments: Vec<String> = key_path.split("__").map(str::to_lowercase).collect();
            if segments.iter().any(String::is_empty) {
                errors.push(ConfigError {
                    path: name.clone(),
                    message: "empty key segment in override variable".to_owned(),
                });
                continue;
            }
            if let Err(message) = set_path(table, &segments, parse_value(raw)) {
                errors.push(ConfigError {
                    path: name.clone(),
                    message,
                });
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

fn parse_value(raw: &str) -> toml::Value {
    format!("value = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut table| table.remove("value"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn set_path(
    table: &mut toml::Table,
    segments: &[String],
    value: toml::Value,
) -> Result<(), String> {
    let Some((last, parents)) = segments.split_last() else {
        return Err("empty key".to_owned());
    };
    let mut current = table;
    for (depth, segment) in parents.iter().enumerate() {
        let entry = current
            .entry(segment.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(next) = entry else {
            return Err(format!("`{}` is not a table", segments[..=depth].join(".")));
        };
        current = next;
    }
    current.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_create_nested_tables_and_parse_values() {
        let environment = Environment::from_pairs([
            ("LANDFALL__SERVER__LISTEN", "0.0.0.0:9000"),
            ("LANDFALL__ROUTING__MAX_ATTEMPTS", "7"),
            ("LANDFALL__PROVIDERS__LOCAL__HEADERS", "{ x = \"y\" }"),
            ("OTHER", "ignored"),
        ]);
        let mut table = toml::Table::new();
        environment.apply_overrides(&mut table).unwrap();
        assert_eq!(table["server"]["listen"].as_str(), Some("0.0.0.0:9000"));
        assert_eq!(table["routing"]["max_attempts"].as_integer(), Some(7));
        assert_eq!(
            table["providers"]["local"]["headers"]["x"].as_str(),
            Some("y")
        );
        assert!(!table.contains_key("other"));
    }

    #[test]
    fn override_through_a_scalar_is_an_error() {
        let environment = Environment::from_pairs([("LANDFALL__SERVER__LISTEN__X", "1")]);
        let mut table: toml::Table = "[server]\nlisten = \"a\"".parse().unwrap();
        let errors = environment.apply_overrides(&mut table).unwrap_err();
        assert_eq!(errors.0[0].path, "LANDFALL__SERVER__LISTEN__X");
    }
}
