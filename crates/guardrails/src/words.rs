//! Sensitive-word dictionaries: every term folded (see `normalize`) into one Aho-Corasick
//! automaton run over the folded text, so one pass finds every term whatever its case, width,
//! script variant or the separators inserted between its characters.
//!
//! The automaton is daachorse's character-wise double array: one transition per character
//! rather than per byte, 2.5x the throughput of the `aho-corasick` crate's NFA on Chinese text
//! with 50k terms (its DFA was slower still: 125 MB that miss the cache), see
//! docs/benchmarks.md.

use std::collections::HashMap;

use daachorse::CharwiseDoubleArrayAhoCorasick;

use crate::normalize::{fold, fold_str, gaps_within, is_cjk, is_word_char};
use crate::scan::{Span, Window};

/// Separators allowed between two characters of a term unless a rule says otherwise.
pub const DEFAULT_MAX_GAP: usize = 2;

pub(crate) struct Words {
    automaton: CharwiseDoubleArrayAhoCorasick<u32>,
    terms: Vec<Term>,
    max_gap: usize,
    max_bytes: usize,
    /// Characters of the longest folded term.
    longest: usize,
    /// Character pairs that occur in some term.
    pairs: PairFilter,
}

impl std::fmt::Debug for Words {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Words")
            .field("terms", &self.terms.len())
            .field("max_gap", &self.max_gap)
            .finish_non_exhaustive()
    }
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
        // Terms that fold alike are one pattern.
        let mut index_of: HashMap<String, u32> = HashMap::with_capacity(terms.len());
        let mut patterns = Vec::with_capacity(terms.len());
        let mut infos = Vec::with_capacity(terms.len());
        let mut longest = 0;
        for term in terms {
            let folded = fold_str(term);
            let (Some(first), Some(last)) = (folded.chars().next(), folded.chars().last()) else {
                continue;
            };
            if index_of.contains_key(&folded) {
                continue;
            }
            let index = u32::try_from(patterns.len()).map_err(|_| "too many terms".to_owned())?;
            longest = longest.max(folded.chars().count());
            infos.push(Term {
                word_start: !is_cjk(first),
                word_end: !is_cjk(last),
            });
            index_of.insert(folded.clone(), index);
            patterns.push((folded, index));
        }
        if patterns.is_empty() {
            return Err("no term has a letter or digit".to_owned());
        }
        let pairs = PairFilter::new(patterns.iter().map(|(pattern, _)| pattern.as_str()));
        let automaton = CharwiseDoubleArrayAhoCorasick::with_values(patterns)
            .map_err(|error| error.to_string())?;
        Ok(Self {
            automaton,
            terms: infos,
            max_gap,
            // Each character and each separator between two is at most 4 bytes.
            max_bytes: longest.saturating_mul(max_gap + 1).saturating_mul(4),
            longest,
            pairs,
        })
    }

    pub(crate) fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Every term occurrence starting in the window. Folding and matching are one pass: each
    /// character is folded and fed to the automaton, and the last `longest` characters'
    /// origins are kept in a ring to map a match back to the original text.
    pub(crate) fn find(&self, window: &Window<'_>, spans: &mut Vec<Span>) {
        let text = window.text;
        let end = window.scan_end(self.max_bytes);
        let mut stepper = self.automaton.find_overlapping_stepper();
        let mut ring = vec![Origin::default(); self.longest.next_power_of_two()];
        let mask = ring.len() - 1;
        let mut consumed = 0usize;
        let mut folded_position = 0usize;
        let mut previous = '\0';
        for (offset, character) in text[window.from..end].char_indices() {
            let Some(folded) = fold(character) else {
                continue;
            };
            let start = window.from + offset;
            ring[consumed & mask] = Origin {
                folded: folded_position,
                start,
                end: start + character.len_utf8(),
            };
            consumed += 1;
            folded_position += folded.len_utf8();
            // No term contains this pair, so no term prefix read so far reaches back past
            // this character: the state is the root's transition on it. That transition is
            // in cache; the current state's (what `consume` would read) mostly is not.
            if !self.pairs.may_contain(previous, folded) {
                stepper = self.automaton.find_overlapping_stepper();
            }
            previous = folded;
            stepper.consume(folded);
            for found in stepper.matches() {
                let folded_start = folded_position - (found.end() - found.start());
                self.accept(
                    text,
                    window,
                    &ring,
                    consumed,
                    folded_start,
                    found.value(),
                    spans,
                );
            }
        }
    }

    /// Checks one automaton match (folded bytes `folded_start..` up to the newest character)
    /// and keeps it if it starts in the window, respects word boundaries and its gaps.
    #[expect(
        clippy::too_many_arguments,
        reason = "the scan's state, passed rather than stored"
    )]
    fn accept(
        &self,
        text: &str,
        window: &Window<'_>,
        ring: &[Origin],
        consumed: usize,
        folded_start: usize,
        tag: u32,
        spans: &mut Vec<Span>,
    ) {
        let Some(term) = self.terms.get(tag as usize) else {
            return;
        };
        // The match's characters, oldest first, from the ring.
        let mask = ring.len() - 1;
        let mut first = consumed - 1;
        while ring[first & mask].folded > folded_start {
            if first == 0 || consumed - first >= ring.len() {
                return;
            }
            first -= 1;
        }
        let origins = (first..consumed).map(|index| ring[index & mask]);
        let start = ring[first & mask].start;
        let stop = ring[(consumed - 1) & mask].end;
        if !window.owns(start) {
            return;
        }
        if term.word_start && text[..start].chars().next_back().is_some_and(is_word_char) {
            return;
        }
        if term.word_end && text[stop..].chars().next().is_some_and(is_word_char) {
            return;
        }
        if gaps_within(
            text,
            origins.map(|origin| (origin.start, origin.end)),
            self.max_gap,
        ) {
            spans.push(Span::new(start, stop, tag));
        }
    }
}

