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

#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    /// Turns of earlier conversation (`previous_response_id`, `conversation`) a response
    /// sends, a turn starting at a user message; 0 sends all. Older turns are left out, or
    /// replaced by the conversation's summary once one is written.
    pub history_turns: u32,
    /// Tokens of earlier conversation a response sends at most (estimated; whole turns are
    /// dropped, oldest first, never the last); 0 is no budget.
    pub history_tokens: u64,
    /// Long-term memories of the end user (a request's `user`) recalled into a response by
    /// similarity to its input; 0 recalls none.
    pub memory_recall: u32,
    /// Least cosine similarity of a recalled memory.
    pub memory_min_score: f32,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            max_steps: 8,
            max_tool_calls: 16,
            tool_timeout_ms: 30_000,
            deadline_ms: 300_000,
            mcp_allow_private: Vec::new(),
            history_turns: 50,
            history_tokens: 0,
            memory_recall: 5,
            memory_min_score: 0.3,
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
        if self.memory_recall > 50 {
            problems.push(("agents.memory_recall", "must be at most 50".to_owned()));
        }
        if !(-1.0..=1.0).contains(&self.memory_min_score) {
            problems.push((
                "agents.memory_min_score",
                "must be between -1 and 1".to_owned(),
            ));
        }
        problems
    }
}
