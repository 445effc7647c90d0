//! Prompt templates: a named, versioned description of an assistant — role, task,
//! constraints, output format and few-shot examples — written in minijinja and rendered with
//! variables the template declares as a JSON Schema.
//!
//! [`PromptTemplate::compile`] checks a template once (every section parses, every variable it
//! uses is declared, the schema is valid); [`CompiledPrompt::render`] fills in defaults,
//! validates the variables and renders the sections into a system message followed by the
//! examples as user/assistant turns. Rendering is sandboxed: minijinja reads no files, and a
//! fuel budget bounds loops so a template cannot hang the server.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use landfall_types::{ChatMessage, Role};
use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Instructions a render may execute; enough for any reasonable loop over variables.
const FUEL: u64 = 200_000;
/// Largest rendered prompt, in bytes.
const MAX_RENDERED_BYTES: usize = 256 * 1024;

/// A template as operators write it (the body of the admin API).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptTemplate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Tenants that may use it; empty means every tenant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<String>,
    /// Who the assistant is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Rules it keeps, one per entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    /// How the answer is shaped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_format: Option<String>,
    /// Few-shot examples, sent as user and assistant turns after the system message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<Example>,
    /// A JSON Schema of the variables (an object schema); `default`s of its properties fill in
    /// what a caller leaves out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variables: Option<Value>,
}

/// One few-shot example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    pub input: String,
    pub output: String,
}

/// Why a template cannot be saved, or a render failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptError {
    /// The template itself is wrong (syntax, schema, an undeclared variable).
    #[error("{message}")]
    Template { message: String },
    /// The variables do not match the template's schema.
    #[error("{message}")]
    Variables { message: String },
}

fn template_error(message: impl Into<String>) -> PromptError {
    PromptError::Template {
        message: message.into(),
    }
}

fn variables_error(message: impl Into<String>) -> PromptError {
    PromptError::Variables {
        message: message.into(),
    }
}

/// A rendered prompt: the system message and the few-shot turns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RenderedPrompt {
    pub instructions: String,
    pub examples: Vec<(String, String)>,
}

impl RenderedPrompt {
    /// The chat messages to put before the conversation.
    #[must_use]
    pub fn messages(&self) -> Vec<ChatMessage> {
        let mut messages = Vec::with_capacity(1 + 2 * self.examples.len());
        if !self.instructions.is_empty() {
            messages.push(ChatMessage::text(Role::System, &self.instructions));
        }
        for (input, output) in &self.examples {
            messages.push(ChatMessage::text(Role::User, input));
            messages.push(ChatMessage::text(Role::Assistant, output));
        }
        messages
    }
}

/// A checked template, ready to render many times.
#[derive(Debug)]
pub struct CompiledPrompt {
    template: PromptTemplate,
    validator: jsonschema::Validator,
    /// Property defaults from the schema.
    defaults: Map<String, Value>,
}

impl PromptTemplate {
    /// Checks the template.
    ///
    /// # Errors
    /// [`PromptError::Template`] when a section does not parse, uses a variable the schema
    /// does not declare, or the schema is not an object schema.
    pub fn compile(self) -> Result<CompiledPrompt, PromptError> {
        let schema = self
            .variables
            .clone()
            .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}}));
        if schema.get("type").and_then(Value::as_str) != Some("object") {
            return Err(template_error(
                "`variables` must be a JSON Schema with \"type\": \"object\"",
            ));
        }
        let validator = jsonschema::validator_for(&schema).map_err(|error| {
            template_error(format!("`variables` is not a valid schema: {error}"))
        })?;
        let properties = schema
            .get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let defaults: Map<String, Value> = properties
            .iter()
            .filter_map(|(name, property)| Some((name.clone(), property.get("default")?.clone())))
            .collect();
        let declared: BTreeSet<&str> = properties.keys().map(String::as_str).collect();
        let sections = self.sections();
        if sections.is_empty() {
            return Err(template_error(
                "a template needs at least one of role, task, constraints, output_format or \
                 examples",
            ));
        }
        let environment = environment();
        for (section, source) in &sections {
            let template = environment
                .template_from_str(source)
                .map_err(|error| template_error(format!("{section}: {}", describe(&error))))?;
            let used = template.undeclared_variables(false);
            let mut undeclared: Vec<&String> = used
                .iter()
                .filter(|name| !declared.contains(name.as_str()) && !is_global(name))
                .collect();
            undeclared.sort();
            if let Some(name) = undeclared.first() {
                return Err(template_error(format!(
                    "{section} uses the variable `{name}`, which `variables` does not declare"
                )));
            }
        }
        Ok(CompiledPrompt {
            template: self,
            validator,
            defaults,
        })
    }

    /// Every templated text with where it sits, for error messages.
    fn sections(&self) -> Vec<(String, &str)> {
        let mut sections = Vec::new();
        let named = [
            ("role", &self.role),
            ("task", &self.task),
            ("output_format", &self.output_format),
        ];
        for (name, text) in named {
            if let Some(text) = text {
                sections.push((name.to_owned(), text.as_str()));
            }
        }
        for (index, text) in self.constraints.iter().enumerate() {
            sections.push((format!("constraints[{index}]"), text.as_str()));
        }
        for (index, example) in self.examples.iter().enumerate() {
            sections.push((format!("examples[{index}].input"), example.input.as_str()));
            sections.push((format!("examples[{index}].output"), example.output.as_str()));
        }
        sections
    }
}

