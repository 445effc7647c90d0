//! Sensitive-word dictionaries: every term folded (see `normalize`) into one Aho-Corasick
//! automaton run over the folded text, so one pass finds every term whatever its case, width,
//! script variant or the separators inserted between its characters.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

use crate::normalize::{Folded, fold_str, is_cjk, is_word_char};
use crate::scan::{Span, Window};

/// Separators allowed between two characters of a term unless a rule says otherwise.
pub const DEFAULT_MAX_GAP: usize = 2;

#[derive(Debug)]
pub(crate) struct Words {
    automaton: AhoCorasick,
    terms: Vec<Term>,
    max_gap: usize,
    max_bytes: usize,
}

#[derive(Debug)]
struct Term {
    /// The term starts (ends) with a letter of a spaced script, so the original text must not
    /// continue a word before (after) it: `ass` is not found in `class`.
    word_start: bool,
    word_end: bool,
}

impl Words {
    /// Builds the automaton from terms as written; empty terms (after folding) are skipped.
    ///
    /// # Errors
    /// When the automaton cannot be built (far beyond any real dictionary's size).
    pub(crate) fn new(terms: &[String], max_gap: usize) -> Result<Self, String> {
        let mut folded_terms = Vec::with_capacity(terms.len());
        let mut infos = Vec::with_capacity(terms.len());
        let mut longest = 0;
        for term in terms {
            let folded = fold_str(term);
            let (Some(first), Some(last)) = (folded.chars().next(), folded.chars().last()) else {
                continue;
            };
            longest = longest.max(folded.chars().count());
            infos.push(Term {
                word_start: !is_cjk(first),
                word_end: !is_cjk(last),
            });
            folded_terms.push(folded);
        }
        if folded_terms.is_empty() {
            return Err("no term has a letter or digit".to_owned());
        }
        let automaton = AhoCorasickBuilder::new()
            .match_kind(MatchKind::Standard)
            .build(&folded_terms)
            .map_err(|error| error.to_string())?;
        Ok(Self {
            automaton,
            terms: infos,
            max_gap,
            // Each character and each separator between two is at most 4 bytes.
            max_bytes: longest.saturating_mul(max_gap + 1).saturating_mul(4),
        })
    }

    pub(crate) fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Every term occurrence starting in the window.
    pub(crate) fn find(&self, window: &Window<'_>, folded: &mut Folded, spans: &mut Vec<Span>) {
        let text = window.text;
        let end = window.scan_end(self.max_bytes);
        folded.fold(text, window.from, end);
        for found in self.automaton.find_overlapping_iter(folded.text.as_str()) {
            let (start, stop) = folded.original_span(text, found.start(), found.end());
            if !window.owns(start) {
                continue;
            }
            let term = &self.terms[found.pattern().as_usize()];
            if term.word_start && text[..start].chars().next_back().is_some_and(is_word_char) {
                continue;
            }
            if term.word_end && text[stop..].chars().next().is_some_and(is_word_char) {
                continue;
            }
            if !self.gaps_allowed(text, folded, found.start(), found.end()) {
                continue;
            }
            spans.push(Span::new(start, stop, found.pattern().as_u32()));
        }
    }

    /// Whether at most `max_gap` separators stand between consecutive characters.
    fn gaps_allowed(&self, text: &str, folded: &Folded, start: usize, end: usize) -> bool {
        let mut previous_end: Option<usize> = None;
        for origin in folded.origins(start, end) {
            if let Some(previous_end) = previous_end
                && text[previous_end..origin].chars().count() > self.max_gap
            {
                return false;
            }
            let width = text[origin..].chars().next().map_or(1, char::len_utf8);
            previous_end = Some(origin + width);
        }
        true
    }
}

/// Terms of a dictionary file: one per line, blank lines and `#` comments skipped.
pub(crate) fn parse_dictionary(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
}
