//! DOCX: paragraphs, headings with their levels, tables, lists, hyperlink text, and headers and
//! footers once each. Zip entries are streamed through a size guard, never trusted.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Cursor, Read};

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use zip::ZipArchive;

use crate::markdown::{BlockBuilder, collapse_whitespace};
use crate::{Block, BlockKind, Document, Format, Limits, ParseError};

/// Entries smaller than this unpacked are exempt from the ratio check (tiny XML parts compress
/// very well).
const RATIO_EXEMPT_BYTES: u64 = 1024 * 1024;

pub(crate) fn parse(bytes: &[u8], limits: &Limits) -> Result<Document, ParseError> {
    let mut archive = ZipArchive::new(Cursor::new(bytes)).map_err(corrupt)?;
    if archive.len() > limits.max_zip_entries {
        return Err(ParseError::TooManyEntries {
            entries: archive.len(),
            limit: limits.max_zip_entries,
        });
    }
    let names: Vec<String> = archive
        .file_names()
        .map(|name| name.map(|name| name.into_owned()))
        .collect::<Result<_, _>>()
        .map_err(corrupt)?;
    if !names.iter().any(|name| name == "word/document.xml") {
        return Err(ParseError::Unsupported {
            format: "zip archive that is not a DOCX".to_owned(),
        });
    }
    let mut budget = Budget {
        remaining: limits.max_unzipped_bytes,
        max_ratio: limits.max_zip_ratio,
    };
    let styles = match names.iter().any(|name| name == "word/styles.xml") {
        true => read_entry(&mut archive, "word/styles.xml", &mut budget, |xml| {
            heading_styles(xml)
        })?,
        false => HashMap::new(),
    };
    let mut builder = BlockBuilder::new(None);
    let mut title = None;
    let mut part_names: Vec<&String> = names
        .iter()
        .filter(|name| is_header_or_footer(name))
        .collect();
    part_names.sort();
    let mut headers = Vec::new();
    let mut footers = Vec::new();
    for name in part_names {
        let text = read_entry(&mut archive, name, &mut budget, |xml| {
            let mut part = BlockBuilder::new(None);
            walk_body(xml, &HashMap::new(), &mut part, &mut None)?;
            let texts: Vec<String> = part.into_blocks().into_iter().map(|b| b.text).collect();
            Ok(texts.join("\n"))
        })?;
        let list = if name.starts_with("word/header") {
            &mut headers
        } else {
            &mut footers
        };
        if !text.trim().is_empty() && !list.contains(&text) {
            list.push(text);
        }
    }
    for header in &headers {
        builder.push(header, BlockKind::HeaderFooter);
    }
    read_entry(&mut archive, "word/document.xml", &mut budget, |xml| {
        walk_body(xml, &styles, &mut builder, &mut title)
    })?;
    for footer in &footers {
        builder.push(footer, BlockKind::HeaderFooter);
    }
    let blocks: Vec<Block> = builder.into_blocks();
    Ok(Document {
        format: Format::Docx,
        blocks,
        page_count: None,
        title,
    })
}

fn is_header_or_footer(name: &str) -> bool {
    (name.starts_with("word/header") || name.starts_with("word/footer")) && name.ends_with(".xml")
}

fn corrupt(error: impl std::fmt::Display) -> ParseError {
    ParseError::Corrupt {
        format: Format::Docx,
        reason: error.to_string(),
    }
}

/// Unpacked bytes still allowed for this archive.
struct Budget {
    remaining: u64,
    max_ratio: u64,
}

