//! `type = "email"`: sends a message over SMTP (STARTTLS, implicit TLS, or plain to a local
//! relay; with or without auth), to recipients in the entry's allowed domains, with
//! attachments taken from `/v1/files`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use landfall_agents::{Tool, ToolContext, ToolError, ToolOutput, ToolSpec};
use landfall_config::{EmailToolConfig, SmtpSecurity, ToolConfig};
use lettre::message::header::ContentType;
use lettre::message::{Attachment as MimeAttachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{Value, json};

use crate::BuildError;

/// A `/v1/files` file to attach.
pub struct Attachment {
    pub filename: String,
    pub content_type: String,
    pub bytes: bytes::Bytes,
}

/// Reads attachments from the server's file store.
#[async_trait]
pub trait Attachments: Send + Sync {
    async fn read(&self, tenant_id: &str, file_id: &str) -> Result<Attachment, String>;
}

struct EmailTool {
    spec: ToolSpec,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// Lowercased.
    allowed_domains: Vec<String>,
    max_attachment_bytes: usize,
    attachments: Arc<dyn Attachments>,
}

/// The e-mail tool of one entry.
///
/// # Errors
/// When `from` is not an address, or the CA file cannot be read.
pub fn build(
    name: &str,
    tool: &ToolConfig,
    email: &EmailToolConfig,
    timeout: Duration,
    attachments: Arc<dyn Attachments>,
) -> Result<Arc<dyn Tool>, BuildError> {
    let from: Mailbox = email
        .from
        .parse()
        .map_err(|error| BuildError::new(name, format!("`from` is not an address: {error}")))?;
    let mut tls = TlsParameters::builder(email.host.clone());
    if let Some(path) = &email.ca_file {
        let pem = std::fs::read(path).map_err(|error| {
            BuildError::new(name, format!("`ca_file` {}: {error}", path.display()))
        })?;
        let certificate = Certificate::from_pem(&pem).map_err(|error| {
            BuildError::new(name, format!("`ca_file` {}: {error}", path.display()))
        })?;
        tls = tls.add_root_certificate(certificate);
    }
    let tls = tls
        .build_rustls()
        .map_err(|error| BuildError::new(name, format!("TLS: {error}")))?;
    let (tls, default_port) = match email.security {
        SmtpSecurity::Starttls => (Tls::Required(tls), 587),
        SmtpSecurity::Tls => (Tls::Wrapper(tls), 465),
        SmtpSecurity::None => (Tls::None, 25),
    };
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&email.host)
        .port(email.port.unwrap_or(default_port))
        .tls(tls)
        .timeout(Some(timeout));
    if let Some(username) = &email.username {
        let password = email
            .password
            .as_ref()
            .map(|password| password.expose().to_owned())
            .unwrap_or_default();
        transport = transport.credentials(Credentials::new(username.clone(), password));
    }
    let domains = email.allowed_domains.join(", ");
    Ok(Arc::new(EmailTool {
        spec: ToolSpec {
            name: name.to_owned(),
            description: tool.description.clone().unwrap_or_else(|| {
                format!(
                    "Sends an e-mail from {} to addresses at {domains}; attachments are ids \
                     of uploaded files.",
                    email.from
                )
            }),
            parameters: json!({
                "type": "object",
                "properties": {
                    "to": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 20},
                    "cc": {"type": "array", "items": {"type": "string"}, "maxItems": 20},
                    "subject": {"type": "string", "minLength": 1, "maxLength": 300},
                    "body": {"type": "string", "description": "Plain text."},
                    "attachments": {"type": "array", "items": {"type": "string"}, "maxItems": 10,
                                    "description": "File ids (file-…) from /v1/files."},
                },
                "required": ["to", "subject", "body"],
                "additionalProperties": false,
            }),
            sensitive: true,
        },
        transport: transport.build(),
        from,
        allowed_domains: email
            .allowed_domains
            .iter()
            .map(|domain| domain.trim_start_matches('@').to_lowercase())
            .collect(),
        max_attachment_bytes: email.max_attachment_bytes,
        attachments,
    }))
}

fn strings(arguments: &Value, key: &str) -> Vec<String> {
    arguments
        .get(key)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

impl EmailTool {
    /// The recipient as a mailbox, when its domain is allowed.
    fn recipient(&self, address: &str) -> Result<Mailbox, ToolError> {
        let mailbox: Mailbox = address.parse().map_err(|error| ToolError::Refused {
            message: format!("`{address}` is not an e-mail address: {error}"),
        })?;
        let domain = mailbox.email.domain().to_lowercase();
        if self.allowed_domains.contains(&domain) {
            Ok(mailbox)
        } else {
            Err(ToolError::Refused {
                message: format!(
                    "`{address}` is outside the allowed domains ({})",
                    self.allowed_domains.join(", ")
                ),
            })
        }
    }

    async fn message(&self, arguments: &Value, tenant: &str) -> Result<Message, ToolError> {
        let mut builder = Message::builder().from(self.from.clone()).subject(
            arguments
                .get("subject")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        );
        for address in strings(arguments, "to") {
            builder = builder.to(self.recipient(&address)?);
        }
        for address in strings(arguments, "cc") {
            builder = builder.cc(self.recipient(&address)?);
        }
        let body = arguments
            .get("body")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let file_ids = strings(arguments, "attachments");
        let built = if file_ids.is_empty() {
            builder.singlepart(SinglePart::plain(body))
        } else {
            let mut parts = MultiPart::mixed().singlepart(SinglePart::plain(body));
            let mut total = 0;
            for file_id in file_ids {
                let file = self
                    .attachments
                    .read(tenant, &file_id)
                    .await
                    .map_err(|message| ToolError::Refused { message })?;
                total += file.bytes.len();
                if total > self.max_attachment_bytes {
                    return Err(ToolError::Refused {
                        message: format!(
                            "the attachments exceed {} bytes",
                            self.max_attachment_bytes
                        ),
                    });
                }
                let content_type = match ContentType::parse(&file.content_type) {
                    Ok(content_type) => content_type,
                    Err(_) => ContentType::parse("application/octet-stream")
                        .map_err(|error| ToolError::failed(error.to_string()))?,
                };
                parts = parts.singlepart(
                    MimeAttachment::new(file.filename).body(file.bytes.to_vec(), content_type),
                );
            }
            builder.multipart(parts)
        };
        built.map_err(|error| ToolError::Refused {
            message: format!("the message cannot be built: {error}"),
        })
    }
}

#[async_trait]
impl Tool for EmailTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, arguments: Value, context: &ToolContext) -> Result<ToolOutput, ToolError> {
        let message = self.message(&arguments, &context.tenant_id).await?;
        let recipients: Vec<String> = message
            .envelope()
            .to()
            .iter()
            .map(ToString::to_string)
            .collect();
        let response =
            self.transport.send(message).await.map_err(|error| {
                ToolError::failed(format!("the mail server refused it: {error}"))
            })?;
        let reply = response.message().collect::<Vec<_>>().join(" ");
        Ok(ToolOutput {
            text: format!(
                "Sent to {}. The server said: {reply}",
                recipients.join(", ")
            ),
            data: Some(json!({"recipients": recipients, "server_reply": reply})),
        })
    }
}
