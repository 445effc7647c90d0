//! landfall-tools' MCP client against a real MCP server (`landfall-mcp-peer`, rmcp), over
//! streamable HTTP and over stdio: tools listed and filtered, calls with arguments and
//! structured results, tool errors, forwarded headers, the child's environment, the SSRF rule,
//! and reconnecting after the server went away. (Here rather than in landfall-tools because
//! the peer is this crate's binary.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use landfall_agents::{Tool, ToolContext};
use landfall_config::{Environment, from_toml};
use landfall_tools::{Registry, Services};
use serde_json::json;

const PEER: &str = env!("CARGO_BIN_EXE_landfall-mcp-peer");

struct HttpPeer {
    child: Child,
    url: String,
}

impl Drop for HttpPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_peer() -> HttpPeer {
    let mut child = Command::new(PEER)
        .arg("http")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().strip_prefix("ready ").unwrap().to_owned();
    HttpPeer {
        child,
        url: format!("http://127.0.0.1:{port}/mcp"),
    }
}

struct NoFiles;

#[async_trait::async_trait]
impl landfall_tools::email::Attachments for NoFiles {
    async fn read(&self, _: &str, id: &str) -> Result<landfall_tools::email::Attachment, String> {
        Err(format!("no file {id}"))
    }
}

fn registry(toml: &str) -> Registry {
    let config =
        from_toml(toml, &Environment::default()).unwrap_or_else(|errors| panic!("{errors}"));
    let services = Services {
        attachments: Arc::new(NoFiles),
    };
    Registry::build(&config.tools, &config.agents, &services)
        .unwrap_or_else(|errors| panic!("{errors:?}"))
}

fn context() -> ToolContext {
    ToolContext {
        tenant_id: "acme".to_owned(),
        key_id: "key_test".to_owned(),
        request_id: "req_test".to_owned(),
        deadline: Instant::now() + Duration::from_secs(10),
    }
}

async fn tools(registry: &Registry, entry: &str) -> Vec<Arc<dyn Tool>> {
    registry.get(entry).unwrap().all_tools().await.unwrap()
}

fn named(tools: &[Arc<dyn Tool>], name: &str) -> Arc<dyn Tool> {
    tools
        .iter()
        .find(|tool| tool.spec().name == name)
        .unwrap_or_else(|| panic!("no tool {name}"))
        .clone()
}

/// What both transports must do the same way.
async fn behaves_as_an_mcp_client(registry: &Registry, entry: &str, credential: &str) {
    let listed = tools(registry, entry).await;
    let names: Vec<String> = listed.iter().map(|tool| tool.spec().name.clone()).collect();
    assert_eq!(
        names,
        ["lookup_order", "whoami", "fail"],
        "allowed_tools filters"
    );
    let lookup = named(&listed, "lookup_order");
    assert_eq!(lookup.spec().parameters["required"], json!(["order_id"]));
    let output = lookup
        .call(json!({"order_id": "A-17"}), &context())
        .await
        .unwrap();
    assert_eq!(output.text, "Order A-17 shipped on 2026-11-30.");
    assert_eq!(output.data.unwrap()["status"], "shipped");
    let whoami = named(&listed, "whoami")
        .call(json!({}), &context())
        .await
        .unwrap();
    assert!(
        whoami.text.contains(&format!("credential={credential}")),
        "{}",
        whoami.text
    );
    let error = named(&listed, "fail")
        .call(json!({}), &context())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("the warehouse is offline"),
        "{error}"
    );
}

#[tokio::test]
async fn tools_of_a_streamable_http_server() {
    let peer = http_peer();
    let registry = registry(&format!(
        "[tools.warehouse]\ntype = \"mcp\"\nurl = \"{}\"\nallow_private = [\"127.0.0.1\"]\n\
         allowed_tools = [\"lookup_order\", \"whoami\", \"fail\"]\n\
         headers = {{ authorization = \"Bearer wh-token\" }}\n",
        peer.url
    ));
    behaves_as_an_mcp_client(&registry, "warehouse", "Bearer wh-token").await;

    // The server restarts on another port: the same URL is gone, the call fails clearly.
    drop(peer);
    let lookup = named(&tools(&registry, "warehouse").await, "lookup_order");
    let error = lookup
        .call(json!({"order_id": "A-18"}), &context())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("MCP"), "{error}");
}

#[test]
fn loopback_servers_are_refused_unless_allowlisted() {
    let config = from_toml(
        "[tools.warehouse]\ntype = \"mcp\"\nurl = \"http://127.0.0.1:9/mcp\"\n",
        &Environment::default(),
    )
    .unwrap();
    let services = Services {
        attachments: Arc::new(NoFiles),
    };
    let errors = Registry::build(&config.tools, &config.agents, &services).unwrap_err();
    let message = errors[0].to_string();
    assert!(message.contains("tools.warehouse"), "{message}");
    assert!(message.contains("127.0.0.1"), "{message}");
}

#[tokio::test]
async fn tools_of_a_stdio_server_with_only_its_configured_environment() {
    let registry = registry(&format!(
        "[tools.warehouse]\ntype = \"mcp\"\ncommand = [\"{PEER}\", \"stdio\"]\n\
         env = {{ PEER_SECRET = \"from-config\" }}\n\
         allowed_tools = [\"lookup_order\", \"whoami\", \"fail\"]\n"
    ));
    behaves_as_an_mcp_client(&registry, "warehouse", "from-config").await;
    let whoami = named(&tools(&registry, "warehouse").await, "whoami")
        .call(json!({}), &context())
        .await
        .unwrap();
    assert!(
        whoami.text.contains("home_inherited=false"),
        "the server's process gets only `env` and PATH: {}",
        whoami.text
    );
}
