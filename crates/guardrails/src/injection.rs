//! The built-in prompt-injection and jailbreak patterns (`rules/injection.toml`), compiled once
//! per engine. A rule's `injection = SCORE` fires when the weights of the distinct patterns
//! found reach the score.

use std::sync::{Arc, OnceLock};

use regex::Regex;
use serde::Deserialize;

use crate::normalize::{Folded, gaps_within};
use crate::scan::{Span, Window};

const RULES: &str = include_str!("../rules/injection.toml");
/// Separators allowed between two characters of a folded pattern's match.
const MAX_GAP: usize = 4;

#[derive(Debug)]
pub(crate) struct Patterns {
    patterns: Vec<Pattern>,
}

#[derive(Debug)]
pub(crate) struct Pattern {
    pub id: String,
    pub weight: f64,
    regex: Regex,
    folded: bool,
    max_bytes: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    pattern: Vec<PatternSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatternSpec {
    id: String,
    weight: f64,
    regex: String,
    #[serde(default)]
    on: On,
    max_chars: Option<usize>,
}

#[derive(Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum On {
    #[default]
    Folded,
    Original,
}

impl Patterns {
    /// The built-in set, compiled once per process (every rule-set compile shares it).
    ///
    /// # Errors
    /// When the embedded rule set does not parse (a bug caught by the tests).
    pub(crate) fn shared() -> Result<Arc<Self>, String> {
        static SHARED: OnceLock<Result<Arc<Patterns>, String>> = OnceLock::new();
        SHARED.get_or_init(|| Self::builtin().map(Arc::new)).clone()
    }

    fn builtin() -> Result<Self, String> {
        let file: File =
            toml::from_str(RULES).map_err(|error| format!("injection rules: {error}"))?;
        let mut patterns = Vec::with_capacity(file.pattern.len());
        for spec in file.pattern {
            let regex = Regex::new(&spec.regex)
                .map_err(|error| format!("injection pattern {}: {error}", spec.id))?;
            let folded = spec.on == On::Folded;
            let longest = crate::matcher::regex_max_bytes(&spec.regex, spec.max_chars);
            // A folded byte may come from a 4-byte character followed by separators.
            let max_bytes = if folded {
                longest.saturating_mul(4).saturating_mul(MAX_GAP + 1)
            } else {
                longest
            };
            patterns.push(Pattern {
                id: spec.id,
                weight: spec.weight,
                regex,
                folded,
                max_bytes,
            });
        }
        Ok(Self { patterns })
    }

    pub(crate) fn len(&self) -> usize {
        self.patterns.len()
    }

    pub(crate) fn get(&self, tag: u32) -> Option<&Pattern> {
        self.patterns.get(tag as usize)
    }

    pub(crate) fn max_bytes(&self) -> usize {
        self.patterns
            .iter()
            .map(|pattern| pattern.max_bytes)
            .max()
            .unwrap_or(0)
    }

    /// Matches of every pattern starting in the window, each pattern resuming where its last
    /// match ended (`resume`, one per pattern), as a whole-text search would.
    pub(crate) fn find(
        &self,
        window: &Window<'_>,
        resume: &mut [usize],
        folded: &mut Folded,
        spans: &mut Vec<Span>,
    ) {
        let text = window.text;
        for (tag, (pattern, resume)) in self.patterns.iter().zip(resume.iter_mut()).enumerate() {
            let tag = u32::try_from(tag).unwrap_or(u32::MAX);
            let start = window.from.max(*resume);
            if start >= window.cut {
                continue;
            }
            if !pattern.folded {
                *resume = crate::matcher::find_regex(
                    &pattern.regex,
                    pattern.max_bytes,
                    window,
                    start,
                    tag,
                    spans,
                );
                continue;
            }
            folded.fold(text, start, window.scan_end(pattern.max_bytes));
            let mut next = window.cut;
            for found in pattern.regex.find_iter(&folded.text) {
                if found.is_empty() {
                    continue;
                }
                let (from, to) = folded.original_span(text, found.start(), found.end());
                if from >= window.cut {
                    break;
                }
                // The search goes on after this match whether or not it counts, as it would
                // over the whole text.
                next = to;
                if to - from > pattern.max_bytes
                    || !gaps_within(
                        text,
                        folded.origins(text, found.start(), found.end()),
                        MAX_GAP,
                    )
                {
                    continue;
                }
                spans.push(Span::new(from, to, tag));
            }
            *resume = next.max(window.cut);
        }
    }
}
