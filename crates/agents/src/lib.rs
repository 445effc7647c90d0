//! Agents: the loop in which a model calls tools until it answers, and the tools it calls.
//!
//! The loop ([`run`]) is transport-free: it asks a [`Model`] for one turn at a time (native
//! tool calls, or the ReAct text protocol for targets without them), runs the tools the model
//! asked for inside the caller's [`Toolbox`] (arguments validated against each tool's schema,
//! a timeout per call, one deadline for the whole run), and hands every step to [`Hooks`] so
//! the caller can stream it, check tool results against its rules, and audit it.
//!
//! This crate must not know HTTP servers, governance or storage: the server decides which
//! tools a caller may use, admits and settles every model turn, and stores what was said.

mod error;
mod history;
pub mod prompt;
mod react;
mod run;
mod tool;

pub use error::{AgentError, ToolError};
pub use history::window_start;
pub use prompt::{CompiledPrompt, PromptError, PromptTemplate, RenderedPrompt};
pub use react::{
    ReactStep, STOP as REACT_STOP, parse as parse_react, system_prompt as react_prompt,
};
pub use run::{
    CallItem, Checked, Event, Hooks, Item, Limits, Model, ModelTurn, NoHooks, OnText, Protocol,
    Resumed, Run, RunRequest, StepKind, StepRecord, StopReason, observation, run,
};
pub use tool::{Tool, ToolContext, ToolOutput, ToolSpec, Toolbox};
