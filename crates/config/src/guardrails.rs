//! The `guardrails` section: rules on what goes into and comes out of models, and the policies
//! that attach them to tenants, keys and model aliases. The same shapes are what the admin API
//! reads and writes, so they serialize as well as deserialize.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[guardrails]`: rules are listed once and referenced by policies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuardrailsConfig {
    /// `[[guardrails.rules]]`, in the order they are checked within a policy.
    pub rules: Vec<RuleSpec>,
    /// `[[guardrails.policies]]`, in the order their rules are applied.
    pub policies: Vec<PolicySpec>,
    /// What a client gets instead of an answer held for review; `{id}` becomes the review id.
    pub review_message: String,
    /// Longest text of one response that the scanner keeps, in bytes. A longer stream is
    /// ended with an error rather than scanned partially.
    pub max_text_bytes: usize,
}

impl Default for GuardrailsConfig {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            policies: Vec::new(),
            review_message:
                "This answer is waiting for review. Fetch it later from /v1/reviews/{id}."
                    .to_owned(),
            max_text_bytes: 4 * 1024 * 1024,
        }
    }
}

/// One rule: what it looks for, where, and what happens when it finds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Required in the file; the admin API takes it from the path.
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Where the rule runs (default: chat input and output).
    #[serde(default = "default_stages")]
    pub stages: Vec<Stage>,
    pub action: Action,
    #[serde(default)]
    pub severity: Severity,
    /// Shown to the client when the rule blocks, and recorded with every hit.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// What a masked span becomes: `None` replaces each character with `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_with: Option<String>,
    #[serde(rename = "match")]
    pub matcher: MatcherSpec,
}

fn default_stages() -> Vec<Stage> {
    vec![Stage::Input, Stage::Output]
}

/// Exactly one kind of matcher: a leaf (`words`/`words_files`, `regex`, `pii`, `injection`,
/// `json_schema`) or a condition over matchers (`all`, `any`, `not`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatcherSpec {
    /// Terms matched after normalization (case, full-width forms, traditional characters,
    /// separators inserted between characters).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub words: Vec<String>,
    /// Dictionary files, one term per line (`#` starts a comment); relative paths are
    /// from the working directory, like every path in the configuration.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub words_files: Vec<PathBuf>,
    /// Most separator characters allowed between two characters of a term (default 2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_gap: Option<usize>,
    /// A regular expression (Rust `regex` syntax) over the original text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Longest match of `regex` in characters (default 64); it bounds the stream hold-back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_chars: Option<usize>,
    /// Validated personal data detectors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pii: Vec<PiiKind>,
    /// The built-in prompt-injection and jailbreak patterns: the rule fires when the weights
    /// of the distinct patterns found reach this score.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub injection: Option<f64>,
    /// The output must be JSON valid against this schema; the rule fires when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all: Option<Vec<MatcherSpec>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub any: Option<Vec<MatcherSpec>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not: Option<Box<MatcherSpec>>,
}

impl MatcherSpec {
    /// The kinds this matcher sets; a valid matcher sets exactly one.
    #[must_use]
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut kinds = Vec::new();
        if !self.words.is_empty() || !self.words_files.is_empty() {
            kinds.push("words");
        }
        if self.regex.is_some() {
            kinds.push("regex");
        }
        if !self.pii.is_empty() {
            kinds.push("pii");
        }
        if self.injection.is_some() {
            kinds.push("injection");
        }
        if self.json_schema.is_some() {
            kinds.push("json_schema");
        }
        if self.all.is_some() {
            kinds.push("all");
        }
        if self.any.is_some() {
            kinds.push("any");
        }
        if self.not.is_some() {
            kinds.push("not");
        }
        kinds
    }
}

/// Which policies apply to a request: those naming its tenant, key or model alias, and those
/// for everyone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// Required in the file; the admin API takes it from the path.
    #[serde(default)]
    pub id: String,
    /// Rule ids, applied in this order.
    pub rules: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<String>,
    /// Key ids (`lf-<id>-…` secrets name their id).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// Model aliases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// Applies to every request.
    #[serde(default)]
    pub everyone: bool,
    /// Report what the rules would do (audit, metrics, headers) without doing it.
    #[serde(default)]
    pub dry_run: bool,
}

/// Where in a request a rule runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Chat messages from the client (system, user, assistant) and embeddings input.
    Input,
    /// What the model answers, whole or streamed.
    Output,
    /// Chunks retrieved from knowledge bases before they enter a prompt.
    Retrieved,
    /// Tool results (`tool` messages) before they reach the model.
    Tool,
}

impl Stage {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Input => "input",
            Self::Output => "output",
            Self::Retrieved => "retrieved",
            Self::Tool => "tool",
        }
    }
}

/// What a rule does when it fires. When several fire, the strongest wins:
/// block > review > mask > warn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Annotate the response and record the hit.
    Warn,
    /// Replace the matched text.
    Mask,
    /// Hold the output until a reviewer approves it (output only).
    Review,
    /// Refuse the request (input) or end the answer with an error (output).
    Block,
}

impl Action {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Warn => "warn",
            Self::Mask => "mask",
            Self::Review => "review",
            Self::Block => "block",
        }
    }
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    #[default]
    Medium,
    High,
    Critical,
}

