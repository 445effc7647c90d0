//! Matchers compiled from their specs: leaves that find spans (words, regex, PII, injection,
//! JSON Schema) and the condition tree (`all`, `any`, `not`) that decides over the leaves.

use std::path::Path;
use std::sync::Arc;

use landfall_config::MatcherSpec;
use regex::Regex;

use crate::injection::Patterns;
use crate::normalize::Folded;
use crate::pii::{MAX_PII_BYTES, Pii};
use crate::scan::{Span, Window, ceil_boundary};
use crate::words::{DEFAULT_MAX_GAP, Words, parse_dictionary};

/// Longest match of a `regex` matcher when its pattern is unbounded and the rule does not say.
pub const DEFAULT_MAX_CHARS: usize = 64;

#[derive(Debug)]
pub(crate) enum Leaf {
    Words(Words),
    Regex {
        regex: Regex,
        max_bytes: usize,
    },
    Pii(Pii),
    Injection {
        patterns: Arc<Patterns>,
        threshold: f64,
    },
    Schema(Box<jsonschema::Validator>),
}

#[derive(Debug)]
pub(crate) enum Condition {
    Leaf(usize),
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
}

/// What one leaf has found so far in one text.
#[derive(Debug, Default)]
pub(crate) struct LeafState {
    pub spans: Vec<Span>,
    /// Where each regex resumes (one per pattern for injection).
    resume: Vec<usize>,
    /// Why the text fails its schema, once checked.
    pub violation: Option<String>,
}

