//! Running the selected rules over a text: whole (a request's messages, a complete answer) or
//! as it streams. Both go through the same windows (see `scan`), so a stream split anywhere
//! reaches the decisions the whole text would. A stream is released `holdback` bytes behind
//! what has arrived — more than any match spans — so a match split across chunks is caught
//! before any of it is sent, and masked spans go out already masked.

use std::sync::Arc;

use landfall_config::{Action, Severity, Stage};
use serde::Serialize;

use crate::engine::{Guardrails, Rule, Selection};
use crate::matcher::LeafState;
use crate::normalize::Folded;
use crate::scan::{Span, Window, floor_boundary};

/// Bytes past a match's end a matcher may look at (the next character, for word boundaries).
const LOOKAHEAD: usize = 4;

/// One rule that fired.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub rule: String,
    pub action: Action,
    pub stage: Stage,
    pub severity: Severity,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The rule only reported: nothing was blocked, masked or held.
    pub dry_run: bool,
    /// Spans found (0 for rules on the whole text, such as schemas and `not`).
    pub matches: usize,
    /// Kinds of personal data, injection pattern ids, the schema violation — never the
    /// matched text itself.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

/// What the rules decided about a whole text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    pub hits: Vec<Hit>,
    /// The text with masked spans replaced, when anything was masked.
    pub masked: Option<String>,
    /// The first live `block` hit.
    pub blocked: Option<Hit>,
    /// A live `review` rule fired: the answer must be held.
    pub review: bool,
}

pub(crate) struct Scanner {
    engine: Arc<Guardrails>,
    stage: Stage,
    runs: Vec<RuleRun>,
    folded: Folded,
    /// Matches starting before this were looked for.
    scanned: usize,
    pub holdback: usize,
    /// Every rule can act as the text streams; otherwise a stream is held to the end.
    pub streams: bool,
}

struct RuleRun {
    rule: usize,
    dry_run: bool,
    states: Vec<LeafState>,
    hit: Option<Hit>,
}

impl Scanner {
    pub(crate) fn new(selection: &Selection, stage: Stage) -> Self {
        let engine = Arc::clone(&selection.engine);
        let runs: Vec<RuleRun> = selection
            .rules
            .iter()
            .filter(|(index, _)| engine.rule(*index).runs_at(stage))
            .map(|(index, dry_run)| RuleRun {
                rule: *index,
                dry_run: *dry_run,
                states: engine
                    .rule(*index)
                    .leaves
                    .iter()
                    .map(|leaf| leaf.state())
                    .collect(),
                hit: None,
            })
            .collect();
        let rules = || runs.iter().map(|run| engine.rule(run.rule));
        let holdback = rules().map(|rule| rule.max_bytes).max().unwrap_or(0) + LOOKAHEAD;
        let streams = rules().all(|rule| rule.streams);
        Self {
            engine,
            stage,
            runs,
            folded: Folded::default(),
            scanned: 0,
            holdback,
            streams,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Looks for matches starting before `cut` (the end, when `last`). Returns the first live
    /// block that fired, if one did.
    fn scan(&mut self, text: &str, cut: usize, last: bool) -> Option<Hit> {
        let window = Window {
            text,
            from: self.scanned,
            cut,
        };
        let mut blocked = None;
        for run in &mut self.runs {
            let rule = self.engine.rule(run.rule);
            // Fired rules keep looking: masks mask every later span, and counts stay exact.
            for (leaf, state) in rule.leaves.iter().zip(run.states.iter_mut()) {
                leaf.scan(&window, last, state, &mut self.folded);
            }
            if run.hit.is_none()
                && (last || !rule.whole_text)
                && rule.condition.holds(&rule.leaves, &run.states)
            {
                run.hit = Some(hit(rule, self.stage, run.dry_run));
            }
            if let Some(hit) = &mut run.hit {
                describe(hit, rule, &run.states);
                if hit.action == Action::Block && !hit.dry_run && blocked.is_none() {
                    blocked = Some(hit.clone());
                }
            }
        }
        self.scanned = cut;
        blocked
    }

    /// The rules that fired, in rule order.
    pub(crate) fn hits(&self) -> Vec<Hit> {
        self.runs.iter().filter_map(|run| run.hit.clone()).collect()
    }

    /// Spans to mask that end after `from`, sorted, with what replaces them.
    fn masks(&self, from: usize) -> Vec<(Span, Option<&str>)> {
        let mut masks = Vec::new();
        for run in &self.runs {
            let rule = self.engine.rule(run.rule);
            if run.hit.is_none() || run.dry_run || rule.spec.action != Action::Mask {
                continue;
            }
            for leaf in &rule.positive {
                for span in &run.states[*leaf].spans {
                    if span.end > from {
                        masks.push((*span, rule.spec.mask_with.as_deref()));
                    }
                }
            }
        }
        masks.sort_by_key(|(span, _)| (span.start, span.end));
        masks
    }

    fn review(&self) -> bool {
        self.runs.iter().any(|run| {
            run.hit.is_some()
                && !run.dry_run
                && self.engine.rule(run.rule).spec.action == Action::Review
        })
    }

    pub(crate) fn whole(&mut self, text: &str) -> Verdict {
        if self.is_empty() {
            return Verdict::default();
        }
        let blocked = self.scan(text, text.len(), true);
        let masks = self.masks(0);
        let masked = (!masks.is_empty()).then(|| render(text, 0, text.len(), &masks));
        Verdict {
            hits: self.hits(),
            masked,
            blocked,
            review: self.review(),
        }
    }
}

fn hit(rule: &Rule, stage: Stage, dry_run: bool) -> Hit {
    Hit {
        rule: rule.spec.id.clone(),
        action: rule.spec.action,
        stage,
        severity: rule.spec.severity,
        message: rule.spec.message.clone(),
        dry_run,
        matches: 0,
        details: Vec::new(),
    }
}

fn describe(hit: &mut Hit, rule: &Rule, states: &[LeafState]) {
    hit.matches = rule
        .positive
        .iter()
        .map(|leaf| states[*leaf].spans.len())
        .sum();
    for leaf in &rule.positive {
        rule.leaves[*leaf].details(&states[*leaf], &mut hit.details);
    }
    for (leaf, state) in rule.leaves.iter().zip(states) {
        if state.violation.is_some() {
            leaf.details(state, &mut hit.details);
        }
    }
}

/// `text[from..to]` with the masked spans replaced: overlapping spans merge, and a merged span
/// takes the replacement of its first span (each character becomes `*` when it has none).
fn render(text: &str, from: usize, to: usize, masks: &[(Span, Option<&str>)]) -> String {
    let mut out = String::with_capacity(to - from);
    let mut position = from;
    let mut index = 0;
    while index < masks.len() {
        let (first, replacement) = masks[index];
        let mut end = first.end;
        index += 1;
        while index < masks.len() && masks[index].0.start < end {
            end = end.max(masks[index].0.end);
            index += 1;
        }
        let start = first.start.max(position);
        if start >= to || end <= position {
            continue;
        }
        out.push_str(&text[position..start]);
        let stop = end.min(to);
        match replacement {
            Some(replacement) => {
                if first.start >= position {
                    out.push_str(replacement);
                }
            }
            None => out.extend(text[start..stop].chars().map(|_| '*')),
        }
        position = stop;
    }
    if position < to {
        out.push_str(&text[position..to]);
    }
    out
}

/// What a stream releases after a chunk.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Released {
    /// Text safe to send now, masked.
    pub text: String,
    /// A live block fired: send nothing more, end with an error.
    pub blocked: Option<Hit>,
}

/// The guardrails of one streamed answer (one per choice).
pub struct OutputStream {
    scanner: Scanner,
    text: String,
    released: usize,
    max_text_bytes: usize,
    ended: bool,
}

impl std::fmt::Debug for OutputStream {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("OutputStream")
            .field("received", &self.text.len())
            .field("released", &self.released)
            .finish_non_exhaustive()
    }
}

