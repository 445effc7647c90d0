//! Markdown: headings become the heading path; text keeps no markup.

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};

use crate::{Block, BlockKind, Document, Format};

/// Collects blocks while tracking the heading path by level.
pub(crate) struct BlockBuilder {
    blocks: Vec<Block>,
    /// `(level, title)` of the enclosing headings, outermost first.
    headings: Vec<(u8, String)>,
    page: Option<u32>,
}

impl BlockBuilder {
    pub(crate) fn new(page: Option<u32>) -> Self {
        Self {
            blocks: Vec::new(),
            headings: Vec::new(),
            page,
        }
    }

    /// Adds a heading of `level` (1 = outermost); it closes headings at its level or deeper.
    pub(crate) fn heading(&mut self, level: u8, text: &str) {
        let text = collapse_whitespace(text);
        if text.is_empty() {
            return;
        }
        self.headings.retain(|(open, _)| *open < level);
        self.headings.push((level, text.clone()));
        self.push(&text, BlockKind::Heading);
    }

    /// Adds a block under the current heading path; empty text is ignored.
    pub(crate) fn push(&mut self, text: &str, kind: BlockKind) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        let heading_path = self
            .headings
            .iter()
            .map(|(_, title)| title.clone())
            .collect();
        self.blocks.push(Block {
            text: text.to_owned(),
            page: self.page,
            heading_path,
            kind,
        });
    }

    pub(crate) fn into_blocks(self) -> Vec<Block> {
        self.blocks
    }
}

/// Joins runs of whitespace (newlines included) into one space.
pub(crate) fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(crate) fn parse(source: &str) -> Document {
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_FOOTNOTES;
    let mut builder = BlockBuilder::new(None);
    let mut title = None;
    let mut text = String::new();
    let mut row: Vec<String> = Vec::new();
    let mut table: Vec<String> = Vec::new();
    let mut list_depth = 0usize;
    for event in Parser::new_ext(source, options) {
        match event {
            Event::Start(
                Tag::Heading { .. } | Tag::Paragraph | Tag::CodeBlock(_) | Tag::TableCell,
            ) => {
                flush_list_text(&mut builder, &mut text, list_depth);
            }
            Event::Start(Tag::Item) => {
                flush_list_text(&mut builder, &mut text, list_depth);
                list_depth += 1;
            }
            Event::End(TagEnd::Item) => {
                flush_list_text(&mut builder, &mut text, list_depth);
                list_depth = list_depth.saturating_sub(1);
            }
            Event::End(TagEnd::Heading(level)) => {
                let level = heading_level(level);
                if level == 1 && title.is_none() {
                    title = Some(collapse_whitespace(&text));
                }
                builder.heading(level, &std::mem::take(&mut text));
            }
            Event::End(TagEnd::Paragraph) => {
                let kind = if list_depth > 0 {
                    BlockKind::ListItem
                } else {
                    BlockKind::Paragraph
                };
                builder.push(&std::mem::take(&mut text), kind);
            }
            Event::End(TagEnd::CodeBlock) => {
                builder.push(&std::mem::take(&mut text), BlockKind::Code)
            }
            Event::End(TagEnd::TableCell) => {
                row.push(collapse_whitespace(&std::mem::take(&mut text)))
            }
            Event::End(TagEnd::TableHead | TagEnd::TableRow) => {
                table.push(std::mem::take(&mut row).join(" | "))
            }
            Event::End(TagEnd::Table) => {
                builder.push(&std::mem::take(&mut table).join("\n"), BlockKind::Table)
            }
            Event::Text(content) | Event::Code(content) => text.push_str(&content),
            Event::SoftBreak => text.push(' '),
            Event::HardBreak => text.push('\n'),
            Event::FootnoteReference(label) => text.push_str(&format!("[{label}]")),
            _ => {}
        }
    }
    flush_list_text(&mut builder, &mut text, list_depth);
    Document {
        format: Format::Markdown,
        blocks: builder.into_blocks(),
        page_count: None,
        title,
    }
}

/// Tight list items carry text without a paragraph; emit it as a list item.
fn flush_list_text(builder: &mut BlockBuilder, text: &mut String, list_depth: usize) {
    let kind = if list_depth > 0 {
        BlockKind::ListItem
    } else {
        BlockKind::Paragraph
    };
    builder.push(&std::mem::take(text), kind);
}

fn heading_level(level: HeadingLevel) -> u8 {
    match level {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_lists_tables_and_code() {
        let source = "# Guide\n\nIntro *text* with `code`.\n\n## Install\n\n- one\n- two\n\n\
                      ```sh\napt install x\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n# Other\n\nEnd.\n";
        let document = parse(source);
        let summary: Vec<_> = document
            .blocks
            .iter()
            .map(|b| (b.kind, b.text.as_str(), b.heading_path.join(" > ")))
            .collect();
        assert_eq!(
            summary,
            [
                (BlockKind::Heading, "Guide", "Guide".to_owned()),
                (
                    BlockKind::Paragraph,
                    "Intro text with code.",
                    "Guide".to_owned()
                ),
                (BlockKind::Heading, "Install", "Guide > Install".to_owned()),
                (BlockKind::ListItem, "one", "Guide > Install".to_owned()),
                (BlockKind::ListItem, "two", "Guide > Install".to_owned()),
                (
                    BlockKind::Code,
                    "apt install x",
                    "Guide > Install".to_owned()
                ),
                (
                    BlockKind::Table,
                    "a | b\n1 | 2",
                    "Guide > Install".to_owned()
                ),
                (BlockKind::Heading, "Other", "Other".to_owned()),
                (BlockKind::Paragraph, "End.", "Other".to_owned()),
            ]
        );
        assert_eq!(document.title.as_deref(), Some("Guide"));
    }
}