/// Streams one entry through `read`, stopping as soon as it unpacks to more than its declared
/// size, the remaining budget, or the allowed ratio.
fn read_entry<T>(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    name: &str,
    budget: &mut Budget,
    read: impl FnOnce(&mut Reader<BufReader<GuardedReader<'_>>>) -> Result<T, ParseError>,
) -> Result<T, ParseError> {
    let entry = archive.by_name(name).map_err(corrupt)?;
    let declared = entry.size();
    let compressed_bytes = entry.compressed_size();
    let ratio_limit = compressed_bytes
        .saturating_mul(budget.max_ratio)
        .max(RATIO_EXEMPT_BYTES);
    let limit_bytes = budget.remaining.min(ratio_limit);
    let bomb = || ParseError::ZipBomb {
        entry: name.to_owned(),
        compressed_bytes,
        limit_bytes,
    };
    if declared > limit_bytes {
        return Err(bomb());
    }
    // The declared size is the most this entry may yield: more means the header lies.
    let guarded = GuardedReader {
        inner: Box::new(entry),
        read_bytes: 0,
        cap_bytes: declared,
        exceeded: false,
    };
    let mut reader = Reader::from_reader(BufReader::new(guarded));
    let result = read(&mut reader);
    let guard = reader.get_ref().get_ref();
    if guard.exceeded {
        return Err(bomb());
    }
    budget.remaining = budget.remaining.saturating_sub(guard.read_bytes);
    result
}

/// A reader that fails once more than `cap_bytes` have come through.
struct GuardedReader<'a> {
    inner: Box<dyn Read + 'a>,
    read_bytes: u64,
    cap_bytes: u64,
    exceeded: bool,
}

impl Read for GuardedReader<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        // Ask for one byte beyond the cap so an overrun is seen, never buffered in full.
        let allowed = self
            .cap_bytes
            .saturating_sub(self.read_bytes)
            .saturating_add(1);
        let length = buffer
            .len()
            .min(usize::try_from(allowed).unwrap_or(usize::MAX));
        let count = self.inner.read(&mut buffer[..length])?;
        self.read_bytes += count as u64;
        if self.read_bytes > self.cap_bytes {
            self.exceeded = true;
            return Err(std::io::Error::other(
                "zip entry larger than declared or allowed",
            ));
        }
        Ok(count)
    }
}

/// Style id -> heading level, from `word/styles.xml` (names `heading N`, `Title`, or an outline
/// level).
fn heading_styles<R: BufRead>(xml: &mut Reader<R>) -> Result<HashMap<String, u8>, ParseError> {
    let mut styles = HashMap::new();
    let mut buffer = Vec::new();
    let mut current: Option<(String, Option<u8>)> = None;
    loop {
        buffer.clear();
        match xml.read_event_into(&mut buffer).map_err(corrupt)? {
            Event::Start(element) | Event::Empty(element) => match element.local_name().as_ref() {
                "style" => current = attribute(&element, "w:styleId").map(|id| (id, None)),
                "name" => {
                    let level =
                        attribute(&element, "w:val").and_then(|name| style_name_level(&name));
                    if let (Some((_, slot)), Some(level)) = (current.as_mut(), level) {
                        *slot = Some(level);
                    }
                }
                "outlineLvl" => {
                    let level = attribute(&element, "w:val").and_then(|v| v.parse::<u8>().ok());
                    if let (Some((_, slot @ None)), Some(level)) = (current.as_mut(), level)
                        && level < 9
                    {
                        *slot = Some(level + 1);
                    }
                }
                _ => {}
            },
            Event::End(element) if element.local_name().as_ref() == "style" => {
                if let Some((id, Some(level))) = current.take() {
                    styles.insert(id, level);
                }
            }
            Event::Eof => return Ok(styles),
            _ => {}
        }
    }
}

fn style_name_level(name: &str) -> Option<u8> {
    let lower = name.to_ascii_lowercase();
    if lower == "title" {
        return Some(1);
    }
    lower
        .strip_prefix("heading ")
        .and_then(|n| n.trim().parse::<u8>().ok())
        .filter(|n| (1..=9).contains(n))
}

fn attribute(element: &BytesStart<'_>, name: &str) -> Option<String> {
    element
        .try_get_attribute(name)
        .ok()
        .flatten()
        .map(|a| a.value.into_owned())
}

