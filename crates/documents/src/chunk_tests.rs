use proptest::prelude::*;

use super::*;
use crate::{Block, BlockKind, Format};

fn document(blocks: &[(&str, Option<u32>, &[&str])]) -> Document {
    Document {
        format: Format::Text,
        blocks: blocks
            .iter()
            .map(|(text, page, path)| Block {
                text: (*text).to_owned(),
                page: *page,
                heading_path: path.iter().map(|s| (*s).to_owned()).collect(),
                kind: BlockKind::Paragraph,
            })
            .collect(),
        page_count: None,
        title: None,
    }
}

fn options(max_tokens: usize, overlap_tokens: usize) -> ChunkingOptions {
    ChunkingOptions {
        max_tokens,
        overlap_tokens,
    }
}

/// Checks the offset invariant and the token limit for every chunk.
fn check_invariants(document: &Document, chunks: &[Chunk], max_tokens: usize) {
    let text: Vec<char> = document.text().chars().collect();
    for chunk in chunks {
        let slice: String = text[chunk.char_start..chunk.char_end].iter().collect();
        assert_eq!(slice, chunk.text, "offsets of {chunk:?}");
        let retokenized = SimpleTokenizer
            .token_spans(&chunk.text)
            .map(|s| s.len())
            .unwrap_or(usize::MAX);
        assert_eq!(retokenized, chunk.token_count);
        assert!(
            chunk.token_count <= max_tokens,
            "{} tokens in {:?}",
            chunk.token_count,
            chunk.text
        );
    }
}

#[test]
fn simple_tokenizer_splits_words_cjk_and_punctuation() -> Result<(), String> {
    let text = "Hello, world! 中文分词 ok2";
    let spans = SimpleTokenizer.token_spans(text)?;
    let tokens: Vec<&str> = spans.iter().map(|s| &text[s.clone()]).collect();
    assert_eq!(
        tokens,
        ["Hello", ",", "world", "!", "中", "文", "分", "词", "ok2"]
    );
    Ok(())
}

#[test]
fn options_are_validated() {
    assert!(options(0, 0).validate().is_err());
    assert!(options(4, 4).validate().is_err());
    assert!(options(4, 3).validate().is_ok());
    assert!(ChunkingOptions::default().validate().is_ok());
    let doc = document(&[("a b", None, &[])]);
    assert!(matches!(
        chunk(&doc, &SimpleTokenizer, &options(2, 5)),
        Err(ChunkError::InvalidOptions { .. })
    ));
}

