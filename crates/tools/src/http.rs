//! `type = "http"`: company REST APIs as tools. One entry is either one described operation
//! (`method`, `url` template, `parameters`) or the operations of an OpenAPI 3 document
//! (see [`crate::openapi`]). Calls carry the entry's headers and credentials, are bounded in
//! time and response size, and follow the SSRF policy of [`crate::net`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use landfall_agents::{Tool, ToolContext, ToolError, ToolOutput, ToolSpec};
use landfall_config::{HttpToolConfig, ToolConfig};
use serde_json::{Map, Value, json};

use crate::BuildError;
use crate::auth::Auth;
use crate::net::{self, Policy};

/// Characters of a response shown to the model in an error.
const EXCERPT_CHARS: usize = 500;

/// Where an argument goes in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Location {
    Path,
    Query,
    Header,
    /// The whole JSON body (an OpenAPI request body, the argument `body`).
    Body,
    /// One field of a JSON body assembled from the remaining arguments.
    BodyField,
}

/// One callable REST operation.
#[derive(Debug, Clone)]
pub(crate) struct Operation {
    pub spec: ToolSpec,
    pub method: http::Method,
    /// Absolute URL with `{name}` placeholders.
    pub url: String,
    /// `(argument, location)`; arguments not listed go by the method's default.
    pub locations: Vec<(String, Location)>,
}

impl Operation {
    fn location(&self, argument: &str) -> Location {
        self.locations
            .iter()
            .find(|(name, _)| name == argument)
            .map_or_else(
                || {
                    if matches!(
                        self.method,
                        http::Method::GET | http::Method::DELETE | http::Method::HEAD
                    ) {
                        Location::Query
                    } else {
                        Location::BodyField
                    }
                },
                |(_, location)| *location,
            )
    }
}

/// What every operation of one entry shares.
pub(crate) struct Connection {
    pub client: reqwest::Client,
    pub policy: Arc<Policy>,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub auth: Option<Auth>,
    pub max_response_bytes: usize,
    /// For timeout errors.
    pub timeout: Duration,
}

impl Connection {
    pub(crate) fn new(
        name: &str,
        headers: &std::collections::BTreeMap<String, landfall_config::Secret>,
        auth: Option<&landfall_config::HttpAuth>,
        allow_private: &[String],
        timeout: Duration,
        max_response_bytes: usize,
    ) -> Result<Self, BuildError> {
        let policy = Arc::new(Policy::new(allow_private).map_err(|m| BuildError::new(name, m))?);
        let client = net::client(&policy, timeout).map_err(|m| BuildError::new(name, m))?;
        let headers = headers
            .iter()
            .map(|(header, value)| {
                let header_name =
                    http::HeaderName::from_bytes(header.as_bytes()).map_err(|error| {
                        BuildError::new(name, format!("header `{header}`: {error}"))
                    })?;
                let mut header_value =
                    http::HeaderValue::from_str(value.expose()).map_err(|error| {
                        BuildError::new(name, format!("header `{header}`: {error}"))
                    })?;
                header_value.set_sensitive(true);
                Ok((header_name, header_value))
            })
            .collect::<Result<_, BuildError>>()?;
        Ok(Self {
            client,
            policy,
            headers,
            auth: auth.cloned().map(Auth::new),
            max_response_bytes,
            timeout,
        })
    }

