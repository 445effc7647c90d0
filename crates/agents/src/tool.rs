//! The [`Tool`] trait and the [`Toolbox`] a run may use.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use serde_json::Value;

use crate::error::ToolError;

/// What the model is told about a tool.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// `[A-Za-z0-9_-]{1,64}`, unique in a toolbox.
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: Value,
    /// Whether a call changes something outside (sends e-mail, opens a ticket): such tools
    /// can be made to wait for a person's approval.
    pub sensitive: bool,
}

/// Who a call runs for, and until when.
#[derive(Debug, Clone)]
pub struct ToolContext {
    pub tenant_id: String,
    pub key_id: String,
    /// The request's id, for the tool's own logs and outbound headers.
    pub request_id: String,
    /// When the call must have returned (its timeout or the run's deadline, the earlier).
    pub deadline: Instant,
}

/// What a tool returned.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ToolOutput {
    /// What the model reads as the observation.
    pub text: String,
    /// Structured results for the client (a search's hits, a table's rows), when the tool
    /// has them.
    pub data: Option<Value>,
}

impl ToolOutput {
    #[must_use]
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            data: None,
        }
    }
}

/// A tool the loop can run.
///
/// Guarantees expected of implementations: `call` returns by the context's deadline or soon
/// after (the loop also enforces it by dropping the future); it never panics on any
/// arguments that match its schema; every outbound call it makes has its own timeout.
#[async_trait]
pub trait Tool: Send + Sync {
    fn spec(&self) -> &ToolSpec;

    /// Runs the tool with arguments already validated against `spec().parameters`.
    ///
    /// # Errors
    /// Any [`ToolError`]; it becomes the observation the model reads.
    async fn call(&self, arguments: Value, context: &ToolContext) -> Result<ToolOutput, ToolError>;
}

/// The tools one run may call, each with its compiled argument schema.
#[derive(Clone, Default)]
pub struct Toolbox {
    tools: Vec<Entry>,
}

#[derive(Clone)]
struct Entry {
    tool: Arc<dyn Tool>,
    validator: Arc<jsonschema::Validator>,
}

impl std::fmt::Debug for Toolbox {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_list()
            .entries(self.tools.iter().map(|entry| &entry.tool.spec().name))
            .finish()
    }
}

impl Toolbox {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `tool`, replacing a tool of the same name.
    ///
    /// # Errors
    /// When its parameter schema is not a valid JSON Schema.
    pub fn add(&mut self, tool: Arc<dyn Tool>) -> Result<(), String> {
        let spec = tool.spec();
        let validator = jsonschema::validator_for(&spec.parameters)
            .map_err(|error| format!("tool `{}`: invalid parameter schema: {error}", spec.name))?;
        let name = spec.name.clone();
        self.tools.retain(|entry| entry.tool.spec().name != name);
        self.tools.push(Entry {
            tool,
            validator: Arc::new(validator),
        });
        Ok(())
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    pub fn specs(&self) -> impl Iterator<Item = &ToolSpec> {
        self.tools.iter().map(|entry| entry.tool.spec())
    }

    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.entry(name).map(|entry| &entry.tool)
    }

    fn entry(&self, name: &str) -> Option<&Entry> {
        self.tools
            .iter()
            .find(|entry| entry.tool.spec().name == name)
    }

    /// Parses and validates the model's argument text for `name`.
    ///
    /// # Errors
    /// `Unknown` for a tool not in the box, `InvalidArguments` for text that is not a JSON
    /// object matching the schema (the message names the first violation and its path).
    pub fn arguments(&self, name: &str, text: &str) -> Result<Value, ToolError> {
        let Some(entry) = self.entry(name) else {
            return Err(ToolError::Unknown {
                name: name.to_owned(),
            });
        };
        let trimmed = text.trim();
        let value: Value = if trimmed.is_empty() {
            Value::Object(serde_json::Map::new())
        } else {
            serde_json::from_str(trimmed).map_err(|error| ToolError::InvalidArguments {
                message: format!("not valid JSON: {error}"),
            })?
        };
        if !value.is_object() {
            return Err(ToolError::InvalidArguments {
                message: "arguments must be a JSON object".to_owned(),
            });
        }
        if let Some(error) = entry.validator.iter_errors(&value).next() {
            let path = error.instance_path().to_string();
            let at = if path.is_empty() {
                String::new()
            } else {
                format!(" at {path}")
            };
            return Err(ToolError::InvalidArguments {
                message: format!("{error}{at}"),
            });
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use serde_json::json;

    struct Echo(ToolSpec);

    #[async_trait]
    impl Tool for Echo {
        fn spec(&self) -> &ToolSpec {
            &self.0
        }
        async fn call(&self, arguments: Value, _: &ToolContext) -> Result<ToolOutput, ToolError> {
            Ok(ToolOutput::text(arguments.to_string()))
        }
    }

    fn toolbox() -> Toolbox {
        let mut toolbox = Toolbox::new();
        toolbox
            .add(Arc::new(Echo(ToolSpec {
                name: "lookup".to_owned(),
                description: "d".to_owned(),
                parameters: json!({"type": "object", "properties": {"sku": {"type": "string"}},
                    "required": ["sku"], "additionalProperties": false}),
                sensitive: false,
            })))
            .unwrap();
        toolbox
    }

    #[test]
    fn arguments_are_checked_against_the_schema() {
        let toolbox = toolbox();
        assert_eq!(
            toolbox.arguments("lookup", r#"{"sku":"A1"}"#).unwrap(),
            json!({"sku": "A1"})
        );
        let cases = [
            ("lookup", r#"{"sku":1}"#, "invalid_arguments"),
            ("lookup", "{}", "invalid_arguments"),
            ("lookup", r#"{"sku":"a","x":1}"#, "invalid_arguments"),
            ("lookup", "[1]", "invalid_arguments"),
            ("lookup", "{not json", "invalid_arguments"),
            ("send_email", "{}", "unknown_tool"),
        ];
        for (name, text, kind) in cases {
            let error = toolbox.arguments(name, text).unwrap_err();
            assert_eq!(error.kind(), kind, "{name} {text}: {error}");
        }
    }

    #[test]
    fn a_bad_schema_is_refused() {
        let mut toolbox = Toolbox::new();
        let error = toolbox
            .add(Arc::new(Echo(ToolSpec {
                name: "x".to_owned(),
                description: String::new(),
                parameters: json!({"type": "no-such-type"}),
                sensitive: false,
            })))
            .unwrap_err();
        assert!(error.contains("invalid parameter schema"), "{error}");
    }
}
