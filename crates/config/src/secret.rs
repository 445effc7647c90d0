use serde::Deserialize;

use crate::Environment;

/// Prefix of a value that names an environment variable instead of holding the secret.
pub const ENV_REFERENCE_PREFIX: &str = "env::";

/// A credential or header value. Written literally or as `env::NAME`; resolved during
/// validation. Never printed.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself; call only where it is sent.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Replaces an `env::NAME` reference by the variable's value.
    pub(crate) fn resolve(&mut self, environment: &Environment) -> Result<(), String> {
        let Some(name) = self.0.strip_prefix(ENV_REFERENCE_PREFIX) else {
            return Ok(());
        };
        match environment.get(name) {
            Some(value) => {
                self.0 = value.to_owned();
                Ok(())
            }
            None => Err(format!("environment variable `{name}` is not set")),
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Secret(***)")
    }
}