/// Compiles a matcher into `leaves` and returns its condition.
///
/// # Errors
/// The first problem, with the dotted path below the matcher (`all[1].regex`).
pub(crate) fn compile(
    spec: &MatcherSpec,
    patterns: &Arc<Patterns>,
    leaves: &mut Vec<Leaf>,
) -> Result<Condition, (String, String)> {
    let mut leaf = |leaf: Leaf| {
        leaves.push(leaf);
        Ok(Condition::Leaf(leaves.len() - 1))
    };
    if !spec.words.is_empty() || !spec.words_files.is_empty() {
        let mut terms = spec.words.clone();
        for (index, path) in spec.words_files.iter().enumerate() {
            let text = read_dictionary(path)
                .map_err(|message| (format!("words_files[{index}]"), message))?;
            terms.extend(parse_dictionary(&text));
        }
        let words = Words::new(&terms, spec.max_gap.unwrap_or(DEFAULT_MAX_GAP))
            .map_err(|message| ("words".to_owned(), message))?;
        return leaf(Leaf::Words(words));
    }
    if let Some(pattern) = &spec.regex {
        let regex = Regex::new(pattern).map_err(|error| ("regex".to_owned(), error.to_string()))?;
        let max_bytes = regex_max_bytes(pattern, spec.max_chars);
        return leaf(Leaf::Regex { regex, max_bytes });
    }
    if !spec.pii.is_empty() {
        return leaf(Leaf::Pii(Pii::new(&spec.pii)));
    }
    if let Some(threshold) = spec.injection {
        return leaf(Leaf::Injection {
            patterns: Arc::clone(patterns),
            threshold,
        });
    }
    if let Some(schema) = &spec.json_schema {
        let validator = jsonschema::validator_for(schema)
            .map_err(|error| ("json_schema".to_owned(), error.to_string()))?;
        return leaf(Leaf::Schema(Box::new(validator)));
    }
    let children = |key: &str, specs: &[MatcherSpec], leaves: &mut Vec<Leaf>| {
        specs
            .iter()
            .enumerate()
            .map(|(index, child)| {
                compile(child, patterns, leaves)
                    .map_err(|(path, message)| (format!("{key}[{index}].{path}"), message))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    if let Some(all) = &spec.all {
        return Ok(Condition::All(children("all", all, leaves)?));
    }
    if let Some(any) = &spec.any {
        return Ok(Condition::Any(children("any", any, leaves)?));
    }
    if let Some(not) = &spec.not {
        let child = compile(not, patterns, leaves)
            .map_err(|(path, message)| (format!("not.{path}"), message))?;
        return Ok(Condition::Not(Box::new(child)));
    }
    Err((String::new(), "the matcher sets no kind".to_owned()))
}

fn read_dictionary(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))
}

/// The longest match of a pattern in bytes: exact when the pattern is bounded, else
/// `max_chars` (or the default) characters of up to 4 bytes.
pub(crate) fn regex_max_bytes(pattern: &str, max_chars: Option<usize>) -> usize {
    let declared = max_chars.map(|chars| chars.saturating_mul(4));
    let exact = regex_syntax::parse(pattern)
        .ok()
        .and_then(|hir| hir.properties().maximum_len());
    match (exact, declared) {
        (Some(exact), Some(declared)) => exact.min(declared),
        (Some(exact), None) => exact,
        (None, Some(declared)) => declared,
        (None, None) => DEFAULT_MAX_CHARS * 4,
    }
}

/// Matches of `regex` starting in the window, searching from `start` over the whole text so
/// look-around sees the context, skipping matches longer than `max_bytes`. Returns where the
/// next search resumes.
pub(crate) fn find_regex(
    regex: &Regex,
    max_bytes: usize,
    window: &Window<'_>,
    start: usize,
    tag: u32,
    spans: &mut Vec<Span>,
) -> usize {
    let text = window.text;
    let mut position = start;
    while position < window.cut {
        let Some(found) = regex.find_at(text, position) else {
            return window.cut;
        };
        if found.start() >= window.cut {
            return window.cut;
        }
        if found.is_empty() || found.len() > max_bytes {
            position = ceil_boundary(text, found.start() + 1);
            continue;
        }
        spans.push(Span::new(found.start(), found.end(), tag));
        position = found.end();
    }
    position
}

impl Leaf {
    /// Longest span it reports, in bytes (0 for whole-text checks).
    pub(crate) fn max_bytes(&self) -> usize {
        match self {
            Self::Words(words) => words.max_bytes(),
            Self::Regex { max_bytes, .. } => *max_bytes,
            Self::Pii(_) => MAX_PII_BYTES,
            Self::Injection { patterns, .. } => patterns.max_bytes(),
            Self::Schema(_) => 0,
        }
    }

    pub(crate) fn whole_text_only(&self) -> bool {
        matches!(self, Self::Schema(_))
    }

    pub(crate) fn state(&self) -> LeafState {
        let resume = match self {
            Self::Regex { .. } => vec![0],
            Self::Injection { patterns, .. } => vec![0; patterns.len()],
            _ => Vec::new(),
        };
        LeafState {
            resume,
            ..LeafState::default()
        }
    }

    /// Adds the spans starting in the window; on the last window, checks the whole text.
    pub(crate) fn scan(
        &self,
        window: &Window<'_>,
        last: bool,
        state: &mut LeafState,
        folded: &mut Folded,
    ) {
        match self {
            Self::Words(words) => words.find(window, &mut state.spans),
            Self::Regex { regex, max_bytes } => {
                let start = window.from.max(state.resume[0]);
                state.resume[0] = find_regex(regex, *max_bytes, window, start, 0, &mut state.spans);
            }
            Self::Pii(pii) => pii.find(window, &mut state.spans),
            Self::Injection { patterns, .. } => {
                patterns.find(window, &mut state.resume, folded, &mut state.spans);
            }
            Self::Schema(validator) => {
                if last {
                    state.violation = schema_violation(validator, window.text);
                }
            }
        }
    }

    /// Whether what was found makes the leaf true.
    pub(crate) fn holds(&self, state: &LeafState) -> bool {
        match self {
            Self::Injection {
                patterns,
                threshold,
            } => score(patterns, &state.spans) >= *threshold,
            Self::Schema(_) => state.violation.is_some(),
            Self::Words(_) | Self::Regex { .. } | Self::Pii(_) => !state.spans.is_empty(),
        }
    }

    /// What to record about the hit without repeating sensitive text: kinds of personal data,
    /// injection pattern ids, the schema violation.
    pub(crate) fn details(&self, state: &LeafState, into: &mut Vec<String>) {
        let mut push = |detail: String| {
            if !into.contains(&detail) {
                into.push(detail);
            }
        };
        match self {
            Self::Pii(_) => {
                for span in &state.spans {
                    push(Pii::kind_of(span.tag).name().to_owned());
                }
            }
            Self::Injection { patterns, .. } => {
                for span in &state.spans {
                    if let Some(pattern) = patterns.get(span.tag) {
                        push(pattern.id.clone());
                    }
                }
            }
            Self::Schema(_) => {
                if let Some(violation) = &state.violation {
                    push(violation.clone());
                }
            }
            Self::Words(_) | Self::Regex { .. } => {}
        }
    }
}

fn score(patterns: &Patterns, spans: &[Span]) -> f64 {
    let mut seen: Vec<u32> = spans.iter().map(|span| span.tag).collect();
    seen.sort_unstable();
    seen.dedup();
    seen.iter()
        .filter_map(|tag| patterns.get(*tag))
        .map(|pattern| pattern.weight)
        .sum()
}

/// Why `text` is not JSON valid against the schema. A reply wrapped in one Markdown code
/// fence is unwrapped first, as models often do that.
fn schema_violation(validator: &jsonschema::Validator, text: &str) -> Option<String> {
    let body = unfence(text.trim());
    let value: serde_json::Value = match serde_json::from_str(body) {
        Ok(value) => value,
        Err(error) => return Some(format!("not valid JSON: {error}")),
    };
    validator.iter_errors(&value).next().map(|error| {
        let path = error.instance_path().to_string();
        if path.is_empty() {
            error.to_string()
        } else {
            format!("{path}: {error}")
        }
    })
}

fn unfence(text: &str) -> &str {
    let Some(rest) = text.strip_prefix("```") else {
        return text;
    };
    let Some(body) = rest.strip_suffix("```") else {
        return text;
    };
    body.split_once('\n').map_or(body, |(_, body)| body).trim()
}

impl Condition {
    pub(crate) fn holds(&self, leaves: &[Leaf], states: &[LeafState]) -> bool {
        match self {
            Self::Leaf(index) => leaves[*index].holds(&states[*index]),
            Self::All(children) => children.iter().all(|child| child.holds(leaves, states)),
            Self::Any(children) => children.iter().any(|child| child.holds(leaves, states)),
            Self::Not(child) => !child.holds(leaves, states),
        }
    }

    /// Whether the condition can only be decided on the whole text (`not`, schemas): it may
    /// turn false again as text arrives.
    pub(crate) fn needs_whole_text(&self, leaves: &[Leaf]) -> bool {
        match self {
            Self::Leaf(index) => leaves[*index].whole_text_only(),
            Self::All(children) | Self::Any(children) => {
                children.iter().any(|child| child.needs_whole_text(leaves))
            }
            Self::Not(_) => true,
        }
    }

    /// Whether it holds as soon as any one leaf finds something (a leaf, or `any` of such):
    /// then every span it masks is found after it fired, so a stream can mask as it goes.
    pub(crate) fn fires_per_span(&self, leaves: &[Leaf]) -> bool {
        match self {
            Self::Leaf(index) => {
                !matches!(leaves[*index], Leaf::Injection { .. } | Leaf::Schema(_))
            }
            Self::Any(children) => children.iter().all(|child| child.fires_per_span(leaves)),
            Self::All(_) | Self::Not(_) => false,
        }
    }

    /// Leaves whose spans count for the rule (not those under `not`).
    pub(crate) fn positive_leaves(&self, into: &mut Vec<usize>) {
        match self {
            Self::Leaf(index) => into.push(*index),
            Self::All(children) | Self::Any(children) => {
                for child in children {
                    child.positive_leaves(into);
                }
            }
            Self::Not(_) => {}
        }
    }
}