/// One table being read; tables nest inside cells.
#[derive(Default)]
struct Table {
    rows: Vec<String>,
    row: Vec<String>,
    cell: String,
}

/// Reads a body (document, header or footer) into `builder`.
fn walk_body<R: BufRead>(
    xml: &mut Reader<R>,
    styles: &HashMap<String, u8>,
    builder: &mut BlockBuilder,
    title: &mut Option<String>,
) -> Result<(), ParseError> {
    let mut buffer = Vec::new();
    let mut paragraph = String::new();
    let mut style: Option<String> = None;
    let mut is_list = false;
    let mut in_text = false;
    let mut tables: Vec<Table> = Vec::new();
    loop {
        buffer.clear();
        match xml.read_event_into(&mut buffer).map_err(corrupt)? {
            Event::Start(element) => match element.local_name().as_ref() {
                "p" => {
                    paragraph.clear();
                    style = None;
                    is_list = false;
                }
                "t" => in_text = true,
                "pStyle" => style = attribute(&element, "w:val"),
                "numPr" => is_list = true,
                "tbl" => tables.push(Table::default()),
                _ => {}
            },
            Event::Empty(element) => match element.local_name().as_ref() {
                "pStyle" => style = attribute(&element, "w:val"),
                "numPr" => is_list = true,
                "tab" => paragraph.push('\t'),
                "br" | "cr" => paragraph.push('\n'),
                _ => {}
            },
            Event::Text(text) if in_text => paragraph.push_str(&text.xml10_content()),
            Event::GeneralRef(reference) if in_text => {
                if let Ok(Some(character)) = reference.resolve_char_ref() {
                    paragraph.push(character);
                } else if let Some(resolved) =
                    quick_xml::escape::resolve_predefined_entity(&reference)
                {
                    paragraph.push_str(resolved);
                }
            }
            Event::End(element) => match element.local_name().as_ref() {
                "t" => in_text = false,
                "p" => {
                    let text = std::mem::take(&mut paragraph);
                    if let Some(table) = tables.last_mut() {
                        let text = collapse_whitespace(&text);
                        if !text.is_empty() {
                            if !table.cell.is_empty() {
                                table.cell.push(' ');
                            }
                            table.cell.push_str(&text);
                        }
                        continue;
                    }
                    end_paragraph(&text, style.as_deref(), is_list, styles, builder, title);
                }
                "tc" => {
                    if let Some(table) = tables.last_mut() {
                        let cell = std::mem::take(&mut table.cell);
                        table.row.push(cell);
                    }
                }
                "tr" => {
                    if let Some(table) = tables.last_mut() {
                        let row = std::mem::take(&mut table.row);
                        if row.iter().any(|cell| !cell.is_empty()) {
                            table.rows.push(row.join(" | "));
                        }
                    }
                }
                "tbl" => {
                    let Some(table) = tables.pop() else { continue };
                    let text = table.rows.join("\n");
                    match tables.last_mut() {
                        Some(outer) => {
                            if !outer.cell.is_empty() {
                                outer.cell.push(' ');
                            }
                            outer.cell.push_str(&collapse_whitespace(&text));
                        }
                        None => builder.push(&text, BlockKind::Table),
                    }
                }
                _ => {}
            },
            Event::Eof => return Ok(()),
            _ => {}
        }
    }
}