impl CompiledPrompt {
    #[must_use]
    pub fn template(&self) -> &PromptTemplate {
        &self.template
    }

    /// Renders the template with `variables` (defaults fill in what is missing).
    ///
    /// # Errors
    /// [`PromptError::Variables`] when the variables do not match the schema;
    /// [`PromptError::Template`] when rendering fails (a runaway loop, a filter on the wrong
    /// type) or the result is too large.
    pub fn render(&self, variables: &Map<String, Value>) -> Result<RenderedPrompt, PromptError> {
        let mut values = self.defaults.clone();
        values.extend(variables.iter().map(|(k, v)| (k.clone(), v.clone())));
        let values = Value::Object(values);
        if let Some(error) = self.validator.iter_errors(&values).next() {
            let path = error.instance_path().to_string();
            let place = if path.is_empty() {
                "variables".to_owned()
            } else {
                format!("variable `{}`", path.trim_start_matches('/'))
            };
            return Err(variables_error(format!("{place}: {error}")));
        }
        let environment = environment();
        let context = minijinja::Value::from(minijinja::value::Serde(&values));
        let render = |section: &str, source: &str| -> Result<String, PromptError> {
            let text = environment
                .render_str(source, context.clone())
                .map_err(|error| template_error(format!("{section}: {}", describe(&error))))?;
            Ok(text.trim().to_owned())
        };
        let template = &self.template;
        let mut instructions = String::new();
        if let Some(role) = &template.role {
            instructions.push_str(&render("role", role)?);
        }
        if let Some(task) = &template.task {
            push_section(&mut instructions, "Task", &render("task", task)?);
        }
        if !template.constraints.is_empty() {
            let mut list = String::new();
            for (index, constraint) in template.constraints.iter().enumerate() {
                let text = render(&format!("constraints[{index}]"), constraint)?;
                if !text.is_empty() {
                    let _ = writeln!(list, "- {text}");
                }
            }
            push_section(&mut instructions, "Constraints", list.trim_end());
        }
        if let Some(format) = &template.output_format {
            push_section(
                &mut instructions,
                "Output format",
                &render("output_format", format)?,
            );
        }
        let mut examples = Vec::with_capacity(template.examples.len());
        let mut size = instructions.len();
        for (index, example) in template.examples.iter().enumerate() {
            let input = render(&format!("examples[{index}].input"), &example.input)?;
            let output = render(&format!("examples[{index}].output"), &example.output)?;
            size += input.len() + output.len();
            examples.push((input, output));
        }
        if size > MAX_RENDERED_BYTES {
            return Err(template_error(format!(
                "the rendered prompt is {size} bytes; the limit is {MAX_RENDERED_BYTES}"
            )));
        }
        Ok(RenderedPrompt {
            instructions,
            examples,
        })
    }
}

/// Appends `## title` and `body` after a blank line; nothing when `body` is empty.
fn push_section(instructions: &mut String, title: &str, body: &str) {
    if body.is_empty() {
        return;
    }
    if !instructions.is_empty() {
        instructions.push_str("\n\n");
    }
    let _ = write!(instructions, "## {title}\n{body}");
}

fn environment() -> Environment<'static> {
    let mut environment = Environment::new();
    environment.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    environment.set_fuel(Some(FUEL));
    environment.set_recursion_limit(64);
    environment
}

/// Names minijinja provides itself (functions, tests), which templates may use undeclared.
fn is_global(name: &str) -> bool {
    matches!(
        name,
        "range" | "dict" | "namespace" | "debug" | "loop" | "self"
    )
}

