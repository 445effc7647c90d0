//! Hostile and broken inputs, built by the tests: each yields a clear error, quickly.

use std::io::{Cursor, Write};
use std::time::Instant;

use landfall_documents::{BlockKind, Format, Limits, ParseError, parse};
use zip::ZipWriter;
use zip::write::SimpleFileOptions;

use crate::minimal_pdf;

fn limits() -> Limits {
    Limits::default()
}

#[test]
fn minimal_pdf_parses_per_page() -> anyhow::Result<()> {
    let document = parse(
        "two.pdf",
        &minimal_pdf(&["Hello first page", "Second page here"], false),
        &limits(),
    )?;
    assert_eq!(document.page_count, Some(2));
    let pages: Vec<_> = document
        .blocks
        .iter()
        .map(|b| (b.page, b.text.as_str()))
        .collect();
    assert_eq!(
        pages,
        [(Some(1), "Hello first page"), (Some(2), "Second page here")]
    );
    Ok(())
}

#[test]
fn encrypted_pdf_is_reported() {
    let result = parse("secret.pdf", &minimal_pdf(&["Top secret"], true), &limits());
    assert!(matches!(result, Err(ParseError::Encrypted)), "{result:?}");
}

#[test]
fn image_only_pdf_asks_for_ocr() {
    let result = parse("scan.pdf", &minimal_pdf(&["", "", ""], false), &limits());
    assert!(
        matches!(result, Err(ParseError::ImageOnly { pages: 3 })),
        "{result:?}"
    );
    let message = result.err().map(|e| e.to_string()).unwrap_or_default();
    assert_eq!(message, "3 pages, no text layer; OCR it first");
}

#[test]
fn corrupt_and_truncated_pdfs_are_reported() {
    let garbage = b"%PDF-1.7\n\x00\x01garbage that is no PDF at all\xff\xfe".to_vec();
    let result = parse("garbage.pdf", &garbage, &limits());
    assert!(
        matches!(
            result,
            Err(ParseError::Corrupt {
                format: Format::Pdf,
                ..
            })
        ),
        "{result:?}"
    );
    let mut truncated = minimal_pdf(&["Hello"], false);
    truncated.truncate(60);
    let result = parse("truncated.pdf", &truncated, &limits());
    assert!(
        matches!(
            result,
            Err(ParseError::Corrupt {
                format: Format::Pdf,
                ..
            })
        ),
        "{result:?}"
    );
}

#[test]
fn too_many_pages_is_refused() {
    let limits = Limits {
        max_pages: 2,
        ..Limits::default()
    };
    let result = parse("long.pdf", &minimal_pdf(&["a", "b", "c"], false), &limits);
    assert!(
        matches!(result, Err(ParseError::TooManyPages { pages: 3, limit: 2 })),
        "{result:?}"
    );
}

#[test]
fn empty_and_blank_files_are_reported() {
    assert!(matches!(
        parse("empty.txt", b"", &limits()),
        Err(ParseError::Empty)
    ));
    assert!(matches!(
        parse("blank.md", b"  \n\n \t\n", &limits()),
        Err(ParseError::Empty)
    ));
    assert!(matches!(
        parse("empty.pdf", b"", &limits()),
        Err(ParseError::Empty)
    ));
}

#[test]
fn too_large_files_are_refused_before_parsing() {
    let limits = Limits {
        max_bytes: 10,
        ..Limits::default()
    };
    let result = parse("big.txt", b"more than ten bytes", &limits);
    assert!(
        matches!(
            result,
            Err(ParseError::TooLarge {
                size_bytes: 19,
                limit_bytes: 10
            })
        ),
        "{result:?}"
    );
}

/// xorshift bytes: deterministic noise.
fn random_bytes(length: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

#[test]
fn binary_files_are_not_documents() {
    for name in [
        "data.bin",
        "notes.txt",
        "page.html",
        "table.csv",
        "report.docx",
    ] {
        let result = parse(name, &random_bytes(4096), &limits());
        assert!(
            matches!(
                result,
                Err(ParseError::Binary { .. } | ParseError::Corrupt { .. })
            ),
            "{name}: {result:?}"
        );
    }
    let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
    elf.extend(random_bytes(100));
    assert!(matches!(
        parse("tool.txt", &elf, &limits()),
        Err(ParseError::Binary {
            kind: "an ELF executable"
        })
    ));
}

#[test]
fn gbk_text_is_decoded() -> anyhow::Result<()> {
    let chinese = "第一章 知识库\n\n检索增强生成需要正确解析中文文档。编码可能是国标码。";
    let (gbk, _, unmappable) = encoding_rs::GBK.encode(chinese);
    assert!(!unmappable);
    let document = parse("中文.txt", &gbk, &limits())?;
    assert_eq!(document.text(), chinese);
    let (utf16, _, _) = encoding_rs::UTF_16LE.encode(chinese);
    let mut with_bom = b"\xff\xfe".to_vec();
    with_bom.extend(chinese.encode_utf16().flat_map(u16::to_le_bytes));
    let document = parse("utf16.txt", &with_bom, &limits())?;
    assert_eq!(document.text(), chinese, "{} bytes of utf-16", utf16.len());
    Ok(())
}

/// A DOCX-named zip whose document.xml is `length` zero bytes, compressed while streaming.
fn zero_bomb(length: u64) -> anyhow::Result<Vec<u8>> {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1))
        .large_file(length >= u64::from(u32::MAX));
    writer.start_file("[Content_Types].xml", options)?;
    writer.write_all(b"<Types/>")?;
    writer.start_file("word/document.xml", options)?;
    let zeros = vec![0u8; 1 << 20];
    let mut written = 0u64;
    while written < length {
        let step = (length - written).min(zeros.len() as u64) as usize;
        writer.write_all(&zeros[..step])?;
        written += step as u64;
    }
    Ok(writer.finish()?.into_inner())
}

