//! What every matcher is asked: the matches that *start* inside a window of a text. A whole
//! text is one window; a stream is a sequence of windows whose `cut` trails the text received
//! by more than any match can span, so every match is seen whole, exactly once, whatever the
//! split — which is what makes streamed and whole-text decisions the same.

/// A match in the original text: bytes `start..end`, and what matched (a term, a pattern, a
/// kind of personal data), as the matcher numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub tag: u32,
}

impl Span {
    pub(crate) fn new(start: usize, end: usize, tag: u32) -> Self {
        Self { start, end, tag }
    }
}

/// Matches starting at `from..cut` of `text` are wanted. Everything a match could span past
/// `cut` is in `text` unless this is the last window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window<'a> {
    pub text: &'a str,
    pub from: usize,
    pub cut: usize,
}

impl Window<'_> {
    pub(crate) fn owns(&self, start: usize) -> bool {
        start >= self.from && start < self.cut
    }

    /// Where scanning may stop for a matcher whose matches span at most `max_bytes`.
    pub(crate) fn scan_end(&self, max_bytes: usize) -> usize {
        ceil_boundary(self.text, self.cut.saturating_add(max_bytes))
    }
}

/// The first character boundary at or after `index` (or the end).
pub(crate) fn ceil_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index += 1;
    }
    index
}

/// The last character boundary at or before `index`.
pub(crate) fn floor_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}
