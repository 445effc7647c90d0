//! PDF: the text layer of each page, with its 1-based page number, through `pdf-extract` (on
//! `lopdf`), which maps CID fonts through their ToUnicode tables and orders text by position.
//!
//! `pdf-extract` was chosen over `pdf_oxide` by measurement on the Debian and ReportLab PDFs:
//! both read Chinese correctly and run well above 100 pages/s, `pdf-extract` keeps the spaces
//! between CJK and Latin runs that `pdf_oxide` drops, and builds in a fraction of the time.

use std::panic::{AssertUnwindSafe, catch_unwind};

use pdf_extract::{Document as PdfDocument, PlainTextOutput, output_doc_page};

use crate::{Block, Document, Format, Limits, ParseError, text};

pub(crate) fn parse(bytes: &[u8], limits: &Limits) -> Result<Document, ParseError> {
    let mut pdf = PdfDocument::load_mem(bytes).map_err(|error| load_error(bytes, &error))?;
    if pdf.is_encrypted() && pdf.decrypt("").is_err() {
        return Err(ParseError::Encrypted);
    }
    let pages = pdf.get_pages();
    let page_count = u32::try_from(pages.len()).unwrap_or(u32::MAX);
    if page_count > limits.max_pages {
        return Err(ParseError::TooManyPages {
            pages: page_count,
            limit: limits.max_pages,
        });
    }
    if page_count == 0 {
        return Err(corrupt("the document has no pages"));
    }
    let mut blocks: Vec<Block> = Vec::new();
    let mut failed_pages = 0u32;
    let mut first_error = None;
    for &number in pages.keys() {
        match page_text(&pdf, number) {
            Ok(page) => blocks.extend(text::paragraphs(&join_cjk_lines(&page), Some(number))),
            Err(reason) => {
                failed_pages += 1;
                first_error.get_or_insert(reason);
            }
        }
    }
    if failed_pages == page_count {
        return Err(corrupt(&first_error.unwrap_or_default()));
    }
    if blocks.is_empty() {
        return Err(ParseError::ImageOnly { pages: page_count });
    }
    let title = pdf_title(&pdf);
    Ok(Document {
        format: Format::Pdf,
        blocks,
        page_count: Some(page_count),
        title,
    })
}

fn corrupt(reason: &str) -> ParseError {
    ParseError::Corrupt {
        format: Format::Pdf,
        reason: reason.to_owned(),
    }
}

/// Loading fails before decryption for some encrypted files; the trailer still says so.
fn load_error(bytes: &[u8], error: &pdf_extract::Error) -> ParseError {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    if tail.windows(8).any(|window| window == b"/Encrypt") {
        return ParseError::Encrypted;
    }
    corrupt(&error.to_string())
}

/// One page's text; a panic inside the extractor fails this page only.
fn page_text(pdf: &PdfDocument, number: u32) -> Result<String, String> {
    let extracted = catch_unwind(AssertUnwindSafe(|| {
        let mut page = String::new();
        let mut output = PlainTextOutput::new(&mut page);
        output_doc_page(pdf, &mut output, number).map(|()| page)
    }));
    match extracted {
        Ok(Ok(page)) => Ok(page),
        Ok(Err(error)) => Err(format!("page {number}: {error}")),
        Err(_) => Err(format!("page {number}: the text extractor crashed")),
    }
}

/// Removes line breaks between two CJK characters: PDF lines wrap inside Chinese words.
fn join_cjk_lines(page: &str) -> String {
    let mut joined = String::with_capacity(page.len());
    let mut chars = page.chars().peekable();
    while let Some(character) = chars.next() {
        if character == '\n'
            && joined.chars().next_back().is_some_and(is_cjk_text)
            && chars.peek().copied().is_some_and(is_cjk_text)
        {
            continue;
        }
        joined.push(character);
    }
    joined
}

fn is_cjk_text(character: char) -> bool {
    matches!(character, '\u{3000}'..='\u{9FFF}' | '\u{F900}'..='\u{FAFF}' | '\u{FF00}'..='\u{FFEF}')
}

/// The Info dictionary's /Title, when it is readable text.
fn pdf_title(pdf: &PdfDocument) -> Option<String> {
    let info = pdf.trailer.get(b"Info").ok()?;
    let info = match info {
        pdf_extract::Object::Reference(id) => pdf.get_dictionary(*id).ok()?,
        pdf_extract::Object::Dictionary(dictionary) => dictionary,
        _ => return None,
    };
    let title = pdf_extract::decode_text_string(info.get(b"Title").ok()?).ok()?;
    let title = title.trim();
    (!title.is_empty()).then(|| title.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_wrapped_chinese_lines_only() {
        assert_eq!(
            join_cjk_lines("恢复变\n得容易。\nNext line\n中文"),
            "恢复变得容易。\nNext line\n中文"
        );
    }
}