fn describe(error: &minijinja::Error) -> String {
    let mut text = error.kind().to_string();
    if let Some(detail) = error.detail() {
        let _ = write!(text, ": {detail}");
    }
    if let Some(line) = error.line() {
        let _ = write!(text, " (line {line})");
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn template(value: Value) -> PromptTemplate {
        serde_json::from_value(value).unwrap()
    }

    fn support() -> CompiledPrompt {
        template(json!({
            "role": "You are the support assistant of {{ company }}.",
            "task": "Answer questions about the {{ product }} from its manual.",
            "constraints": [
                "Answer in {{ language }}.",
                "{% if escalate %}Offer to open a ticket when the manual has no answer.{% endif %}",
                "Never promise refunds."
            ],
            "output_format": "At most {{ max_sentences }} sentences, then the sources.",
            "examples": [
                {"input": "How do I reset the {{ product }}?", "output": "Hold the power button for 10 s. [manual p. 4]"}
            ],
            "variables": {
                "type": "object",
                "properties": {
                    "company": {"type": "string"},
                    "product": {"type": "string", "minLength": 1},
                    "language": {"type": "string", "enum": ["English", "Chinese"], "default": "English"},
                    "escalate": {"type": "boolean", "default": false},
                    "max_sentences": {"type": "integer", "minimum": 1, "default": 3}
                },
                "required": ["company", "product"],
                "additionalProperties": false
            }
        }))
        .compile()
        .unwrap()
    }

    fn vars(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn renders_sections_in_order_with_defaults() {
        let rendered = support()
            .render(&vars(
                json!({"company": "Acme", "product": "X200", "escalate": true}),
            ))
            .unwrap();
        assert_eq!(
            rendered.instructions,
            "You are the support assistant of Acme.\n\n\
             ## Task\nAnswer questions about the X200 from its manual.\n\n\
             ## Constraints\n- Answer in English.\n\
             - Offer to open a ticket when the manual has no answer.\n\
             - Never promise refunds.\n\n\
             ## Output format\nAt most 3 sentences, then the sources."
        );
        assert_eq!(
            rendered.examples,
            vec![(
                "How do I reset the X200?".to_owned(),
                "Hold the power button for 10 s. [manual p. 4]".to_owned()
            )]
        );
        let messages = rendered.messages();
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[0].role, Role::System);
        assert_eq!(messages[2].role, Role::Assistant);
    }

    #[test]
    fn an_empty_constraint_is_left_out() {
        let rendered = support()
            .render(&vars(json!({"company": "Acme", "product": "X200"})))
            .unwrap();
        assert!(
            rendered
                .instructions
                .contains("- Answer in English.\n- Never promise")
        );
    }

    #[test]
    fn variables_are_validated() {
        let prompt = support();
        let cases = [
            (json!({"product": "X200"}), "company"),
            (json!({"company": "Acme", "product": ""}), "product"),
            (
                json!({"company": "Acme", "product": "X", "language": "French"}),
                "language",
            ),
            (
                json!({"company": "Acme", "product": "X", "max_sentences": "three"}),
                "max_sentences",
            ),
            (
                json!({"company": "Acme", "product": "X", "colour": "red"}),
                "colour",
            ),
        ];
        for (variables, named) in cases {
            let error = prompt.render(&vars(variables.clone())).unwrap_err();
            let PromptError::Variables { message } = &error else {
                panic!("{variables}: {error:?}");
            };
            assert!(message.contains(named), "{variables}: {message}");
        }
    }

    #[test]
    fn compile_refuses_broken_templates() {
        let cases = [
            (json!({"task": "Hello {{ name "}), "task"),
            (
                json!({"role": "Hi {{ who }}", "variables": {"type": "object", "properties": {}}}),
                "`who`",
            ),
            (
                json!({"constraints": ["ok", "{% for %}"]}),
                "constraints[1]",
            ),
            (
                json!({"task": "x", "variables": {"type": "string"}}),
                "object",
            ),
            (
                json!({"task": "x", "variables": {"type": "object", "properties": {"a": {"type": 7}}}}),
                "schema",
            ),
            (json!({"description": "nothing to render"}), "at least one"),
        ];
        for (document, expected) in cases {
            let error = template(document.clone()).compile().unwrap_err();
            assert!(error.to_string().contains(expected), "{document}: {error}");
        }
    }

    #[test]
    fn loops_over_declared_lists_and_globals_are_allowed() {
        let prompt = template(json!({
            "task": "{% for item in items %}{{ loop.index }}. {{ item }}\n{% endfor %}{% for i in range(2) %}*{% endfor %}",
            "variables": {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "string"}}}}
        }))
        .compile()
        .unwrap();
        let rendered = prompt.render(&vars(json!({"items": ["a", "b"]}))).unwrap();
        assert_eq!(rendered.instructions, "## Task\n1. a\n2. b\n**");
    }

    #[test]
    fn a_runaway_loop_runs_out_of_fuel() {
        let prompt = template(json!({
            "task": "{% for a in range(10000) %}{% for b in range(10000) %}x{% endfor %}{% endfor %}"
        }))
        .compile()
        .unwrap();
        let error = prompt.render(&Map::new()).unwrap_err();
        assert!(matches!(error, PromptError::Template { .. }), "{error:?}");
    }

    #[test]
    fn a_missing_optional_variable_is_falsy_but_cannot_be_printed() {
        let schema = json!({"type": "object", "properties": {"note": {"type": "string"}}});
        let guarded = template(
            json!({"task": "a{% if note %} ({{ note }}){% endif %}", "variables": schema.clone()}),
        )
        .compile()
        .unwrap();
        assert_eq!(
            guarded.render(&Map::new()).unwrap().instructions,
            "## Task\na"
        );
        let printed = template(json!({"task": "a {{ note }}", "variables": schema}))
            .compile()
            .unwrap();
        let error = printed.render(&Map::new()).unwrap_err();
        assert!(error.to_string().contains("task"), "{error}");
    }
}