fn end_paragraph(
    text: &str,
    style: Option<&str>,
    is_list: bool,
    styles: &HashMap<String, u8>,
    builder: &mut BlockBuilder,
    title: &mut Option<String>,
) {
    let level = style.and_then(|id| {
        styles
            .get(id)
            .copied()
            .or_else(|| style_name_level(&id.replace("Heading", "heading ")))
    });
    match level {
        Some(level) => {
            if title.is_none() {
                *title = Some(collapse_whitespace(text)).filter(|t| !t.is_empty());
            }
            builder.heading(level, text);
        }
        None if is_list => builder.push(text, BlockKind::ListItem),
        None => builder.push(text, BlockKind::Paragraph),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use zip::write::SimpleFileOptions;

    use super::*;

    const W: &str = "xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"";

    fn docx(parts: &[(&str, String)]) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, content) in parts {
            writer.start_file(*name, SimpleFileOptions::default())?;
            writer.write_all(content.as_bytes())?;
        }
        Ok(writer.finish()?.into_inner())
    }

    fn paragraph(style: Option<&str>, text: &str) -> String {
        let style = style
            .map(|s| format!("<w:pPr><w:pStyle w:val=\"{s}\"/></w:pPr>"))
            .unwrap_or_default();
        format!("<w:p>{style}<w:r><w:t xml:space=\"preserve\">{text}</w:t></w:r></w:p>")
    }

    #[test]
    fn reads_headings_tables_links_and_headers() -> Result<(), Box<dyn std::error::Error>> {
        let cell = |text: &str| format!("<w:tc>{}</w:tc>", paragraph(None, text));
        let table = format!(
            "<w:tbl><w:tr>{}{}</w:tr><w:tr>{}{}</w:tr></w:tbl>",
            cell("Name"),
            cell("Role"),
            cell("Ada"),
            cell("Engineer")
        );
        let body = format!(
            "<w:document {W}><w:body>{}{}<w:p><w:r><w:t>See </w:t></w:r><w:hyperlink><w:r><w:t>the site</w:t></w:r></w:hyperlink><w:r><w:t> &amp; more</w:t></w:r></w:p>{}{table}</w:body></w:document>",
            paragraph(Some("Heading1"), "Intro"),
            paragraph(None, "First."),
            paragraph(Some("H2"), "Details"),
        );
        let styles = format!(
            "<w:styles {W}><w:style w:type=\"paragraph\" w:styleId=\"H2\"><w:name w:val=\"heading 2\"/></w:style></w:styles>"
        );
        let header = format!(
            "<w:hdr {W}>{}</w:hdr>",
            paragraph(None, "ACME confidential")
        );
        let bytes = docx(&[
            ("word/document.xml", body),
            ("word/styles.xml", styles),
            ("word/header1.xml", header.clone()),
            ("word/header2.xml", header),
        ])?;
        let document = parse(&bytes, &Limits::default())?;
        let summary: Vec<_> = document
            .blocks
            .iter()
            .map(|b| (b.kind, b.text.as_str(), b.heading_path.join(" > ")))
            .collect();
        assert_eq!(
            summary,
            [
                (BlockKind::HeaderFooter, "ACME confidential", String::new()),
                (BlockKind::Heading, "Intro", "Intro".to_owned()),
                (BlockKind::Paragraph, "First.", "Intro".to_owned()),
                (
                    BlockKind::Paragraph,
                    "See the site & more",
                    "Intro".to_owned()
                ),
                (BlockKind::Heading, "Details", "Intro > Details".to_owned()),
                (
                    BlockKind::Table,
                    "Name | Role\nAda | Engineer",
                    "Intro > Details".to_owned()
                ),
            ]
        );
        assert_eq!(document.title.as_deref(), Some("Intro"));
        Ok(())
    }

    #[test]
    fn too_many_entries_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let parts: Vec<(&str, String)> = vec![
            ("word/document.xml", String::new()),
            ("a", String::new()),
            ("b", String::new()),
        ];
        let limits = Limits {
            max_zip_entries: 2,
            ..Limits::default()
        };
        let result = parse(&docx(&parts)?, &limits);
        assert!(
            matches!(
                result,
                Err(ParseError::TooManyEntries {
                    entries: 3,
                    limit: 2
                })
            ),
            "{result:?}"
        );
        Ok(())
    }

    #[test]
    fn style_names_map_to_levels() {
        let cases = [
            ("heading 1", Some(1)),
            ("Heading 3", Some(3)),
            ("Title", Some(1)),
            ("Normal", None),
            ("heading x", None),
        ];
        for (name, level) in cases {
            assert_eq!(style_name_level(name), level, "{name}");
        }
    }
}