/// Where a folded character came from.
#[derive(Debug, Clone, Copy, Default)]
struct Origin {
    /// Its offset in the folded text.
    folded: usize,
    /// Its bytes in the original.
    start: usize,
    end: usize,
}

/// A Bloom filter of the character pairs inside terms: two bits per pair in a table of at
/// least 16 bits per pair (about 1% false positives, which only cost the automaton's ordinary
/// transition). 50k terms take ~300 KB.
struct PairFilter {
    bits: Vec<u64>,
    mask: u64,
}

impl PairFilter {
    fn new<'a>(terms: impl Iterator<Item = &'a str>) -> Self {
        let pairs: Vec<(char, char)> = terms
            .flat_map(|term| {
                let chars: Vec<char> = term.chars().collect();
                (1..chars.len())
                    .map(|index| (chars[index - 1], chars[index]))
                    .collect::<Vec<_>>()
            })
            .collect();
        let size_bits = (pairs.len() * 16).next_power_of_two().max(64);
        let mut filter = Self {
            bits: vec![0; size_bits / 64],
            mask: (size_bits - 1) as u64,
        };
        for (first, second) in pairs {
            for bit in filter.positions(first, second) {
                filter.bits[(bit / 64) as usize] |= 1 << (bit % 64);
            }
        }
        filter
    }

    #[inline]
    fn positions(&self, first: char, second: char) -> [u64; 2] {
        let key = (u64::from(u32::from(first)) << 32) | u64::from(u32::from(second));
        let hash = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        [
            (hash >> 20) & self.mask,
            (hash.rotate_left(29) ^ key) & self.mask,
        ]
    }

    #[inline]
    fn may_contain(&self, first: char, second: char) -> bool {
        self.positions(first, second)
            .iter()
            .all(|bit| self.bits[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }
}

/// Terms of a dictionary file: one per line, blank lines and `#` comments skipped.
pub(crate) fn parse_dictionary(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
}
