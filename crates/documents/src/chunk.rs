//! Token-window chunking in the embedding model's own tokens.
//!
//! Blocks are grouped into sections (consecutive blocks on the same page under the same heading
//! path); each section is tokenized once and windows slide over its token spans, so a chunk
//! never crosses a page or a heading boundary and small blocks are packed together.

use std::ops::Range;

use crate::{BLOCK_SEPARATOR, ChunkError, Document};

/// Byte ranges of the tokens an embedding model sees in a text.
///
/// Implementations must be pure (the same text gives the same spans) and thread-safe. Spans are
/// byte ranges into `text` in increasing order of start and exclude special tokens; a range
/// that does not fall on character boundaries is widened to them.
pub trait TokenSpans: Send + Sync {
    /// The byte range in `text` of each token, in order.
    ///
    /// # Errors
    /// A description of why the text could not be tokenized.
    fn token_spans(&self, text: &str) -> Result<Vec<Range<usize>>, String>;
}

/// A tokenizer for tests and for when no model tokenizer is configured: each CJK character,
/// each run of other letters and digits, and each other non-space character is one token.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimpleTokenizer;

impl TokenSpans for SimpleTokenizer {
    fn token_spans(&self, text: &str) -> Result<Vec<Range<usize>>, String> {
        let mut spans: Vec<Range<usize>> = Vec::new();
        let mut word: Option<usize> = None;
        for (index, character) in text.char_indices() {
            let is_word = character.is_alphanumeric() && !is_cjk(character);
            if let Some(start) = word.filter(|_| !is_word) {
                spans.push(start..index);
                word = None;
            }
            if is_word {
                word.get_or_insert(index);
            } else if !character.is_whitespace() {
                spans.push(index..index + character.len_utf8());
            }
        }
        if let Some(start) = word {
            spans.push(start..text.len());
        }
        Ok(spans)
    }
}

fn is_cjk(character: char) -> bool {
    matches!(character,
        '\u{2E80}'..='\u{9FFF}' | '\u{AC00}'..='\u{D7AF}' | '\u{F900}'..='\u{FAFF}'
        | '\u{FF00}'..='\u{FFEF}' | '\u{20000}'..='\u{2FA1F}')
}

/// How a document is cut into windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkingOptions {
    /// Most tokens in one chunk.
    pub max_tokens: usize,
    /// Tokens shared by consecutive chunks of the same section.
    pub overlap_tokens: usize,
}

impl Default for ChunkingOptions {
    fn default() -> Self {
        Self {
            max_tokens: 128,
            overlap_tokens: 32,
        }
    }
}

impl ChunkingOptions {
    /// Checks that `max_tokens >= 1` and `overlap_tokens < max_tokens`.
    ///
    /// # Errors
    /// [`ChunkError::InvalidOptions`] otherwise.
    pub fn validate(&self) -> Result<(), ChunkError> {
        if self.max_tokens == 0 || self.overlap_tokens >= self.max_tokens {
            return Err(ChunkError::InvalidOptions {
                max_tokens: self.max_tokens,
                overlap_tokens: self.overlap_tokens,
            });
        }
        Ok(())
    }
}

/// A window of a document's text, ready to embed and cite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Exactly the characters `char_start..char_end` of [`Document::text`].
    pub text: String,
    /// 1-based page of every character in the chunk, for paged formats.
    pub page: Option<u32>,
    /// Character offset of the first character in [`Document::text`].
    pub char_start: usize,
    /// Character offset one past the last character.
    pub char_end: usize,
    /// Heading path of the chunk's blocks.
    pub heading_path: Vec<String>,
    /// Tokens in `text` as counted by the [`TokenSpans`] used; at most `max_tokens` unless one
    /// token alone re-tokenizes to more.
    pub token_count: usize,
}

/// Cuts `document` into overlapping token windows.
///
/// # Errors
/// [`ChunkError::InvalidOptions`] for inconsistent options, [`ChunkError::Tokenizer`] when the
/// tokenizer fails.
pub fn chunk(
    document: &Document,
    tokens: &dyn TokenSpans,
    options: &ChunkingOptions,
) -> Result<Vec<Chunk>, ChunkError> {
    options.validate()?;
    let text = document.text();
    let mut chunks = Vec::new();
    let mut cursor = CharCursor::default();
    let mut block_start = 0usize;
    let blocks = &document.blocks;
    let mut first = 0usize;
    while first < blocks.len() {
        let mut last = first;
        let mut section_end = block_start + blocks[first].text.len();
        while last + 1 < blocks.len()
            && blocks[last + 1].page == blocks[first].page
            && blocks[last + 1].heading_path == blocks[first].heading_path
        {
            last += 1;
            section_end += BLOCK_SEPARATOR.len() + blocks[last].text.len();
        }
        let section = Section {
            text: &text[block_start..section_end],
            char_start: cursor.advance(&text, block_start),
            page: blocks[first].page,
            heading_path: &blocks[first].heading_path,
        };
        window_section(&section, tokens, options, &mut chunks)?;
        block_start = section_end + BLOCK_SEPARATOR.len();
        first = last + 1;
    }
    Ok(chunks)
}

