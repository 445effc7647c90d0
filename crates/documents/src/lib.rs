//! Turns the bytes of one uploaded file into structured text ([`parse`]) and that text into
//! token windows for embedding ([`chunk`]).
//!
//! This crate owns format detection, the per-format parsers (PDF, DOCX, HTML, Markdown, plain
//! text, CSV, JSONL), the limits that keep hostile files from exhausting memory or time, and the
//! chunker. It does no I/O, no async and no embedding: callers hand it bytes (on a blocking
//! thread, parsing is CPU-bound) and a [`TokenSpans`] implementation of the embedding model's
//! tokenizer.

mod chunk;
mod detect;
mod docx;
mod error;
mod html;
mod markdown;
mod pdf;
mod records;
mod text;

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

pub use chunk::{Chunk, ChunkingOptions, SimpleTokenizer, TokenSpans, chunk};
pub use error::{ChunkError, ParseError};

/// A document format this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// PDF with a text layer.
    Pdf,
    /// Word 2007+ (`.docx`).
    Docx,
    /// HTML or XHTML.
    Html,
    /// Markdown (CommonMark with tables).
    Markdown,
    /// Plain text in UTF-8, UTF-16 (with BOM) or a legacy encoding such as GBK.
    Text,
    /// Comma-separated values with a header row.
    Csv,
    /// JSON Lines: one JSON value per line.
    Jsonl,
}

impl Format {
    /// Lower-case name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Format::Pdf => "PDF",
            Format::Docx => "DOCX",
            Format::Html => "HTML",
            Format::Markdown => "Markdown",
            Format::Text => "text",
            Format::Csv => "CSV",
            Format::Jsonl => "JSONL",
        }
    }

    /// Detects the format from the file name's extension and the leading bytes.
    ///
    /// Magic bytes win over the extension for binary formats: a PNG named `.txt` is rejected.
    ///
    /// # Errors
    /// [`ParseError::Binary`] for executables, images, archives and other non-text bytes;
    /// [`ParseError::Unsupported`] for known document formats this crate does not read.
    pub fn detect(file_name: &str, bytes: &[u8]) -> Result<Format, ParseError> {
        detect::detect(file_name, bytes)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Bounds on the work and memory one file may cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest accepted file.
    pub max_bytes: u64,
    /// Largest total unpacked size of the zip entries read from a DOCX.
    pub max_unzipped_bytes: u64,
    /// Largest allowed ratio of unpacked to packed size for one zip entry (entries below
    /// 1 MiB unpacked are exempt).
    pub max_zip_ratio: u64,
    /// Most entries a zip container may have.
    pub max_zip_entries: usize,
    /// Most pages a PDF may have.
    pub max_pages: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 512 * 1024 * 1024,
            max_unzipped_bytes: 1024 * 1024 * 1024,
            max_zip_ratio: 100,
            max_zip_entries: 10_000,
            max_pages: 10_000,
        }
    }
}

/// A parsed file: its text as an ordered list of blocks.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The format the file was parsed as.
    pub format: Format,
    /// The text in reading order. No block is empty.
    pub blocks: Vec<Block>,
    /// Number of pages, for paged formats (PDF).
    pub page_count: Option<u32>,
    /// The document's title when the format carries one.
    pub title: Option<String>,
}

impl Document {
    /// The whole text: block texts joined by a blank line. [`Chunk`] offsets are character
    /// offsets into this string.
    pub fn text(&self) -> String {
        let capacity = self.blocks.iter().map(|b| b.text.len() + 2).sum();
        let mut text = String::with_capacity(capacity);
        for (index, block) in self.blocks.iter().enumerate() {
            if index > 0 {
                text.push_str(BLOCK_SEPARATOR);
            }
            text.push_str(&block.text);
        }
        text
    }
}

/// What joins two blocks in [`Document::text`].
pub(crate) const BLOCK_SEPARATOR: &str = "\n\n";

/// A unit of text: a paragraph, a heading, a table, a record.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// The text, trimmed, never empty.
    pub text: String,
    /// 1-based page number, for paged formats.
    pub page: Option<u32>,
    /// Titles of the enclosing headings, outermost first. A heading's own path ends with
    /// itself, so it is kept together with the text under it.
    pub heading_path: Vec<String>,
    /// What kind of block this is.
    pub kind: BlockKind,
}

/// The role of a [`Block`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockKind {
    /// A section title.
    Heading,
    /// Running text.
    Paragraph,
    /// A table, one row per line, cells joined by ` | `.
    Table,
    /// One item of a list.
    ListItem,
    /// Preformatted text or code.
    Code,
    /// One record of a CSV or JSONL file, as `key: value` lines.
    Record,
    /// A page header or footer (kept once, not per page).
    HeaderFooter,
}

/// Parses one file.
///
/// Runs on the caller's thread; it may be CPU-heavy (call it from a blocking pool) but always
/// terminates, and a panic inside a third-party parser is turned into [`ParseError::Corrupt`].
///
/// # Errors
/// A [`ParseError`] saying what is wrong with this file.
pub fn parse(file_name: &str, bytes: &[u8], limits: &Limits) -> Result<Document, ParseError> {
    let size_bytes = bytes.len() as u64;
    if size_bytes > limits.max_bytes {
        return Err(ParseError::TooLarge {
            size_bytes,
            limit_bytes: limits.max_bytes,
        });
    }
    let format = Format::detect(file_name, bytes)?;
    let parsed = catch_unwind(AssertUnwindSafe(|| parse_as(format, bytes, limits)));
    let mut document = parsed.unwrap_or_else(|_| {
        Err(ParseError::Corrupt {
            format,
            reason: "the parser crashed on this file".to_owned(),
        })
    })?;
    document.blocks.retain(|block| !block.text.is_empty());
    if document.blocks.is_empty() {
        return Err(ParseError::Empty);
    }
    Ok(document)
}

fn parse_as(format: Format, bytes: &[u8], limits: &Limits) -> Result<Document, ParseError> {
    match format {
        Format::Pdf => pdf::parse(bytes, limits),
        Format::Docx => docx::parse(bytes, limits),
        Format::Html => html::parse(&text::decode(bytes)?),
        Format::Markdown => Ok(markdown::parse(&text::decode(bytes)?)),
        Format::Text => Ok(text::parse(&text::decode(bytes)?)),
        Format::Csv => records::parse_csv(&text::decode(bytes)?),
        Format::Jsonl => records::parse_jsonl(&text::decode(bytes)?),
    }
}

/// Builds a block with trimmed text and no heading path.
pub(crate) fn block(text: &str, kind: BlockKind, page: Option<u32>) -> Block {
    Block {
        text: text.trim().to_owned(),
        page,
        heading_path: Vec::new(),
        kind,
    }
}
