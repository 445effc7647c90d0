//! E-mail over SMTP (filled in by the email work).

/// A `/v1/files` file to attach.
pub struct Attachment {
    pub filename: String,
    pub content_type: String,
    pub bytes: bytes::Bytes,
}

/// Reads attachments from the server's file store.
#[async_trait::async_trait]
pub trait Attachments: Send + Sync {
    async fn read(&self, tenant_id: &str, file_id: &str) -> Result<Attachment, String>;
}
