//! `type = "ticket"`: opens a ticket by POSTing a JSON body rendered from a template (every
//! string of `body` is a minijinja template over the arguments), and returns the ticket's id,
//! number and link read from the response. ServiceNow's table API is the model:
//! `POST /api/now/table/incident` answering `{"result": {"sys_id": …, "number": …}}`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use landfall_agents::{Tool, ToolContext, ToolError, ToolOutput, ToolSpec};
use landfall_config::{TicketToolConfig, ToolConfig};
use serde_json::{Map, Value, json};

use crate::BuildError;
use crate::http::{Connection, excerpt};

/// Response bodies of ticket systems are small; anything larger is not one.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

struct TicketTool {
    spec: ToolSpec,
    url: String,
    body: Value,
    id_pointer: String,
    number_pointer: Option<String>,
    link: Option<String>,
    connection: Connection,
}

/// The ticket tool of one entry.
///
/// # Errors
/// When the entry's headers or allowlist are unusable, or a body template does not parse.
pub fn build(
    name: &str,
    tool: &ToolConfig,
    ticket: &TicketToolConfig,
    timeout: Duration,
) -> Result<Arc<dyn Tool>, BuildError> {
    let connection = Connection::new(
        name,
        &ticket.headers,
        ticket.auth.as_ref(),
        &ticket.allow_private,
        timeout,
        MAX_RESPONSE_BYTES,
    )?;
    // Parse every template now, so a typo fails at start rather than on the first call.
    check(&ticket.body)
        .map_err(|error| BuildError::new(name, format!("body template: {error}")))?;
    let parameters = ticket.parameters.clone().unwrap_or_else(|| {
        json!({
            "type": "object",
            "properties": {
                "short_description": {"type": "string", "description": "One-line summary of the problem."},
                "description": {"type": "string", "description": "What happened, what the customer needs, what was tried."},
                "urgency": {"type": "string", "enum": ["1", "2", "3"], "description": "1 high, 2 medium, 3 low."},
            },
            "required": ["short_description", "description"],
            "additionalProperties": false,
        })
    });
    Ok(Arc::new(TicketTool {
        spec: ToolSpec {
            name: name.to_owned(),
            description: tool.description.clone().unwrap_or_else(|| {
                "Opens a support ticket for a person to follow up, and returns its number and link."
                    .to_owned()
            }),
            parameters,
            sensitive: true,
        },
        url: ticket.url.clone(),
        body: ticket.body.clone(),
        id_pointer: ticket.id_pointer.clone(),
        number_pointer: ticket.number_pointer.clone(),
        link: ticket.link.clone(),
        connection,
    }))
}

/// Parses every string of `template`.
fn check(template: &Value) -> Result<(), minijinja::Error> {
    match template {
        Value::String(text) => minijinja::Environment::new()
            .template_from_str(text)
            .map(|_| ()),
        Value::Array(items) => items.iter().try_for_each(check),
        Value::Object(object) => object.values().try_for_each(check),
        _ => Ok(()),
    }
}

/// `template` with every string rendered over `arguments` (strict: unknown variables fail).
fn render(template: &Value, arguments: &Map<String, Value>) -> Result<Value, minijinja::Error> {
    Ok(match template {
        Value::String(text) => {
            let mut environment = minijinja::Environment::new();
            environment.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
            Value::String(environment.render_str(text, jinja(&Value::Object(arguments.clone())))?)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| render(item, arguments))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(object) => Value::Object(
            object
                .iter()
                .map(|(key, item)| Ok((key.clone(), render(item, arguments)?)))
                .collect::<Result<_, minijinja::Error>>()?,
        ),
        other => other.clone(),
    })
}

/// A JSON value as a template value.
fn jinja(value: &Value) -> minijinja::Value {
    match value {
        Value::Null => minijinja::Value::from(()),
        Value::Bool(flag) => minijinja::Value::from(*flag),
        Value::Number(number) => number.as_i64().map_or_else(
            || minijinja::Value::from(number.as_f64().unwrap_or(f64::NAN)),
            minijinja::Value::from,
        ),
        Value::String(text) => minijinja::Value::from(text.as_str()),
        Value::Array(items) => minijinja::Value::from(items.iter().map(jinja).collect::<Vec<_>>()),
        Value::Object(object) => minijinja::Value::from_pairs(
            object.iter().map(|(key, item)| (key.as_str(), jinja(item))),
        ),
    }
}

#[async_trait]
impl Tool for TicketTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, arguments: Value, context: &ToolContext) -> Result<ToolOutput, ToolError> {
        let arguments = match arguments {
            Value::Object(arguments) => arguments,
            _ => Map::new(),
        };
        // Optional arguments the template uses are empty rather than errors.
        let mut variables = Map::new();
        if let Some(properties) = self
            .spec
            .parameters
            .get("properties")
            .and_then(Value::as_object)
        {
            for name in properties.keys() {
                variables.insert(name.clone(), Value::from(""));
            }
        }
        variables.extend(arguments);
        let body = render(&self.body, &variables).map_err(|error| ToolError::InvalidArguments {
            message: format!("the ticket body cannot be filled in: {error}"),
        })?;
        let (status, _, response) = self
            .connection
            .send(context.deadline, |client| {
                Ok(client
                    .post(&self.url)
                    .header("x-request-id", context.request_id.as_str())
                    .header(http::header::ACCEPT, "application/json")
                    .json(&body))
            })
            .await?;
        if !status.is_success() {
            return Err(ToolError::failed(format!(
                "the ticket system answered {status}: {}",
                excerpt(&response)
            )));
        }
        let response: Value = serde_json::from_slice(&response).map_err(|_| {
            ToolError::failed(format!(
                "the ticket system's answer is not JSON: {}",
                excerpt(&response)
            ))
        })?;
        let field = |pointer: &str| {
            response.pointer(pointer).and_then(|value| match value {
                Value::String(text) => Some(text.clone()),
                Value::Number(number) => Some(number.to_string()),
                _ => None,
            })
        };
        let id = field(&self.id_pointer).ok_or_else(|| {
            ToolError::failed(format!(
                "the ticket system's answer has no id at {}",
                self.id_pointer
            ))
        })?;
        let number = self.number_pointer.as_deref().and_then(field);
        let link = self.link.as_ref().map(|template| {
            template
                .replace("{id}", &id)
                .replace("{number}", number.as_deref().unwrap_or(&id))
        });
        let mut text = format!("Ticket {} created", number.as_deref().unwrap_or(&id));
        if let Some(link) = &link {
            text.push_str(&format!(": {link}"));
        }
        Ok(ToolOutput {
            text,
            data: Some(json!({"id": id, "number": number, "link": link})),
        })
    }
}
