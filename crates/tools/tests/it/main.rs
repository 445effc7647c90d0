//! The tools against real peers on 127.0.0.1: an HTTP server that checks credentials the
//! way company APIs do, SQLite/PostgreSQL/MariaDB databases, and an SMTP server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod email;
mod http;
mod sql;

use std::sync::Arc;
use std::time::{Duration, Instant};

use landfall_agents::{Tool, ToolContext};
use landfall_config::{Environment, from_toml};
use landfall_tools::{Registry, Services};

struct NoFiles;

#[async_trait::async_trait]
impl landfall_tools::email::Attachments for NoFiles {
    async fn read(
        &self,
        _tenant_id: &str,
        file_id: &str,
    ) -> Result<landfall_tools::email::Attachment, String> {
        Err(format!("no file {file_id}"))
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

fn tool(registry: &Registry, entry: &str, name: &str) -> Arc<dyn Tool> {
    registry
        .get(entry)
        .unwrap_or_else(|| panic!("no entry {entry}"))
        .tools
        .iter()
        .find(|tool| tool.spec().name == name)
        .unwrap_or_else(|| panic!("no tool {name}"))
        .clone()
}

fn context(seconds: u64) -> ToolContext {
    ToolContext {
        tenant_id: "acme".to_owned(),
        key_id: "key_test".to_owned(),
        request_id: "req_test".to_owned(),
        deadline: Instant::now() + Duration::from_secs(seconds),
    }
}
