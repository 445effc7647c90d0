//! CSV and JSONL: each record becomes one self-describing `key: value` block.

use serde_json::Value;

use crate::{BlockKind, Document, Format, ParseError, block};

/// One block per CSV record, `header: value` per line (empty values left out).
pub(crate) fn parse_csv(text: &str) -> Result<Document, ParseError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = reader.headers().map_err(csv_error)?.clone();
    let mut blocks = Vec::new();
    for record in reader.records() {
        let record = record.map_err(csv_error)?;
        let mut lines = Vec::with_capacity(record.len());
        for (index, value) in record.iter().enumerate() {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            match headers.get(index).map(str::trim).filter(|h| !h.is_empty()) {
                Some(header) => lines.push(format!("{header}: {value}")),
                None => lines.push(format!("column {}: {value}", index + 1)),
            }
        }
        blocks.push(block(&lines.join("\n"), BlockKind::Record, None));
    }
    Ok(Document {
        format: Format::Csv,
        blocks,
        page_count: None,
        title: None,
    })
}

fn csv_error(error: csv::Error) -> ParseError {
    let line = error.position().map_or(0, csv::Position::line);
    ParseError::InvalidRecord {
        line,
        reason: error.to_string(),
    }
}

/// One block per JSONL line; objects become `key: value` lines, nested keys dotted.
pub(crate) fn parse_jsonl(text: &str) -> Result<Document, ParseError> {
    let mut blocks = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let value: Value =
            serde_json::from_str(line).map_err(|error| ParseError::InvalidRecord {
                line: index as u64 + 1,
                reason: format!("invalid JSON: {error}"),
            })?;
        let mut lines = Vec::new();
        flatten("", &value, &mut lines);
        blocks.push(block(&lines.join("\n"), BlockKind::Record, None));
    }
    Ok(Document {
        format: Format::Jsonl,
        blocks,
        page_count: None,
        title: None,
    })
}

fn flatten(prefix: &str, value: &Value, lines: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, value, lines);
            }
        }
        Value::Null => {}
        Value::String(text) if prefix.is_empty() => lines.push(text.clone()),
        Value::String(text) => lines.push(format!("{prefix}: {text}")),
        other if prefix.is_empty() => lines.push(other.to_string()),
        other => lines.push(format!("{prefix}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_records_are_self_describing() -> Result<(), ParseError> {
        let document = parse_csv("name,city\nAda,London\n\"Lin, Wei\",\n")?;
        let texts: Vec<_> = document.blocks.iter().map(|b| b.text.as_str()).collect();
        assert_eq!(texts, ["name: Ada\ncity: London", "name: Lin, Wei"]);
        Ok(())
    }

    #[test]
    fn jsonl_records_and_bad_line_number() -> Result<(), ParseError> {
        let document = parse_jsonl("{\"title\":\"A\",\"meta\":{\"page\":2}}\n\n\"plain\"\n")?;
        assert_eq!(document.blocks.len(), 2);
        let mut first: Vec<_> = document.blocks[0].text.lines().collect();
        first.sort_unstable();
        assert_eq!(first, ["meta.page: 2", "title: A"]);
        assert_eq!(document.blocks[1].text, "plain");
        let error = parse_jsonl("{}\n{\"a\":1}\n{broken\n").err();
        assert!(
            matches!(error, Some(ParseError::InvalidRecord { line: 3, .. })),
            "{error:?}"
        );
        Ok(())
    }
}
