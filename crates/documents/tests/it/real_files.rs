//! Every real document in `../shared/data/docs` parses, with checks on what comes out.

use std::path::Path;

use landfall_documents::{
    BlockKind, ChunkingOptions, Document, Format, Limits, SimpleTokenizer, chunk, parse,
};

use crate::docs_dir;

fn parse_file(path: &Path) -> anyhow::Result<Document> {
    let bytes = std::fs::read(path)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parse(&name, &bytes, &Limits::default()).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The text of the blocks on one page, without line breaks (they fall inside phrases).
fn page_text(document: &Document, page: u32) -> String {
    let blocks = document.blocks.iter().filter(|b| b.page == Some(page));
    blocks
        .map(|b| b.text.replace('\n', ""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_real_document_parses_and_chunks() -> anyhow::Result<()> {
    let Some(dir) = docs_dir() else { return Ok(()) };
    let mut parsed = 0;
    for folder in ["zh", "en", "docx", "html-en", "html-zh"] {
        for entry in std::fs::read_dir(dir.join(folder))? {
            let path = entry?.path();
            // python-docx fixtures without any text: an empty table, and images only.
            if path.ends_with("tbl-2x2-table.docx") || path.ends_with("having-images.docx") {
                let result = parse("x.docx", &std::fs::read(&path)?, &Limits::default());
                assert!(
                    matches!(result, Err(landfall_documents::ParseError::Empty)),
                    "{result:?}"
                );
                continue;
            }
            let document = parse_file(&path)?;
            let text = document.text();
            let least = if folder == "docx" { 20 } else { 1000 };
            assert!(
                text.chars().count() > least,
                "{}: only {} chars",
                path.display(),
                text.chars().count()
            );
            let chunks = chunk(&document, &SimpleTokenizer, &ChunkingOptions::default())?;
            assert!(!chunks.is_empty(), "{}", path.display());
            let characters: Vec<char> = text.chars().collect();
            for piece in chunks.iter().step_by(7) {
                let slice: String = characters[piece.char_start..piece.char_end]
                    .iter()
                    .collect();
                assert_eq!(slice, piece.text, "{}", path.display());
                assert!(piece.token_count <= 128);
            }
            parsed += 1;
        }
    }
    assert_eq!(parsed, 5 + 6 + 3 + 3);
    Ok(())
}

#[test]
fn pdfs_keep_pages_and_chinese_text() -> anyhow::Result<()> {
    let Some(dir) = docs_dir() else { return Ok(()) };
    // (file, pages, page, phrase on that page)
    let cases = [
        (
            "zh/debian-reference.zh-cn.pdf",
            251,
            60,
            "从文本文件的表格中提取数据",
        ),
        (
            "zh/debian-reference.zh-cn.pdf",
            251,
            60,
            "对于复杂的替换，这使得从错误中恢复变得容易。",
        ),
        ("zh/maint-guide.zh-cn.pdf", 63, 10, "1.3 需要的开发文档"),
        (
            "zh/debian-edu-bookworm-manual.pdf",
            98,
            30,
            "Debian Edu / Skolelinux 12 Bookworm 手册 24 / 92",
        ),
        (
            "en/reportlab-userguide.pdf",
            134,
            72,
            "The reportlab.platypus.Paragraph class is one of the most useful",
        ),
        (
            "en/debian-faq.en.pdf",
            73,
            20,
            "These distributions are Debian based. But they are not Debian.",
        ),
    ];
    for (file, pages, page, phrase) in cases {
        let document = parse_file(&dir.join(file))?;
        assert_eq!(document.format, Format::Pdf);
        assert_eq!(document.page_count, Some(pages), "{file}");
        assert!(
            page_text(&document, page).contains(phrase),
            "{file} page {page} lacks {phrase:?}"
        );
        assert!(
            !page_text(&document, page - 1).contains(phrase),
            "{file} page {} has {phrase:?}",
            page - 1
        );
    }
    Ok(())
}

#[test]
fn pdf_chunks_cite_one_page_each() -> anyhow::Result<()> {
    let Some(dir) = docs_dir() else { return Ok(()) };
    let document = parse_file(&dir.join("zh/debian-reference.zh-cn.pdf"))?;
    let chunks = chunk(&document, &SimpleTokenizer, &ChunkingOptions::default())?;
    let hits: Vec<_> = chunks
        .iter()
        .filter(|c| c.text.contains("从文本文件的表格中提取数据"))
        .filter_map(|c| c.page)
        .collect();
    assert_eq!(
        hits,
        [6, 60],
        "the table of contents and the section itself"
    );
    let pages: std::collections::BTreeSet<_> = chunks.iter().filter_map(|c| c.page).collect();
    assert!(pages.len() > 240, "{} pages have chunks", pages.len());
    Ok(())
}

#[test]
fn docx_headings_tables_headers_and_links() -> anyhow::Result<()> {
    let Some(dir) = docs_dir() else { return Ok(()) };
    let docx = dir.join("docx");
    let headers = parse_file(&docx.join("hdr-header-footer.docx"))?;
    let header_blocks: Vec<&str> = headers
        .blocks
        .iter()
        .filter(|b| b.kind == BlockKind::HeaderFooter)
        .map(|b| b.text.as_str())
        .collect();
    assert!(
        header_blocks
            .iter()
            .any(|t| t.contains("Header for section-1")),
        "{header_blocks:?}"
    );
    assert!(
        header_blocks
            .iter()
            .any(|t| t.contains("Footer for section")),
        "{header_blocks:?}"
    );
    assert_eq!(
        header_blocks
            .iter()
            .filter(|t| t.contains("Header for section-1"))
            .count(),
        1
    );

    // The python-docx 2x2 table fixture has empty cells only.
    let empty = parse(
        "t.docx",
        &std::fs::read(docx.join("tbl-2x2-table.docx"))?,
        &Limits::default(),
    );
    assert!(
        matches!(empty, Err(landfall_documents::ParseError::Empty)),
        "{empty:?}"
    );
    let table = parse_file(&docx.join("blk-paras-and-tables.docx"))?;
    let tables: Vec<&str> = table
        .blocks
        .iter()
        .filter(|b| b.kind == BlockKind::Table)
        .map(|b| b.text.as_str())
        .collect();
    // One single-column table whose cell holds text and a nested table.
    assert_eq!(tables, ["Text before Table Between Text after"]);
    assert!(table.text().contains("Lorem ipsum dolor sit amet"));

    let known = parse_file(&docx.join("par-known-paragraphs.docx"))?;
    assert!(
        known.blocks.iter().any(|b| b.kind == BlockKind::Heading),
        "{:?}",
        known.blocks
    );
    assert!(known.title.is_some());

    let links = parse_file(&docx.join("par-hyperlinks.docx"))?;
    assert!(
        links.text().contains("Three hyperlinks"),
        "{}",
        links.text()
    );
    assert!(links.text().contains("here, the"), "{}", links.text());
    Ok(())
}

#[test]
fn html_has_headings_and_no_scripts_or_navigation() -> anyhow::Result<()> {
    let Some(dir) = docs_dir() else { return Ok(()) };
    let faq = parse_file(&dir.join("html-en/basic-defs.en.html"))?;
    assert_eq!(
        faq.title.as_deref(),
        Some("Chapter 1. Definitions and overview")
    );
    let text = faq.text();
    assert!(!text.contains("background-repeat"), "style text leaked");
    assert!(
        !text.contains("Table of Contents"),
        "table of contents leaked"
    );
    assert!(
        !text.starts_with("Chapter 1. Definitions and overview\n\nPrev"),
        "navigation leaked"
    );
    let section = faq.blocks.iter().find(|b| {
        b.text
            .starts_with("This document gives frequently asked questions")
    });
    let path = section.map(|b| b.heading_path.clone()).unwrap_or_default();
    assert_eq!(
        path,
        [
            "Chapter 1. Definitions and overview",
            "1.1. What is this FAQ?"
        ]
    );

    let chinese = parse_file(&dir.join("html-zh/ch01.zh-cn.html"))?;
    assert!(
        chinese
            .blocks
            .iter()
            .any(|b| b.kind == BlockKind::Heading && b.text.contains("GNU/Linux 教程"))
    );
    assert!(chinese.blocks.iter().any(|b| b.kind == BlockKind::Table));
    assert!(!chinese.text().contains("<script"));
    Ok(())
}
