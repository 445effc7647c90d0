//! HTML: main text and headings; scripts, styles, navigation, headers, footers, asides and
//! forms are dropped.

use scraper::{ElementRef, Html, Node, Selector};

use crate::markdown::{BlockBuilder, collapse_whitespace};
use crate::{BlockKind, Document, Format, ParseError};

/// Elements whose content is never document text.
const SKIPPED: &[&str] = &[
    "script", "style", "nav", "header", "footer", "aside", "noscript", "form", "template", "svg",
    "iframe", "button", "select", "textarea", "object", "canvas", "head", "menu", "dialog",
];

/// Class names of navigation boxes in generated HTML (DocBook, Sphinx, wikis).
const SKIPPED_CLASSES: &[&str] = &[
    "navheader",
    "navfooter",
    "toc",
    "navbar",
    "breadcrumb",
    "sidebar",
    "skip-link",
];

/// Elements that end the running paragraph.
const BLOCK_ELEMENTS: &[&str] = &[
    "p",
    "div",
    "section",
    "article",
    "main",
    "blockquote",
    "dd",
    "dt",
    "dl",
    "ul",
    "ol",
    "figure",
    "figcaption",
    "body",
    "address",
    "hr",
    "center",
    "caption",
    "details",
    "summary",
];

/// Marks a `<br>` in collected text; source line breaks are plain whitespace in HTML.
const LINE_BREAK: char = '\u{E000}';

/// Deeper nesting than this is ignored, so hostile input cannot exhaust the stack.
const MAX_DEPTH: usize = 200;

pub(crate) fn parse(source: &str) -> Result<Document, ParseError> {
    let html = Html::parse_document(source);
    let title = selector("title")
        .and_then(|s| html.select(&s).next())
        .map(|title| collapse_whitespace(&title.text().collect::<String>()))
        .filter(|title| !title.is_empty());
    let root = ["main", "article", "[role=main]", "body"]
        .iter()
        .filter_map(|name| selector(name))
        .find_map(|s| html.select(&s).next())
        .unwrap_or_else(|| html.root_element());
    let mut walker = Walker {
        builder: BlockBuilder::new(None),
        text: String::new(),
        list_depth: 0,
    };
    walker.visit(root, 0);
    walker.flush();
    Ok(Document {
        format: Format::Html,
        blocks: walker.builder.into_blocks(),
        page_count: None,
        title,
    })
}

fn selector(css: &str) -> Option<Selector> {
    Selector::parse(css).ok()
}

struct Walker {
    builder: BlockBuilder,
    text: String,
    list_depth: usize,
}

impl Walker {
    fn visit(&mut self, element: ElementRef<'_>, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        for child in element.children() {
            match child.value() {
                Node::Text(text) => self.text.push_str(text),
                Node::Element(_) => {
                    if let Some(child) = ElementRef::wrap(child) {
                        self.visit_element(child, depth + 1);
                    }
                }
                _ => {}
            }
        }
    }

    fn visit_element(&mut self, element: ElementRef<'_>, depth: usize) {
        let value = element.value();
        let name = value.name();
        if is_skipped(element) {
            return;
        }
        match name {
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                self.flush();
                let level = name.as_bytes()[1].saturating_sub(b'0');
                self.builder
                    .heading(level, &element.text().collect::<String>());
            }
            "table" => {
                self.flush();
                self.builder.push(&table_text(element), BlockKind::Table);
            }
            "pre" => {
                self.flush();
                self.builder
                    .push(&element.text().collect::<String>(), BlockKind::Code);
            }
            "li" => {
                self.flush();
                self.list_depth += 1;
                self.visit(element, depth);
                self.flush();
                self.list_depth -= 1;
            }
            "br" => self.text.push(LINE_BREAK),
            "img" => {}
            _ if BLOCK_ELEMENTS.contains(&name) => {
                self.flush();
                self.visit(element, depth);
                self.flush();
            }
            _ => self.visit(element, depth),
        }
    }

    fn flush(&mut self) {
        let text = std::mem::take(&mut self.text);
        let lines: Vec<String> = text
            .split(LINE_BREAK)
            .map(collapse_whitespace)
            .filter(|l| !l.is_empty())
            .collect();
        let kind = if self.list_depth > 0 {
            BlockKind::ListItem
        } else {
            BlockKind::Paragraph
        };
        self.builder.push(&lines.join("\n"), kind);
    }
}

fn is_skipped(element: ElementRef<'_>) -> bool {
    let value = element.value();
    if SKIPPED.contains(&value.name()) || value.attr("hidden").is_some() {
        return true;
    }
    if matches!(
        value.attr("role"),
        Some("navigation" | "banner" | "contentinfo")
    ) {
        return true;
    }
    value
        .classes()
        .any(|class| SKIPPED_CLASSES.contains(&class))
}

/// A table as one row per line, cells joined by ` | `.
fn table_text(table: ElementRef<'_>) -> String {
    let (Some(rows), Some(cells)) = (selector("tr"), selector("th, td")) else {
        return collapse_whitespace(&table.text().collect::<String>());
    };
    let mut lines = Vec::new();
    for row in table.select(&rows) {
        let cells: Vec<String> = row
            .select(&cells)
            .map(|cell| collapse_whitespace(&cell.text().collect::<String>()))
            .filter(|cell| !cell.is_empty())
            .collect();
        if !cells.is_empty() {
            lines.push(cells.join(" | "));
        }
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_main_text_and_drops_chrome() -> Result<(), ParseError> {
        let source = "<html><head><title>T</title><style>.x{}</style></head><body>\
            <nav>Home | About</nav><div class=\"navheader\">Prev Next</div>\
            <header>Site</header><h1>Guide</h1><p>Hello <b>bold</b>\n world.</p>\
            <script>var secret = 1;</script><h2>Part</h2><ul><li>one</li><li>two</li></ul>\
            <table><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>2</td></tr></table>\
            <form>Search</form><footer>Copyright</footer></body></html>";
        let document = parse(source)?;
        let summary: Vec<_> = document
            .blocks
            .iter()
            .map(|b| (b.kind, b.text.as_str(), b.heading_path.len()))
            .collect();
        assert_eq!(
            summary,
            [
                (BlockKind::Heading, "Guide", 1),
                (BlockKind::Paragraph, "Hello bold world.", 1),
                (BlockKind::Heading, "Part", 2),
                (BlockKind::ListItem, "one", 2),
                (BlockKind::ListItem, "two", 2),
                (BlockKind::Table, "a | b\n1 | 2", 2),
            ]
        );
        assert_eq!(document.title.as_deref(), Some("T"));
        Ok(())
    }
}
