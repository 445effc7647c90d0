//! Rules and policies compiled once per configuration version, and the choice of rules for a
//! request: the policies naming its tenant, key or model alias (or everyone), in order, each
//! rule once.

use std::sync::Arc;

use landfall_config::{Action, GuardrailsConfig, RuleSpec, Stage};

use crate::GuardrailsError;
use crate::injection::Patterns;
use crate::matcher::{Condition, Leaf};
use crate::scanner::{OutputStream, Scanner, Verdict};

/// The compiled rule set. Cheap to share; a new configuration compiles a new one.
#[derive(Debug)]
pub struct Guardrails {
    rules: Vec<Rule>,
    policies: Vec<Policy>,
    pub(crate) review_message: String,
    pub(crate) max_text_bytes: usize,
    version: u64,
}

#[derive(Debug)]
pub(crate) struct Rule {
    pub spec: RuleSpec,
    pub leaves: Vec<Leaf>,
    pub condition: Condition,
    pub positive: Vec<usize>,
    /// The rule can act on a stream as it goes; otherwise its stream is held until the end.
    pub streams: bool,
    /// Its condition is decided on the whole text only (`not`, schemas).
    pub whole_text: bool,
    pub max_bytes: usize,
}

#[derive(Debug)]
struct Policy {
    tenants: Vec<String>,
    keys: Vec<String>,
    models: Vec<String>,
    everyone: bool,
    dry_run: bool,
    rules: Vec<usize>,
}

/// Who is asking: what policies attach to.
#[derive(Debug, Clone, Copy, Default)]
pub struct Subject<'a> {
    pub tenant_id: Option<&'a str>,
    pub key_id: Option<&'a str>,
    pub model: Option<&'a str>,
}

/// The rules that apply to one request, in order.
#[derive(Debug, Clone)]
pub struct Selection {
    pub(crate) engine: Arc<Guardrails>,
    /// Rule index and whether it only reports (dry run).
    pub(crate) rules: Vec<(usize, bool)>,
}

impl Guardrails {
    /// Compiles every rule and policy; `version` names the rule set in records and the API.
    ///
    /// # Errors
    /// Every problem found, each with its path (`guardrails.rules[2].match.regex`).
    pub fn compile(config: &GuardrailsConfig, version: u64) -> Result<Self, GuardrailsError> {
        let mut problems = config.problems();
        let patterns = match Patterns::shared() {
            Ok(patterns) => patterns,
            Err(message) => return Err(GuardrailsError::Invalid(vec![(String::new(), message)])),
        };
        crate::normalize::warm_up();
        let mut rules = Vec::with_capacity(config.rules.len());
        for (index, spec) in config.rules.iter().enumerate() {
            let mut leaves = Vec::new();
            match crate::matcher::compile(&spec.matcher, &patterns, &mut leaves) {
                Ok(condition) => rules.push(Rule::new(spec.clone(), leaves, condition)),
                Err((path, message)) => {
                    let path = if path.is_empty() {
                        format!("guardrails.rules[{index}].match")
                    } else {
                        format!("guardrails.rules[{index}].match.{path}")
                    };
                    problems.push((path, message));
                }
            }
        }
        if !problems.is_empty() {
            return Err(GuardrailsError::Invalid(problems));
        }
        let position = |id: &str| rules.iter().position(|rule: &Rule| rule.spec.id == id);
        let policies = config
            .policies
            .iter()
            .map(|policy| Policy {
                tenants: policy.tenants.clone(),
                keys: policy.keys.clone(),
                models: policy.models.clone(),
                everyone: policy.everyone,
                dry_run: policy.dry_run,
                rules: policy.rules.iter().filter_map(|id| position(id)).collect(),
            })
            .collect();
        Ok(Self {
            rules,
            policies,
            review_message: config.review_message.clone(),
            max_text_bytes: config.max_text_bytes,
            version,
        })
    }

