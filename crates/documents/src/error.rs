//! The crate's error types: one for parsing a file, one for chunking a parsed document.

use crate::Format;

/// Why one file could not be turned into text. Every message describes *this* file, so a
/// batch ingest can report it next to the file name and go on with the others.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The PDF is password-protected or encrypted.
    #[error("the PDF is encrypted; remove the password and upload it again")]
    Encrypted,
    /// The file claims to be `format` but its structure is broken.
    #[error("the {format} file is corrupt: {reason}")]
    Corrupt {
        /// The format the file was parsed as.
        format: Format,
        /// What the underlying parser reported.
        reason: String,
    },
    /// The file parsed, but holds no text at all.
    #[error("the file contains no text")]
    Empty,
    /// A PDF whose pages have no text layer (scanned images).
    #[error("{pages} pages, no text layer; OCR it first")]
    ImageOnly {
        /// Number of pages in the PDF.
        pages: u32,
    },
    /// The file is larger than the configured limit.
    #[error("the file is {size_bytes} bytes, over the limit of {limit_bytes} bytes")]
    TooLarge {
        /// Size of the file.
        size_bytes: u64,
        /// The limit it exceeds.
        limit_bytes: u64,
    },
    /// The PDF has more pages than the configured limit.
    #[error("the PDF has {pages} pages, over the limit of {limit} pages")]
    TooManyPages {
        /// Pages in the PDF.
        pages: u32,
        /// The limit it exceeds.
        limit: u32,
    },
    /// A zip container (DOCX) that unpacks to more than allowed, or lies about its sizes.
    #[error(
        "zip bomb: entry {entry:?} unpacks to more than {limit_bytes} bytes \
         ({compressed_bytes} bytes compressed)"
    )]
    ZipBomb {
        /// The entry that exceeded the limit.
        entry: String,
        /// Compressed size of the entry.
        compressed_bytes: u64,
        /// The unpacked size it was not allowed to exceed.
        limit_bytes: u64,
    },
    /// A zip container with more entries than allowed.
    #[error("the archive has {entries} entries, over the limit of {limit}")]
    TooManyEntries {
        /// Entries in the archive.
        entries: usize,
        /// The limit it exceeds.
        limit: usize,
    },
    /// A record file (JSONL or CSV) with an invalid record.
    #[error("line {line}: {reason}")]
    InvalidRecord {
        /// 1-based line number of the bad record.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The file is not a document (an executable, an image, random bytes).
    #[error("not a document: the file looks like {kind}")]
    Binary {
        /// What the bytes look like, e.g. `"an ELF executable"`.
        kind: &'static str,
    },
    /// A document format Landfall does not read.
    #[error("unsupported format: {format}")]
    Unsupported {
        /// What the file is, e.g. `"zip archive"` or `".pptx"`.
        format: String,
    },
}

/// Why a parsed document could not be chunked.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// The chunking options are inconsistent.
    #[error(
        "invalid chunking options: max_tokens is {max_tokens} and overlap_tokens is \
         {overlap_tokens}; max_tokens must be at least 1 and overlap_tokens below max_tokens"
    )]
    InvalidOptions {
        /// Requested window size.
        max_tokens: usize,
        /// Requested overlap.
        overlap_tokens: usize,
    },
    /// The tokenizer failed or returned spans that do not fit the text.
    #[error("tokenizer failed: {reason}")]
    Tokenizer {
        /// What went wrong.
        reason: String,
    },
}