#[test]
fn window_ends_prefer_paragraphs_then_sentences_then_spaces() -> Result<(), ChunkError> {
    // (blocks, max, overlap, expected chunk texts)
    type Case<'a> = (&'a [&'a str], usize, usize, &'a [&'a str]);
    let cases: &[Case<'_>] = &[
        (&["one two three"], 8, 2, &["one two three"]),
        // Packed blocks, cut at the paragraph end.
        (&["a b c", "d e f g h"], 6, 0, &["a b c", "d e f g h"]),
        // Sentence end preferred over the hard limit.
        (&["aa bb. cc dd ee ff"], 5, 0, &["aa bb.", "cc dd ee ff"]),
        // Chinese sentence ends need no space.
        (&["今天下雨。明天晴天"], 6, 0, &["今天下雨。", "明天晴天"]),
        (
            &["我们走吧！好的；再见"],
            6,
            0,
            &["我们走吧！", "好的；再见"],
        ),
        // Overlap of two tokens, cut at whitespace.
        (&["a b c d e f"], 4, 2, &["a b c d", "c d e f"]),
        // No break in reach: hard cut at any token.
        (&["一二三四五六七"], 3, 1, &["一二三", "三四五", "五六七"]),
    ];
    for (blocks, max_tokens, overlap, expected) in cases {
        let blocks: Vec<(&str, Option<u32>, &[&str])> =
            blocks.iter().map(|t| (*t, None, &[][..])).collect();
        let doc = document(&blocks);
        let chunks = chunk(&doc, &SimpleTokenizer, &options(*max_tokens, *overlap))?;
        let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(
            texts, *expected,
            "{blocks:?} max {max_tokens} overlap {overlap}"
        );
        check_invariants(&doc, &chunks, *max_tokens);
    }
    Ok(())
}

#[test]
fn chunks_never_cross_pages_or_headings() -> Result<(), ChunkError> {
    let doc = document(&[
        ("page one text", Some(1), &[]),
        ("more on one", Some(1), &[]),
        ("page two", Some(2), &[]),
        ("Intro", Some(2), &["Intro"]),
        ("intro body", Some(2), &["Intro"]),
    ]);
    let chunks = chunk(&doc, &SimpleTokenizer, &options(50, 10))?;
    let summary: Vec<_> = chunks
        .iter()
        .map(|c| (c.text.as_str(), c.page, c.heading_path.len()))
        .collect();
    assert_eq!(
        summary,
        [
            ("page one text\n\nmore on one", Some(1), 0),
            ("page two", Some(2), 0),
            ("Intro\n\nintro body", Some(2), 1),
        ]
    );
    check_invariants(&doc, &chunks, 50);
    Ok(())
}

/// A tokenizer whose spans under-count: every word is one span, but re-tokenizing a piece
/// counts each character. The chunker must shrink windows until the recount fits.
struct Undercounting;

impl TokenSpans for Undercounting {
    fn token_spans(&self, text: &str) -> Result<Vec<Range<usize>>, String> {
        if text.contains(' ') {
            SimpleTokenizer.token_spans(text)
        } else {
            Ok(text
                .char_indices()
                .map(|(i, c)| i..i + c.len_utf8())
                .collect())
        }
    }
}

#[test]
fn retokenized_chunks_respect_the_limit() -> Result<(), ChunkError> {
    let doc = document(&[("abcdef", None, &[]), ("x y z", None, &[])]);
    let chunks = chunk(&doc, &Undercounting, &options(3, 0))?;
    assert!(
        chunks
            .iter()
            .all(|c| c.token_count <= 3 || !c.text.contains(' ')),
        "{chunks:?}"
    );
    Ok(())
}

struct Failing;

impl TokenSpans for Failing {
    fn token_spans(&self, _text: &str) -> Result<Vec<Range<usize>>, String> {
        Err("model missing".to_owned())
    }
}

#[test]
fn tokenizer_errors_are_reported() {
    let doc = document(&[("text", None, &[])]);
    assert!(matches!(
        chunk(&doc, &Failing, &ChunkingOptions::default()),
        Err(ChunkError::Tokenizer { .. })
    ));
}

fn text_strategy() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just(" ".to_owned()),
        Just("\n".to_owned()),
        Just("\n\n".to_owned()),
        Just("。".to_owned()),
        Just(". ".to_owned()),
        "[a-z]{1,8}",
        "[\u{4e00}-\u{4e20}]{1,4}",
        "[é😀ß-]{1,2}",
    ];
    proptest::collection::vec(piece, 0..80).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn offsets_limits_and_coverage_hold(
        texts in proptest::collection::vec(text_strategy(), 1..5),
        max_tokens in 1usize..20,
        overlap_seed in 0usize..20,
    ) {
        let overlap = overlap_seed % max_tokens;
        let blocks: Vec<(&str, Option<u32>, &[&str])> =
            texts.iter().enumerate().map(|(i, t)| (t.as_str(), Some(1 + (i as u32) / 2), &[][..])).collect();
        let doc = document(&blocks);
        let chunks = chunk(&doc, &SimpleTokenizer, &options(max_tokens, overlap))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        check_invariants(&doc, &chunks, max_tokens);
        // Every token character of the document is inside some chunk.
        let full = doc.text();
        let mut covered = vec![false; full.chars().count()];
        for c in &chunks {
            covered[c.char_start..c.char_end].iter_mut().for_each(|x| *x = true);
        }
        for (index, character) in full.chars().enumerate() {
            prop_assert!(covered[index] || character.is_whitespace(), "char {index} {character:?} uncovered");
        }
    }
}