impl Severity {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

/// Personal data a `pii` matcher finds; each is validated, not only matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    /// Mainland China resident ID (18 characters: region, birth date, ISO 7064 checksum).
    CnResidentId,
    /// Mainland China mobile number (11 digits from 13x–19x, optionally +86).
    CnMobile,
    /// Payment card number (13–19 digits, Luhn checksum).
    BankCard,
    Email,
    /// IPv4 or IPv6 address.
    IpAddress,
    /// Passport numbers of the People's Republic of China (E/G + 8 digits, E + letter + 7, …).
    Passport,
    /// International phone number in E.164 form (`+` country code, 8–15 digits).
    Phone,
}

impl PiiKind {
    pub const ALL: [Self; 7] = [
        Self::CnResidentId,
        Self::CnMobile,
        Self::BankCard,
        Self::Email,
        Self::IpAddress,
        Self::Passport,
        Self::Phone,
    ];

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::CnResidentId => "cn_resident_id",
            Self::CnMobile => "cn_mobile",
            Self::BankCard => "bank_card",
            Self::Email => "email",
            Self::IpAddress => "ip_address",
            Self::Passport => "passport",
            Self::Phone => "phone",
        }
    }
}

impl GuardrailsConfig {
    /// Structural problems (duplicate ids, dangling references, matchers of no or several
    /// kinds, actions not allowed at a stage), each with its path. Compiling the rules
    /// (regexes, dictionaries, schemas) is the guardrails crate's job.
    #[must_use]
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (index, rule) in self.rules.iter().enumerate() {
            let path = format!("guardrails.rules[{index}]");
            if rule.id.trim().is_empty() {
                problems.push((format!("{path}.id"), "must not be empty".to_owned()));
            } else if !seen.insert(rule.id.as_str()) {
                problems.push((
                    format!("{path}.id"),
                    format!("duplicate rule id `{}`", rule.id),
                ));
            }
            if rule.stages.is_empty() {
                problems.push((
                    format!("{path}.stages"),
                    "must name at least one stage".to_owned(),
                ));
            }
            if rule.action == Action::Review
                && rule.stages.iter().any(|stage| *stage != Stage::Output)
            {
                problems.push((
                    format!("{path}.action"),
                    "`review` holds answers, so the rule's stages must be [\"output\"]".to_owned(),
                ));
            }
            matcher_problems(&rule.matcher, &format!("{path}.match"), &mut problems);
        }
        let mut policies = std::collections::HashSet::new();
        for (index, policy) in self.policies.iter().enumerate() {
            let path = format!("guardrails.policies[{index}]");
            if policy.id.trim().is_empty() {
                problems.push((format!("{path}.id"), "must not be empty".to_owned()));
            } else if !policies.insert(policy.id.as_str()) {
                problems.push((
                    format!("{path}.id"),
                    format!("duplicate policy id `{}`", policy.id),
                ));
            }
            for (position, rule) in policy.rules.iter().enumerate() {
                if !seen.contains(rule.as_str()) {
                    problems.push((
                        format!("{path}.rules[{position}]"),
                        format!("no rule has id `{rule}`"),
                    ));
                }
            }
        }
        if self.max_text_bytes == 0 {
            problems.push((
                "guardrails.max_text_bytes".to_owned(),
                "must be at least 1".to_owned(),
            ));
        }
        problems
    }
}

fn matcher_problems(matcher: &MatcherSpec, path: &str, problems: &mut Vec<(String, String)>) {
    let kinds = matcher.kinds();
    match kinds.as_slice() {
        [] => problems.push((
            path.to_owned(),
            "needs one of words, words_files, regex, pii, injection, json_schema, all, any, not"
                .to_owned(),
        )),
        [_] => {}
        several => problems.push((
            path.to_owned(),
            format!(
                "sets {}; a matcher has exactly one kind (combine them with `all` or `any`)",
                several.join(" and ")
            ),
        )),
    }
    if matcher.max_gap.is_some() && !kinds.contains(&"words") {
        problems.push((
            format!("{path}.max_gap"),
            "applies to words only".to_owned(),
        ));
    }
    if matcher.max_chars.is_some() && !kinds.contains(&"regex") {
        problems.push((
            format!("{path}.max_chars"),
            "applies to regex only".to_owned(),
        ));
    }
    if matcher.max_chars == Some(0) {
        problems.push((format!("{path}.max_chars"), "must be at least 1".to_owned()));
    }
    if let Some(score) = matcher.injection
        && !(score.is_finite() && score > 0.0)
    {
        problems.push((
            format!("{path}.injection"),
            "must be a score above 0".to_owned(),
        ));
    }
    for (key, children) in [("all", &matcher.all), ("any", &matcher.any)] {
        let Some(children) = children else { continue };
        if children.is_empty() {
            problems.push((
                format!("{path}.{key}"),
                "must list at least one matcher".to_owned(),
            ));
        }
        for (index, child) in children.iter().enumerate() {
            matcher_problems(child, &format!("{path}.{key}[{index}]"), problems);
        }
    }
    if let Some(child) = &matcher.not {
        matcher_problems(child, &format!("{path}.not"), problems);
    }
}
