//! Table tests per matcher (Chinese and English positives, negatives, evasions), the built-in
//! injection set, domain rules, and property tests that any split of a stream decides as the
//! whole text does.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: failing loudly is the point"
)]

mod domain;
mod injection;
mod pii;
mod stream;
mod words;

use std::sync::Arc;

use landfall_guardrails::{Guardrails, GuardrailsConfig, Selection, Stage, Subject, Verdict};

/// A rule set from TOML rules, all in one policy for everyone.
pub fn rules(toml_rules: &str) -> Arc<Guardrails> {
    let mut config: GuardrailsConfig = match toml::from_str(toml_rules) {
        Ok(config) => config,
        Err(error) => panic!("bad test rules: {error}"),
    };
    let ids = config.rules.iter().map(|rule| rule.id.clone()).collect();
    config.policies.push(landfall_guardrails_test_policy(ids));
    match Guardrails::compile(&config, 1) {
        Ok(engine) => Arc::new(engine),
        Err(error) => panic!("rules do not compile: {error}"),
    }
}

pub fn landfall_guardrails_test_policy(rules: Vec<String>) -> landfall_guardrails::PolicySpec {
    landfall_guardrails::PolicySpec {
        id: "test".to_owned(),
        rules,
        tenants: Vec::new(),
        keys: Vec::new(),
        models: Vec::new(),
        everyone: true,
        dry_run: false,
    }
}

pub fn selection(engine: &Arc<Guardrails>) -> Selection {
    match engine.select(&Subject::default()) {
        Some(selection) => selection,
        None => panic!("no rule selected"),
    }
}

pub fn check(engine: &Arc<Guardrails>, text: &str) -> Verdict {
    selection(engine).check(Stage::Output, text)
}

/// Ids of the rules that fired.
pub fn fired(verdict: &Verdict) -> Vec<String> {
    verdict.hits.iter().map(|hit| hit.rule.clone()).collect()
}
