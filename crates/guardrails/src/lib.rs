//! Guardrails: rules on what goes into models and what comes out — sensitive-word
//! dictionaries, regular expressions, validated personal data, prompt-injection patterns,
//! JSON Schemas and conditions over them — with block, mask, warn and review actions, grouped
//! into policies attached to tenants, keys and model aliases.
//!
//! [`Guardrails::compile`] turns the configuration into a rule set; [`Guardrails::select`]
//! picks a request's rules; a [`Selection`] checks whole texts ([`Selection::check`]) or
//! scans a streamed answer ([`Selection::stream`]) with the same decisions whatever the
//! chunking. This crate decides; it does not know HTTP, storage or the review queue's records.

mod engine;
mod error;
mod injection;
mod matcher;
mod normalize;
mod pii;
mod scan;
mod scanner;
mod words;

pub use engine::{Guardrails, Selection, Subject};
pub use error::GuardrailsError;
pub use landfall_config::{
    Action, GuardrailsConfig, MatcherSpec, PiiKind, PolicySpec, RuleSpec, Severity, Stage,
};
pub use matcher::DEFAULT_MAX_CHARS;
pub use scanner::{Hit, OutputStream, Released, TooLong, Verdict};
pub use words::DEFAULT_MAX_GAP;

/// Folds text as dictionaries see it (for tools that prepare dictionaries and for tests).
#[must_use]
pub fn fold(text: &str) -> String {
    normalize::fold_str(text)
}
