//! The `email` tool against aiosmtpd on 127.0.0.1 (tests/peers/smtp.py, run with
//! `LANDFALL_TEST_PYTHON`, which scripts/test.sh points at its venv): STARTTLS and implicit
//! TLS with AUTH and a private CA, the delivered MIME with an attachment, the recipient
//! domain policy, and a refused login.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use landfall_config::{Environment, from_toml};
use landfall_tools::email::{Attachment, Attachments};
use landfall_tools::{Registry, Services};
use serde_json::json;

use crate::{context, tool};

struct Peer {
    child: Child,
    dir: tempfile::TempDir,
    starttls_port: u16,
    tls_port: u16,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_peer() -> Peer {
    let python = std::env::var("LANDFALL_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("set LANDFALL_TEST_PYTHON to a python with aiosmtpd and trustme (scripts/venv.sh prints one)")
    });
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/smtp.py");
    let mut child = Command::new(python)
        .arg(script)
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ports: Vec<u16> = line
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("the SMTP peer did not start: {line:?}"))
        .split_whitespace()
        .map(|port| port.parse().unwrap())
        .collect();
    Peer {
        child,
        dir,
        starttls_port: ports[0],
        tls_port: ports[1],
    }
}

struct Files;

#[async_trait::async_trait]
impl Attachments for Files {
    async fn read(&self, tenant_id: &str, file_id: &str) -> Result<Attachment, String> {
        if tenant_id == "acme" && file_id == "file-report" {
            Ok(Attachment {
                filename: "report.csv".to_owned(),
                content_type: "text/csv".to_owned(),
                bytes: bytes::Bytes::from_static(b"region,total\nnorth,42\n"),
            })
        } else {
            Err(format!("no file {file_id}"))
        }
    }
}

fn registry(peer: &Peer, password: &str) -> Registry {
    let ca = peer.dir.path().join("ca.pem");
    let toml = format!(
        "[tools.mail]\ntype = \"email\"\nhost = \"localhost\"\nport = {}\nsecurity = \"starttls\"\n\
         username = \"agent\"\npassword = \"{password}\"\nca_file = \"{}\"\n\
         from = \"Landfall <agent@example.com>\"\nallowed_domains = [\"example.com\"]\n\
         max_attachment_bytes = 1000\n\
         [tools.wrapped]\ntype = \"email\"\nhost = \"localhost\"\nport = {}\nsecurity = \"tls\"\n\
         username = \"agent\"\npassword = \"{password}\"\nca_file = \"{}\"\n\
         from = \"agent@example.com\"\nallowed_domains = [\"example.com\"]\n",
        peer.starttls_port,
        ca.display(),
        peer.tls_port,
        ca.display()
    );
    let config =
        from_toml(&toml, &Environment::default()).unwrap_or_else(|errors| panic!("{errors}"));
    let services = Services {
        attachments: Arc::new(Files),
    };
    Registry::build(&config.tools, &config.agents, &services)
        .unwrap_or_else(|errors| panic!("{errors:?}"))
}

fn delivered(peer: &Peer, n: usize) -> (String, serde_json::Value) {
    let stem = peer.dir.path().join(n.to_string());
    let mime = std::fs::read_to_string(stem.with_extension("eml")).unwrap();
    let envelope = std::fs::read_to_string(stem.with_extension("json")).unwrap();
    (mime, serde_json::from_str(&envelope).unwrap())
}

#[tokio::test]
async fn mail_is_delivered_over_starttls_and_tls_with_attachments() {
    let peer = start_peer();
    let tools = registry(&peer, "s3cret");
    let output = tool(&tools, "mail", "mail")
        .call(
            json!({"to": ["Ops <ops@example.com>"], "cc": ["boss@Example.com"],
                   "subject": "Weekly report 周报", "body": "Totals attached.",
                   "attachments": ["file-report"]}),
            &context(10),
        )
        .await
        .unwrap();
    assert!(output.text.contains("msg-1"), "{}", output.text);
    let (mime, envelope) = delivered(&peer, 1);
    assert_eq!(
        envelope,
        json!({"from": "agent@example.com", "to": ["ops@example.com", "boss@Example.com"]})
    );
    assert!(
        mime.contains("From: Landfall <agent@example.com>"),
        "{mime}"
    );
    assert!(mime.contains("To: Ops <ops@example.com>"), "{mime}");
    assert!(mime.contains("Content-Type: multipart/mixed"), "{mime}");
    assert!(mime.contains("Totals attached."), "{mime}");
    assert!(
        mime.contains("Content-Disposition: attachment; filename=\"report.csv\""),
        "{mime}"
    );
    assert!(mime.contains("region,total"), "{mime}");
    // Non-ASCII words of the subject are encoded (RFC 2047), not sent raw.
    assert!(mime.contains("Subject: Weekly report =?utf-8?b?"), "{mime}");

    tool(&tools, "wrapped", "wrapped")
        .call(
            json!({"to": ["ops@example.com"], "subject": "Over TLS", "body": "hello"}),
            &context(10),
        )
        .await
        .unwrap();
    let (mime, _) = delivered(&peer, 2);
    assert!(mime.contains("Subject: Over TLS"), "{mime}");
}

#[tokio::test]
async fn recipients_attachments_and_logins_are_checked() {
    let peer = start_peer();
    let tools = registry(&peer, "s3cret");
    let mail = tool(&tools, "mail", "mail");
    for (arguments, why) in [
        (
            json!({"to": ["someone@evil.test"], "subject": "x", "body": "y"}),
            "outside the allowed domains",
        ),
        (
            json!({"to": ["ops@example.com"], "cc": ["a@example.com.evil.test"], "subject": "x", "body": "y"}),
            "outside the allowed domains",
        ),
        (
            json!({"to": ["not an address"], "subject": "x", "body": "y"}),
            "not an e-mail address",
        ),
        (
            json!({"to": ["ops@example.com"], "subject": "x", "body": "y", "attachments": ["file-other"]}),
            "no file file-other",
        ),
    ] {
        let error = mail.call(arguments, &context(10)).await.unwrap_err();
        assert!(error.to_string().contains(why), "{error}");
    }
    let wrong = registry(&peer, "wrong");
    let error = tool(&wrong, "mail", "mail")
        .call(
            json!({"to": ["ops@example.com"], "subject": "x", "body": "y"}),
            &context(10),
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("refused"), "{error}");
    assert!(
        !peer.dir.path().join("1.eml").exists(),
        "nothing was delivered"
    );
}