/// The answer grew past `max_text_bytes`, so it can no longer be checked whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the answer is longer than the {max_text_bytes} bytes the guardrails scan")]
pub struct TooLong {
    pub max_text_bytes: usize,
}

impl OutputStream {
    pub(crate) fn new(scanner: Scanner, max_text_bytes: usize) -> Self {
        Self {
            scanner,
            text: String::new(),
            released: 0,
            max_text_bytes,
            ended: false,
        }
    }

    /// Whether the whole answer is held until it ends (a rule must see all of it).
    #[must_use]
    pub fn holds_everything(&self) -> bool {
        !self.scanner.streams
    }

    /// Takes the next piece of the answer and returns what may be sent.
    ///
    /// # Errors
    /// [`TooLong`] once the answer outgrows what the scanner keeps.
    pub fn push(&mut self, chunk: &str) -> Result<Released, TooLong> {
        if self.ended {
            return Ok(Released::default());
        }
        self.text.push_str(chunk);
        if self.text.len() > self.max_text_bytes {
            self.ended = true;
            return Err(TooLong {
                max_text_bytes: self.max_text_bytes,
            });
        }
        if self.scanner.is_empty() {
            let text = self.text[self.released..].to_owned();
            self.released = self.text.len();
            return Ok(Released {
                text,
                blocked: None,
            });
        }
        if !self.scanner.streams {
            return Ok(Released::default());
        }
        let cut = floor_boundary(
            &self.text,
            self.text.len().saturating_sub(self.scanner.holdback),
        );
        if cut <= self.scanner.scanned {
            return Ok(Released::default());
        }
        if let Some(blocked) = self.scanner.scan(&self.text, cut, false) {
            self.ended = true;
            return Ok(Released {
                text: String::new(),
                blocked: Some(blocked),
            });
        }
        Ok(self.release(cut))
    }

    /// The answer is complete: decides what is left and releases the rest.
    pub fn finish(&mut self) -> Released {
        if self.ended {
            return Released::default();
        }
        self.ended = true;
        let end = self.text.len();
        if !self.scanner.is_empty()
            && let Some(blocked) = self.scanner.scan(&self.text, end, true)
        {
            return Released {
                text: String::new(),
                blocked: Some(blocked),
            };
        }
        if self.review() {
            return Released::default();
        }
        self.release(end)
    }

    /// Releases up to `to`, or less so that no masked span is split.
    fn release(&mut self, to: usize) -> Released {
        let masks = self.scanner.masks(self.released);
        let mut to = to;
        for (span, _) in &masks {
            if span.start < to && span.end > to {
                to = to.min(span.start.max(self.released));
            }
        }
        let text = render(&self.text, self.released, to, &masks);
        self.released = to;
        Released {
            text,
            blocked: None,
        }
    }

    /// Rules that fired so far, in rule order.
    #[must_use]
    pub fn hits(&self) -> Vec<Hit> {
        self.scanner.hits()
    }

    /// A live review rule fired: the answer is held.
    #[must_use]
    pub fn review(&self) -> bool {
        self.scanner.review()
    }

    /// The whole answer as received, masked (what a reviewer sees and releases).
    #[must_use]
    pub fn masked_text(&self) -> String {
        let masks = self.scanner.masks(0);
        render(&self.text, 0, self.text.len(), &masks)
    }
}