    /// Sends what `build` makes (called again for a retry after a 401 with OAuth2) and reads
    /// the body up to the size limit.
    pub(crate) async fn send(
        &self,
        deadline: Instant,
        build: impl Fn(&reqwest::Client) -> Result<reqwest::RequestBuilder, ToolError>,
    ) -> Result<(http::StatusCode, Option<String>, Vec<u8>), ToolError> {
        let mut retried = false;
        loop {
            let remaining = deadline
                .saturating_duration_since(Instant::now())
                .min(self.timeout);
            if remaining.is_zero() {
                return Err(self.timed_out());
            }
            let mut request = build(&self.client)?.timeout(remaining);
            for (name, value) in &self.headers {
                request = request.header(name, value);
            }
            if let Some(auth) = &self.auth {
                request = auth
                    .apply(&self.client, request)
                    .await
                    .map_err(ToolError::failed)?;
            }
            let request = request
                .build()
                .map_err(|error| ToolError::failed(net::describe(&error)))?;
            self.policy
                .check_url(request.url())
                .map_err(|refused| ToolError::Refused {
                    message: refused.to_string(),
                })?;
            let mut response = self
                .client
                .execute(request)
                .await
                .map_err(|error| self.classify(&error))?;
            let status = response.status();
            if status == http::StatusCode::UNAUTHORIZED
                && !retried
                && let Some(auth) = self.auth.as_ref().filter(|auth| auth.refreshable())
            {
                auth.invalidate().await;
                retried = true;
                continue;
            }
            let content_type = response
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            let mut body = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|error| self.classify(&error))?
            {
                if body.len() + chunk.len() > self.max_response_bytes {
                    return Err(ToolError::failed(format!(
                        "the response is larger than the limit of {} bytes",
                        self.max_response_bytes
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            return Ok((status, content_type, body));
        }
    }

    fn timed_out(&self) -> ToolError {
        ToolError::Timeout {
            timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }

    fn classify(&self, error: &reqwest::Error) -> ToolError {
        let message = net::describe(error);
        if let Some(refusal) = message.strip_prefix("refused: ") {
            ToolError::Refused {
                message: refusal.to_owned(),
            }
        } else if error.is_timeout() {
            self.timed_out()
        } else {
            ToolError::failed(message)
        }
    }
}

/// The start of a body, as text, for error messages.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut excerpt: String = text.chars().take(EXCERPT_CHARS).collect();
    if text.chars().nth(EXCERPT_CHARS).is_some() {
        excerpt.push('…');
    }
    excerpt
}

/// One operation as a tool.
pub(crate) struct HttpTool {
    operation: Operation,
    connection: Arc<Connection>,
}

#[async_trait]
impl Tool for HttpTool {
    fn spec(&self) -> &ToolSpec {
        &self.operation.spec
    }

    async fn call(&self, arguments: Value, context: &ToolContext) -> Result<ToolOutput, ToolError> {
        let arguments = match arguments {
            Value::Object(arguments) => arguments,
            Value::Null => Map::new(),
            _ => {
                return Err(ToolError::InvalidArguments {
                    message: "arguments must be an object".to_owned(),
                });
            }
        };
        let request = self.request_parts(&arguments)?;
        let (status, content_type, body) = self
            .connection
            .send(context.deadline, |client| {
                let mut builder = client
                    .request(self.operation.method.clone(), request.url.clone())
                    .header("x-request-id", context.request_id.as_str());
                for (name, value) in &request.headers {
                    builder = builder.header(name.as_str(), value.as_str());
                }
                if let Some(body) = &request.body {
                    builder = builder.json(body);
                }
                Ok(builder)
            })
            .await?;
        let json = content_type
            .as_deref()
            .is_some_and(|kind| kind.contains("json"))
            .then(|| serde_json::from_slice::<Value>(&body).ok())
            .flatten();
        if !status.is_success() {
            return Err(ToolError::failed(format!(
                "the API answered {status}: {}",
                excerpt(&body)
            )));
        }
        let text = match &json {
            Some(value) => value.to_string(),
            None => String::from_utf8_lossy(&body).into_owned(),
        };
        Ok(ToolOutput {
            text: if text.is_empty() {
                format!("{status} (empty body)")
            } else {
                text
            },
            data: Some(json!({"status": status.as_u16(), "body": json.unwrap_or(Value::Null)})),
        })
    }
}

/// A request's URL, extra headers and body, from the arguments.
struct Parts {
    url: url::Url,
    headers: Vec<(String, String)>,
    body: Option<Value>,
}

impl HttpTool {
    fn request_parts(&self, arguments: &Map<String, Value>) -> Result<Parts, ToolError> {
        let mut url = self.operation.url.clone();
        let mut query = Vec::new();
        let mut headers = Vec::new();
        let mut body = None;
        let mut fields = Map::new();
        for (name, value) in arguments {
            match self.operation.location(name) {
                Location::Path => {
                    let text = scalar(value);
                    let encoded: String =
                        url::form_urlencoded::byte_serialize(text.as_bytes()).collect();
                    url = url.replace(&format!("{{{name}}}"), &encoded.replace('+', "%20"));
                }
                Location::Query => match value {
                    Value::Array(items) => {
                        query.extend(items.iter().map(|item| (name.clone(), scalar(item))));
                    }
                    Value::Null => {}
                    other => query.push((name.clone(), scalar(other))),
                },
                Location::Header => headers.push((name.clone(), scalar(value))),
                Location::Body => body = Some(value.clone()),
                Location::BodyField => {
                    fields.insert(name.clone(), value.clone());
                }
            }
        }
        if let Some(missing) = placeholder(&url) {
            return Err(ToolError::InvalidArguments {
                message: format!("`{missing}` is required"),
            });
        }
        if body.is_none() && !fields.is_empty() {
            body = Some(Value::Object(fields));
        }
        let mut url = url::Url::parse(&url)
            .map_err(|error| ToolError::failed(format!("the URL is not valid: {error}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(Parts { url, headers, body })
    }
}

/// A `{name}` left in a URL template.
fn placeholder(url: &str) -> Option<&str> {
    let start = url.find('{')?;
    let end = url[start..].find('}')?;
    Some(&url[start + 1..start + end])
}

/// An argument as it appears in a URL or header.
fn scalar(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The names of the `{name}` placeholders of a URL template.
fn placeholders(template: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        names.push(rest[start + 1..start + end].to_owned());
        rest = &rest[start + end + 1..];
    }
    names
}

/// The tools of one `http` entry.
///
/// # Errors
/// When the entry's headers, allowlist or OpenAPI document are unusable.
pub fn build(
    name: &str,
    tool: &ToolConfig,
    http_config: &HttpToolConfig,
    timeout: Duration,
) -> Result<Vec<Arc<dyn Tool>>, BuildError> {
    let connection = Arc::new(Connection::new(
        name,
        &http_config.headers,
        http_config.auth.as_ref(),
        &http_config.allow_private,
        timeout,
        http_config.max_response_bytes,
    )?);
    let operations = match (&http_config.url, &http_config.openapi) {
        (Some(url), _) => vec![described(name, tool, http_config, url)?],
        (None, Some(path)) => crate::openapi::operations(name, tool, http_config, path)?,
        (None, None) => return Err(BuildError::new(name, "give `url` or `openapi`")),
    };
    Ok(operations
        .into_iter()
        .map(|operation| {
            Arc::new(HttpTool {
                operation,
                connection: connection.clone(),
            }) as Arc<dyn Tool>
        })
        .collect())
}

/// The one operation of an entry with `url`.
fn described(
    name: &str,
    tool: &ToolConfig,
    config: &HttpToolConfig,
    url: &str,
) -> Result<Operation, BuildError> {
    let method = config.method.as_deref().unwrap_or("GET");
    let method = http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| BuildError::new(name, format!("`{method}` is not an HTTP method")))?;
    let path_names = placeholders(url);
    let parameters = match &config.parameters {
        Some(schema) => schema.clone(),
        None => {
            let properties: Map<String, Value> = path_names
                .iter()
                .map(|param| (param.clone(), json!({"type": "string"})))
                .collect();
            json!({
                "type": "object",
                "properties": properties,
                "required": path_names,
                "additionalProperties": false,
            })
        }
    };
    if parameters.get("type").and_then(Value::as_str) != Some("object") {
        return Err(BuildError::new(
            name,
            "`parameters` must be a JSON Schema of `type = \"object\"`",
        ));
    }
    let description = tool
        .description
        .clone()
        .unwrap_or_else(|| format!("Calls {method} {url}."));
    Ok(Operation {
        spec: ToolSpec {
            name: name.to_owned(),
            description,
            parameters,
            sensitive: !matches!(method, http::Method::GET | http::Method::HEAD),
        },
        method,
        url: url.to_owned(),
        locations: path_names
            .into_iter()
            .map(|param| (param, Location::Path))
            .collect(),
    })
}
