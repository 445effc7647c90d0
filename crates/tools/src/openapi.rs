//! Operations of an OpenAPI 3 document (JSON or YAML) as `http` tools named
//! `ENTRY_<operationId>`: path, query and header parameters become arguments, a JSON request
//! body becomes the argument `body`, and local `$ref`s are inlined so the model and the
//! argument check see whole schemas.

use std::path::Path;

use landfall_agents::ToolSpec;
use landfall_config::{HttpToolConfig, ToolConfig};
use serde_json::{Map, Value, json};

use crate::BuildError;
use crate::http::{Location, Operation};

/// How deep `$ref`s are followed; deeper (or recursive) ones become `{}` (anything).
const MAX_REF_DEPTH: usize = 8;
const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];

pub(crate) fn operations(
    name: &str,
    tool: &ToolConfig,
    config: &HttpToolConfig,
    path: &Path,
) -> Result<Vec<Operation>, BuildError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        BuildError::new(name, format!("cannot read {}: {error}", path.display()))
    })?;
    let document: Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(&text).map_err(|error| error.to_string())
    } else {
        serde_yaml_ng::from_str(&text).map_err(|error| error.to_string())
    }
    .map_err(|error| {
        BuildError::new(
            name,
            format!("{} is not JSON or YAML: {error}", path.display()),
        )
    })?;
    parse(name, tool, config, &document)
}

pub(crate) fn parse(
    name: &str,
    tool: &ToolConfig,
    config: &HttpToolConfig,
    document: &Value,
) -> Result<Vec<Operation>, BuildError> {
    let version = document
        .get("openapi")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !version.starts_with('3') {
        return Err(BuildError::new(
            name,
            "the document is not OpenAPI 3 (no `openapi: 3.x` field)",
        ));
    }
    let base = config
        .base_url
        .clone()
        .or_else(|| {
            document
                .pointer("/servers/0/url")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .ok_or_else(|| BuildError::new(name, "the document has no `servers`; set `base_url`"))?;
    let base = base.trim_end_matches('/');
    if url::Url::parse(base).is_err() {
        return Err(BuildError::new(
            name,
            format!("`{base}` is not an absolute URL; set `base_url`"),
        ));
    }
    let paths = document
        .get("paths")
        .and_then(Value::as_object)
        .ok_or_else(|| BuildError::new(name, "the document has no `paths`"))?;
    let mut operations = Vec::new();
    for (route, item) in paths {
        let shared = item.get("parameters").and_then(Value::as_array);
        for method in METHODS {
            let Some(operation) = item.get(*method) else {
                continue;
            };
            let id = operation
                .get("operationId")
                .and_then(Value::as_str)
                .map_or_else(|| format!("{method}{route}"), str::to_owned);
            if let Some(wanted) = &config.operations
                && !wanted.contains(&id)
            {
                continue;
            }
            operations.push(operation_tool(
                name, tool, document, base, route, method, &id, operation, shared,
            )?);
        }
    }
    if let Some(wanted) = &config.operations {
        for id in wanted {
            if !operations
                .iter()
                .any(|operation| operation.spec.name == tool_name(name, id))
            {
                return Err(BuildError::new(
                    name,
                    format!("the document has no operation `{id}`"),
                ));
            }
        }
    }
    if operations.is_empty() {
        return Err(BuildError::new(name, "the document has no operations"));
    }
    Ok(operations)
}

/// `ENTRY_operationId`, with characters outside `[A-Za-z0-9_-]` replaced, at most 64 long.
fn tool_name(entry: &str, id: &str) -> String {
    format!("{entry}_{id}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

#[expect(
    clippy::too_many_arguments,
    reason = "one operation's context, used once"
)]
fn operation_tool(
    entry: &str,
    tool: &ToolConfig,
    document: &Value,
    base: &str,
    route: &str,
    method: &str,
    id: &str,
    operation: &Value,
    shared: Option<&Vec<Value>>,
) -> Result<Operation, BuildError> {
    let mut properties = Map::new();
    let mut required = Vec::new();
    let mut locations = Vec::new();
    let own = operation.get("parameters").and_then(Value::as_array);
    for parameter in shared
        .into_iter()
        .flatten()
        .chain(own.into_iter().flatten())
    {
        let parameter = inline(document, parameter, 0);
        let (Some(param), Some(place)) = (
            parameter.get("name").and_then(Value::as_str),
            parameter.get("in").and_then(Value::as_str),
        ) else {
            continue;
        };
        let location = match place {
            "path" => Location::Path,
            "query" => Location::Query,
            "header" => Location::Header,
            _ => continue, // cookies are not sent
        };
        let mut schema = parameter
            .get("schema")
            .cloned()
            .unwrap_or_else(|| json!({}));
        if let Some(description) = parameter.get("description")
            && let Some(object) = schema.as_object_mut()
        {
            object.insert("description".to_owned(), description.clone());
        }
        properties.insert(param.to_owned(), schema);
        if location == Location::Path || parameter.get("required") == Some(&Value::Bool(true)) {
            required.push(Value::from(param));
        }
        locations.retain(|(existing, _): &(String, Location)| existing != param);
        locations.push((param.to_owned(), location));
    }
    if let Some(body) = operation.get("requestBody") {
        let body = inline(document, body, 0);
        if let Some(schema) = body.pointer("/content/application~1json/schema") {
            properties.insert("body".to_owned(), schema.clone());
            locations.push(("body".to_owned(), Location::Body));
            if body.get("required") == Some(&Value::Bool(true)) {
                required.push(Value::from("body"));
            }
        }
    }
    let summary = [operation.get("summary"), operation.get("description")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(" ");
    let method_upper = method.to_ascii_uppercase();
    let description = match (&tool.description, summary.is_empty()) {
        (Some(prefix), false) => format!("{prefix} {summary}"),
        (Some(prefix), true) => format!("{prefix} ({method_upper} {route})"),
        (None, false) => summary,
        (None, true) => format!("{method_upper} {route}"),
    };
    let method = http::Method::from_bytes(method_upper.as_bytes())
        .map_err(|_| BuildError::new(entry, format!("`{method}` is not an HTTP method")))?;
    Ok(Operation {
        spec: ToolSpec {
            name: tool_name(entry, id),
            description,
            parameters: json!({
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false,
            }),
            sensitive: !matches!(method, http::Method::GET | http::Method::HEAD),
        },
        method,
        url: format!("{base}{route}"),
        locations,
    })
}

/// `value` with every local `$ref` (`#/components/...`) replaced by what it points at.
fn inline(document: &Value, value: &Value, depth: usize) -> Value {
    match value {
        Value::Object(object) => {
            if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
                if depth >= MAX_REF_DEPTH {
                    return json!({});
                }
                let target = reference
                    .strip_prefix('#')
                    .and_then(|pointer| document.pointer(pointer));
                return target
                    .map_or_else(|| json!({}), |target| inline(document, target, depth + 1));
            }
            Value::Object(
                object
                    .iter()
                    .map(|(key, item)| (key.clone(), inline(document, item, depth)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| inline(document, item, depth))
                .collect(),
        ),
        other => other.clone(),
    }
}
