//! `[agents]`: the bounds of `/v1/responses` runs.

use serde::Deserialize;

/// How the model is asked to call tools, per model alias (`tool_protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolProtocol {
    /// The target's own tool calls.
    #[default]
    Native,
    /// The ReAct text protocol (Thought / Action / Action Input / Observation / Final
    /// Answer), for targets without native tool calls.
    React,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentsConfig {
    /// Model turns per response; the last turn is offered no tools.
    pub max_steps: u32,
    /// Tool calls Landfall runs per response (a request's `max_tool_calls` may lower it).
    pub max_tool_calls: u32,
    /// Each tool call's timeout.
    pub tool_timeout_ms: u64,
    /// A whole response's deadline.
    pub deadline_ms: u64,
    /// Private, loopback or link-local hosts, addresses or networks that the MCP servers a
    /// request names (`{"type": "mcp", "server_url": …}`) may be on; public ones always may.
    pub mcp_allow_private: Vec<String>,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            max_steps: 8,
            max_tool_calls: 16,
            tool_timeout_ms: 30_000,
            deadline_ms: 300_000,
            mcp_allow_private: Vec::new(),
        }
    }
}

impl AgentsConfig {
    /// `(path, message)` for every value out of range.
    #[must_use]
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if !(1..=64).contains(&self.max_steps) {
            problems.push(("agents.max_steps", "must be between 1 and 64".to_owned()));
        }
        if self.max_tool_calls > 256 {
            problems.push(("agents.max_tool_calls", "must be at most 256".to_owned()));
        }
        if self.tool_timeout_ms == 0 {
            problems.push(("agents.tool_timeout_ms", "must be positive".to_owned()));
        }
        if self.deadline_ms < self.tool_timeout_ms {
            problems.push((
                "agents.deadline_ms",
                "must be at least agents.tool_timeout_ms".to_owned(),
            ));
        }
        problems
    }
}