#[test]
fn zip_bomb_docx_is_stopped() -> anyhow::Result<()> {
    let started = Instant::now();
    let bomb = zero_bomb(2 << 30)?;
    eprintln!(
        "2 GiB bomb: {} bytes compressed, built in {:?}",
        bomb.len(),
        started.elapsed()
    );
    let started = Instant::now();
    let result = parse("invoice.docx", &bomb, &limits());
    assert!(
        matches!(result, Err(ParseError::ZipBomb { .. })),
        "{result:?}"
    );
    assert!(
        started.elapsed().as_secs() < 5,
        "took {:?}",
        started.elapsed()
    );
    Ok(())
}

/// Rewrites every declared uncompressed size of `name` in local and central headers.
fn lie_about_size(zip: &mut [u8], name: &[u8], declared: u32) {
    for index in 0..zip.len().saturating_sub(46) {
        // (offset of the uncompressed size, of the name length, of the name)
        let (size_at, length_at, name_at) = match &zip[index..index + 4] {
            b"PK\x03\x04" => (index + 22, index + 26, index + 30),
            b"PK\x01\x02" => (index + 24, index + 28, index + 46),
            _ => continue,
        };
        let name_length = usize::from(u16::from_le_bytes([zip[length_at], zip[length_at + 1]]));
        if zip.get(name_at..name_at + name_length) == Some(name) {
            zip[size_at..size_at + 4].copy_from_slice(&declared.to_le_bytes());
        }
    }
}

#[test]
fn zip_entry_lying_about_its_size_is_stopped() -> anyhow::Result<()> {
    let mut bomb = zero_bomb(64 << 20)?;
    lie_about_size(&mut bomb, b"word/document.xml", 1000);
    let result = parse("small.docx", &bomb, &limits());
    assert!(
        matches!(
            result,
            Err(ParseError::ZipBomb { .. } | ParseError::Corrupt { .. })
        ),
        "{result:?}"
    );
    Ok(())
}

#[test]
fn zip_that_is_not_docx_is_unsupported() -> anyhow::Result<()> {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    writer.start_file("readme.txt", SimpleFileOptions::default())?;
    writer.write_all(b"hello")?;
    let bytes = writer.finish()?.into_inner();
    assert!(matches!(
        parse("archive.docx", &bytes, &limits()),
        Err(ParseError::Unsupported { .. })
    ));
    assert!(matches!(
        parse("archive.zip", &bytes, &limits()),
        Err(ParseError::Unsupported { .. })
    ));
    Ok(())
}

#[test]
fn bad_jsonl_line_is_named() {
    let result = parse(
        "records.jsonl",
        b"{\"a\":1}\n{\"b\":2}\nnot json\n",
        &limits(),
    );
    let message = result.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.starts_with("line 3: invalid JSON"), "{message}");
}

#[test]
fn a_batch_goes_on_past_bad_files() {
    let chinese_gbk = encoding_rs::GBK.encode("中文文本").0.into_owned();
    let batch: Vec<(&str, Vec<u8>)> = vec![
        ("good.pdf", minimal_pdf(&["Good PDF text"], false)),
        ("secret.pdf", minimal_pdf(&["x"], true)),
        ("notes.md", b"# Notes\n\nSome *text*.".to_vec()),
        ("program.txt", b"\x7fELF\x02\x01\x01\x00".to_vec()),
        ("people.csv", b"name,role\nAda,engineer\n".to_vec()),
        ("empty.txt", Vec::new()),
        ("gbk.txt", chinese_gbk),
    ];
    let results: Vec<_> = batch
        .iter()
        .map(|(name, bytes)| (name, parse(name, bytes, &limits())))
        .collect();
    let ok: Vec<_> = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(n, _)| **n)
        .collect();
    assert_eq!(ok, ["good.pdf", "notes.md", "people.csv", "gbk.txt"]);
    for (name, result) in &results {
        if let Err(error) = result {
            assert!(!error.to_string().is_empty(), "{name}");
        }
    }
    let csv = results
        .iter()
        .find(|(n, _)| **n == "people.csv")
        .and_then(|(_, r)| r.as_ref().ok());
    assert_eq!(csv.map(|d| d.blocks[0].kind), Some(BlockKind::Record));
}
