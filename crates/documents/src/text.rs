//! Plain text: encoding detection and splitting into paragraphs.

use encoding_rs::{Encoding, UTF_8};

use crate::{BlockKind, Document, Format, ParseError, block};

/// Decodes text bytes: a BOM wins (UTF-8, UTF-16LE/BE), then valid UTF-8, then the encoding
/// `chardetng` guesses (GBK/GB18030, Big5, Shift_JIS, windows-1252, ...).
///
/// # Errors
/// [`ParseError::Binary`] when the bytes decode to text full of replacement characters.
pub(crate) fn decode(bytes: &[u8]) -> Result<String, ParseError> {
    if let Some((encoding, bom_length)) = Encoding::for_bom(bytes) {
        let (text, _) = encoding.decode_without_bom_handling(&bytes[bom_length..]);
        return Ok(text.into_owned());
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Ok(text.to_owned());
    }
    let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
    detector.feed(bytes, true);
    let encoding = detector.guess(None, chardetng::Utf8Detection::Allow);
    let (text, _, _) = if encoding == UTF_8 {
        UTF_8.decode(bytes)
    } else {
        encoding.decode(bytes)
    };
    let replaced = text
        .chars()
        .filter(|&c| c == char::REPLACEMENT_CHARACTER)
        .count();
    if replaced * 20 > text.chars().count().max(1) {
        return Err(ParseError::Binary {
            kind: "binary data",
        });
    }
    Ok(text.into_owned())
}

/// Splits text into paragraphs at blank lines.
pub(crate) fn parse(text: &str) -> Document {
    Document {
        format: Format::Text,
        blocks: paragraphs(text, None),
        page_count: None,
        title: None,
    }
}

/// Paragraph blocks of `text`, separated by blank lines; line ends are normalized to `\n`.
pub(crate) fn paragraphs(text: &str, page: Option<u32>) -> Vec<crate::Block> {
    let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut blocks = Vec::new();
    let mut current = String::new();
    for line in normalized.lines() {
        let line = line.trim_end();
        if line.trim().is_empty() {
            push_paragraph(&mut blocks, &mut current, page);
            continue;
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(line);
    }
    push_paragraph(&mut blocks, &mut current, page);
    blocks
}

fn push_paragraph(blocks: &mut Vec<crate::Block>, current: &mut String, page: Option<u32>) {
    let paragraph = std::mem::take(current);
    let trimmed = paragraph.trim();
    if !trimmed.is_empty() {
        blocks.push(block(trimmed, BlockKind::Paragraph, page));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_boms_utf8_and_gbk() -> Result<(), ParseError> {
        assert_eq!(decode(b"\xef\xbb\xbfhello")?, "hello");
        assert_eq!(decode(b"\xff\xfeh\0i\0")?, "hi");
        assert_eq!(decode(b"\xfe\xff\0h\0i")?, "hi");
        assert_eq!(decode("中文".as_bytes())?, "中文");
        let chinese = "知识库检索增强生成，支持中文文档的解析与分块。这是一个测试文件。";
        let (gbk, _, _) = encoding_rs::GBK.encode(chinese);
        assert_eq!(decode(&gbk)?, chinese);
        Ok(())
    }

    #[test]
    fn splits_paragraphs_at_blank_lines() {
        let document = parse("one\r\ntwo\r\n\r\n\r\nthree  \n \nfour");
        let texts: Vec<_> = document.blocks.iter().map(|b| b.text.as_str()).collect();
        assert_eq!(texts, ["one\ntwo", "three", "four"]);
    }
}