    #[must_use]
    pub fn version(&self) -> u64 {
        self.version
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.policies.iter().all(|policy| policy.rules.is_empty())
    }

    /// The rules for a request, or `None` when none apply. A rule in several policies runs
    /// once, live if any of them is live.
    #[must_use]
    pub fn select(self: &Arc<Self>, subject: &Subject<'_>) -> Option<Selection> {
        let mut rules: Vec<(usize, bool)> = Vec::new();
        for policy in &self.policies {
            let named = |names: &[String], value: Option<&str>| {
                value.is_some_and(|value| names.iter().any(|name| name == value))
            };
            let applies = policy.everyone
                || named(&policy.tenants, subject.tenant_id)
                || named(&policy.keys, subject.key_id)
                || named(&policy.models, subject.model);
            if !applies {
                continue;
            }
            for rule in &policy.rules {
                match rules.iter_mut().find(|(index, _)| index == rule) {
                    Some((_, dry_run)) => *dry_run &= policy.dry_run,
                    None => rules.push((*rule, policy.dry_run)),
                }
            }
        }
        (!rules.is_empty()).then(|| Selection {
            engine: Arc::clone(self),
            rules,
        })
    }

    /// Exactly the rules named, live, for checks that name no subject (the admin dry run).
    #[must_use]
    pub fn select_rules(self: &Arc<Self>, ids: &[String]) -> Option<Selection> {
        let rules: Vec<(usize, bool)> = ids
            .iter()
            .filter_map(|id| self.rules.iter().position(|rule| rule.spec.id == *id))
            .map(|index| (index, false))
            .collect();
        (!rules.is_empty()).then(|| Selection {
            engine: Arc::clone(self),
            rules,
        })
    }

    pub(crate) fn rule(&self, index: usize) -> &Rule {
        &self.rules[index]
    }
}

impl Rule {
    fn new(spec: RuleSpec, leaves: Vec<Leaf>, condition: Condition) -> Self {
        let mut positive = Vec::new();
        condition.positive_leaves(&mut positive);
        let whole = condition.needs_whole_text(&leaves);
        let streams = match spec.action {
            Action::Warn => true,
            Action::Block => !whole,
            Action::Mask => !whole && condition.fires_per_span(&leaves),
            Action::Review => false,
        };
        let max_bytes = leaves.iter().map(Leaf::max_bytes).max().unwrap_or(0);
        Self {
            spec,
            leaves,
            condition,
            positive,
            streams,
            whole_text: whole,
            max_bytes,
        }
    }

    pub(crate) fn runs_at(&self, stage: Stage) -> bool {
        self.spec.stages.contains(&stage)
    }
}

impl Selection {
    /// Whether any rule runs at `stage`.
    #[must_use]
    pub fn applies(&self, stage: Stage) -> bool {
        self.rules
            .iter()
            .any(|(index, _)| self.engine.rule(*index).runs_at(stage))
    }

    /// Whether a live rule may hold the answer for review (such answers are not cached).
    #[must_use]
    pub fn may_review(&self) -> bool {
        self.rules.iter().any(|(index, dry_run)| {
            let rule = self.engine.rule(*index);
            !dry_run && rule.spec.action == Action::Review && rule.runs_at(Stage::Output)
        })
    }

    /// Checks a whole text at `stage`.
    #[must_use]
    pub fn check(&self, stage: Stage, text: &str) -> Verdict {
        let mut scanner = Scanner::new(self, stage);
        scanner.whole(text)
    }

    /// A scanner for a streamed answer.
    #[must_use]
    pub fn stream(&self) -> OutputStream {
        OutputStream::new(
            Scanner::new(self, Stage::Output),
            self.engine.max_text_bytes,
        )
    }

    /// The text a held answer is replaced with.
    #[must_use]
    pub fn review_message(&self, review_id: &str) -> String {
        self.engine.review_message.replace("{id}", review_id)
    }
}