/// Consecutive blocks with the same page and heading path: a contiguous slice of the text.
struct Section<'a> {
    text: &'a str,
    char_start: usize,
    page: Option<u32>,
    heading_path: &'a [String],
}

/// Converts increasing byte offsets into character offsets without rescanning.
#[derive(Default)]
struct CharCursor {
    byte: usize,
    character: usize,
}

impl CharCursor {
    fn advance(&mut self, text: &str, byte: usize) -> usize {
        if byte > self.byte {
            self.character += text[self.byte..byte].chars().count();
            self.byte = byte;
        }
        self.character
    }
}

fn window_section(
    section: &Section<'_>,
    tokens: &dyn TokenSpans,
    options: &ChunkingOptions,
    chunks: &mut Vec<Chunk>,
) -> Result<(), ChunkError> {
    let text = section.text;
    let spans = sanitize(
        tokens
            .token_spans(text)
            .map_err(|reason| ChunkError::Tokenizer { reason })?,
        text,
    );
    let count = spans.len();
    // ends_max[k]: end of the furthest-reaching token among 0..=k.
    let ends_max: Vec<usize> = spans
        .iter()
        .scan(0, |max, span| {
            *max = span.end.max(*max);
            Some(*max)
        })
        .collect();
    let max_tokens = options.max_tokens;
    let mut cursor = CharCursor::default();
    let mut start = 0usize;
    while start < count {
        let hard_end = (start + max_tokens).min(count);
        let mut end = if hard_end == count {
            count
        } else {
            best_break(text, &spans, start, hard_end)
        };
        loop {
            let piece = &text[spans[start].start..ends_max[end - 1]];
            let token_count = count_tokens(tokens, piece)?;
            if token_count <= max_tokens || end - start == 1 {
                let char_start = section.char_start + cursor.advance(text, spans[start].start);
                chunks.push(Chunk {
                    text: piece.to_owned(),
                    page: section.page,
                    char_start,
                    char_end: char_start + piece.chars().count(),
                    heading_path: section.heading_path.to_vec(),
                    token_count,
                });
                break;
            }
            // Re-tokenizing the piece gave more tokens than the spans said: cut earlier.
            let shorter = end.saturating_sub(token_count - max_tokens).max(start + 1);
            end = if shorter == start + 1 {
                shorter
            } else {
                best_break(text, &spans, start, shorter)
            };
        }
        if end >= count {
            break;
        }
        start = end.saturating_sub(options.overlap_tokens).max(start + 1);
    }
    Ok(())
}

fn count_tokens(tokens: &dyn TokenSpans, piece: &str) -> Result<usize, ChunkError> {
    let spans = tokens
        .token_spans(piece)
        .map_err(|reason| ChunkError::Tokenizer { reason })?;
    Ok(spans.iter().filter(|span| span.start < span.end).count())
}

/// Widens spans to character boundaries, drops empty and out-of-range ones, and sorts them.
fn sanitize(mut spans: Vec<Range<usize>>, text: &str) -> Vec<Range<usize>> {
    for span in &mut spans {
        span.end = span.end.min(text.len());
        while span.start > 0 && !text.is_char_boundary(span.start) {
            span.start -= 1;
        }
        while span.end < text.len() && !text.is_char_boundary(span.end) {
            span.end += 1;
        }
    }
    spans.retain(|span| span.start < span.end);
    spans.sort_by_key(|span| span.start);
    spans
}

/// How good a cut between two tokens is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Break {
    /// Between two tokens that overlap: only as a last resort.
    Inside,
    Token,
    Whitespace,
    Sentence,
    Paragraph,
}

/// The end (exclusive token index) of a window starting at `start`, at most `hard_end`: the
/// latest best-ranked break, looking back no further than half the window.
fn best_break(text: &str, spans: &[Range<usize>], start: usize, hard_end: usize) -> usize {
    let lowest = start + ((hard_end - start) / 2).max(1);
    let mut best = (Break::Inside, hard_end);
    for end in (lowest..=hard_end).rev() {
        let kind = break_kind(text, &spans[end - 1], spans.get(end));
        if kind > best.0 {
            best = (kind, end);
            if kind == Break::Paragraph {
                break;
            }
        }
    }
    best.1
}

fn break_kind(text: &str, last: &Range<usize>, next: Option<&Range<usize>>) -> Break {
    let Some(next) = next else {
        return Break::Paragraph;
    };
    if next.start < last.end {
        return Break::Inside;
    }
    let gap = &text[last.end..next.start];
    if gap.contains("\n\n") {
        return Break::Paragraph;
    }
    let before = text[last.start..next.start].trim_end();
    let spaced = before.len() < text[last.start..next.start].len();
    let ending = before.trim_end_matches(['"', '\'', '”', '’', ')', '）', '」', '』', '》', ']']);
    match ending.chars().last() {
        Some('。' | '！' | '？' | '；' | '…') => Break::Sentence,
        Some('.' | '!' | '?' | ';') if spaced => Break::Sentence,
        _ if spaced => Break::Whitespace,
        _ => Break::Token,
    }
}

#[cfg(test)]
#[path = "chunk_tests.rs"]
mod tests;
