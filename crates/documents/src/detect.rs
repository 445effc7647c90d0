//! Format detection from the extension and the leading bytes.

use crate::{Format, ParseError};

/// Binary signatures that are never documents we read.
const BINARY_MAGIC: &[(&[u8], &str)] = &[
    (b"\x7fELF", "an ELF executable"),
    (b"MZ", "a Windows executable"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"\0asm", "a WebAssembly module"),
    (b"SQLite format 3\0", "an SQLite database"),
    (b"\xd0\xcf\x11\xe0", "a legacy Office (OLE) file"),
    (b"\xcf\xfa\xed\xfe", "a Mach-O executable"),
];

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

pub(crate) fn detect(file_name: &str, bytes: &[u8]) -> Result<Format, ParseError> {
    let extension = extension(file_name);
    if bytes.is_empty() {
        return Err(ParseError::Empty);
    }
    if starts_with_pdf_header(bytes) {
        return Ok(Format::Pdf);
    }
    if bytes.starts_with(ZIP_MAGIC) || bytes.starts_with(b"PK\x05\x06") {
        return match extension.as_str() {
            "docx" => Ok(Format::Docx),
            "xlsx" | "pptx" | "odt" | "epub" => Err(ParseError::Unsupported {
                format: format!(".{extension}"),
            }),
            _ if contains(bytes, b"word/document.xml") => Ok(Format::Docx),
            _ => Err(ParseError::Unsupported {
                format: "zip archive".to_owned(),
            }),
        };
    }
    if let Some((_, kind)) = BINARY_MAGIC
        .iter()
        .find(|(magic, _)| bytes.starts_with(magic))
    {
        return Err(ParseError::Binary { kind });
    }
    let by_extension = match extension.as_str() {
        "pdf" => Some(Format::Pdf),
        "docx" => Some(Format::Docx),
        "html" | "htm" | "xhtml" => Some(Format::Html),
        "md" | "markdown" | "mdown" | "mkd" => Some(Format::Markdown),
        "csv" => Some(Format::Csv),
        "jsonl" | "ndjson" => Some(Format::Jsonl),
        "doc" | "xls" | "ppt" | "xlsx" | "pptx" | "odt" | "rtf" | "epub" => {
            return Err(ParseError::Unsupported {
                format: format!(".{extension}"),
            });
        }
        _ => None,
    };
    // A PDF or DOCX without its signature is broken, whatever its name says.
    match by_extension {
        Some(format @ (Format::Pdf | Format::Docx)) => {
            return Err(ParseError::Corrupt {
                format,
                reason: "the file does not start with the format's signature".to_owned(),
            });
        }
        Some(format) => {
            ensure_text(bytes)?;
            return Ok(format);
        }
        None => {}
    }
    ensure_text(bytes)?;
    Ok(sniff_text_format(bytes))
}

fn extension(file_name: &str) -> String {
    let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
    match base.rsplit_once('.') {
        Some((stem, extension)) if !stem.is_empty() => extension.to_ascii_lowercase(),
        _ => String::new(),
    }
}

/// PDF readers accept the header anywhere in the first KiB.
fn starts_with_pdf_header(bytes: &[u8]) -> bool {
    contains(&bytes[..bytes.len().min(1024)], b"%PDF-")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Rejects bytes that are not text: NUL bytes or many control characters, unless the file
/// starts with a UTF-16 byte order mark (whose text is full of NUL bytes).
fn ensure_text(bytes: &[u8]) -> Result<(), ParseError> {
    if bytes.starts_with(b"\xff\xfe") || bytes.starts_with(b"\xfe\xff") {
        return Ok(());
    }
    let head = &bytes[..bytes.len().min(8192)];
    let control = head
        .iter()
        .filter(|&&byte| byte < 0x20 && !matches!(byte, b'\n' | b'\r' | b'\t' | 0x0c | 0x1b))
        .count();
    if head.contains(&0) || control * 100 > head.len() {
        return Err(ParseError::Binary {
            kind: "binary data",
        });
    }
    Ok(())
}

fn sniff_text_format(bytes: &[u8]) -> Format {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]).to_ascii_lowercase();
    let trimmed = head.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with("<!doctype html")
        || trimmed.starts_with("<html")
        || head.contains("<body")
    {
        Format::Html
    } else {
        Format::Text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_magic_and_extension() {
        let cases: &[(&str, &[u8], Option<Format>)] = &[
            ("a.pdf", b"%PDF-1.7\n...", Some(Format::Pdf)),
            ("a.bin", b"%PDF-1.4\n", Some(Format::Pdf)),
            ("a.txt", b"hello", Some(Format::Text)),
            ("README", b"hello", Some(Format::Text)),
            ("a.md", b"# Title", Some(Format::Markdown)),
            ("a.HTML", b"<p>x</p>", Some(Format::Html)),
            ("page", b"<!DOCTYPE html><html>", Some(Format::Html)),
            ("a.csv", b"a,b\n1,2", Some(Format::Csv)),
            ("a.jsonl", b"{}", Some(Format::Jsonl)),
            ("a.txt", b"\xff\xfeh\0i\0", Some(Format::Text)),
            ("a.txt", b"\x7fELF\x02\x01", None),
            ("a.txt", b"\x89PNG\r\n", None),
            ("a.docx", b"PK\x03\x04rest", Some(Format::Docx)),
            ("a.zip", b"PK\x03\x04rest", None),
            ("a.pdf", b"not a pdf", None),
            ("a.txt", b"abc\0def", None),
            ("a.txt", b"", None),
        ];
        for (name, bytes, expected) in cases {
            let detected = detect(name, bytes).ok();
            assert_eq!(detected, *expected, "{name} {bytes:?}");
        }
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(matches!(
            detect("x.txt", b"\x7fELF"),
            Err(ParseError::Binary {
                kind: "an ELF executable"
            })
        ));
        assert!(matches!(
            detect("x.zip", b"PK\x03\x04"),
            Err(ParseError::Unsupported { .. })
        ));
        assert!(matches!(
            detect("x.pptx", b"PK\x03\x04"),
            Err(ParseError::Unsupported { .. })
        ));
    }
}
