//! The analyzer for mixed Chinese/English text: jieba's search-mode cut (which also splits
//! runs of Latin letters and digits into words), punctuation- and space-only tokens dropped,
//! then lowercasing, stopwords dropped ([`super::stopwords`]) and English (Snowball) stemming.
//!
//! The same analyzer runs at indexing and at query time, so a Chinese query produces exactly
//! the terms its documents were indexed under (the classic bug of a whitespace query parser
//! over jieba-indexed text scores every Chinese query 0).

use std::sync::LazyLock;

use ::tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, Stemmer, StopWordFilter, TextAnalyzer, Token,
    TokenStream, Tokenizer,
};
use jieba_rs::{Jieba, TokenizeMode};

/// The name the analyzer is registered under in the index's tokenizer manager.
pub(super) const ANALYZER_NAME: &str = "landfall_zh_en";

/// Changes whenever the analyzer gives different terms for the same text; an index built by
/// another version is rebuilt from the chunk store ([`super::TantivyKeywordIndex::open`]).
/// 1: jieba words and their characters, lowercase, stemming. 2: stopwords dropped.
pub(super) const ANALYZER_VERSION: u32 = 2;

/// Tokens longer than this (in bytes) are dropped: they are base64 blobs or URLs, not words.
const MAX_TOKEN_BYTES: usize = 64;

/// jieba's dictionary takes ~100 ms to load; one copy serves every index of the process.
static JIEBA: LazyLock<Jieba> = LazyLock::new(Jieba::new);

/// Both stopword lists as one set, built once: every query builds an analyzer, and cloning
/// the filter only clones the set's `Arc`.
static STOPWORDS: LazyLock<StopWordFilter> = LazyLock::new(|| {
    StopWordFilter::remove(
        super::stopwords::ENGLISH
            .iter()
            .chain(super::stopwords::CHINESE)
            .map(|&word| word.to_owned()),
    )
});

/// Builds the analyzer: jieba cut, drop long tokens, lowercase, drop stopwords, English
/// stemming.
pub(super) fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(JiebaTokenizer)
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
        .filter(LowerCaser)
        .filter(STOPWORDS.clone())
        .filter(Stemmer::new(Language::English))
        .build()
}

/// The analyzed terms of `text`, in order, with duplicates.
pub(super) fn terms(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut stream = analyzer.token_stream(text);
    let mut terms = Vec::new();
    while stream.advance() {
        terms.push(stream.token().text.clone());
    }
    terms
}

/// A tantivy tokenizer over jieba-rs in search mode (words plus their dictionary sub-words,
/// which gives recall on partial Chinese queries). Tokens without any letter or digit
/// (spaces, punctuation) are skipped.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct JiebaTokenizer;

/// The tokens of one text, cut eagerly (jieba's API returns a `Vec` anyway).
pub(super) struct JiebaTokenStream {
    tokens: std::vec::IntoIter<Token>,
    current: Token,
}

impl Tokenizer for JiebaTokenizer {
    type TokenStream<'a> = JiebaTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> JiebaTokenStream {
        let base = text.as_ptr() as usize;
        let mut tokens: Vec<Token> = Vec::new();
        let mut push = |offset_from: usize, word: &str| {
            tokens.push(Token {
                offset_from,
                offset_to: offset_from + word.len(),
                position: tokens.len(),
                text: word.to_owned(),
                position_length: 1,
            });
        };
        for token in JIEBA.tokenize(text, TokenizeMode::Search, true) {
            let word = token.word;
            if !word.chars().any(char::is_alphanumeric) {
                continue;
            }
            // jieba's words are subslices of `text`, so their byte offsets are their address
            // differences.
            let offset_from = (word.as_ptr() as usize).saturating_sub(base);
            push(offset_from, word);
            // Chinese words are also indexed character by character: a query whose words
            // jieba cuts differently from the document's still matches, which measured better
            // than words alone on rgb-zh (docs/benchmarks.md).
            if word.chars().nth(1).is_some() && word.chars().all(is_cjk) {
                for (index, character) in word.char_indices() {
                    push(
                        offset_from + index,
                        &word[index..index + character.len_utf8()],
                    );
                }
            }
        }
        JiebaTokenStream {
            tokens: tokens.into_iter(),
            current: Token::default(),
        }
    }
}

fn is_cjk(character: char) -> bool {
    matches!(character, '\u{3400}'..='\u{4DBF}' | '\u{4E00}'..='\u{9FFF}' | '\u{F900}'..='\u{FAFF}' | '\u{20000}'..='\u{2FA1F}')
}

impl TokenStream for JiebaTokenStream {
    fn advance(&mut self) -> bool {
        match self.tokens.next() {
            Some(token) => {
                self.current = token;
                true
            }
            None => false,
        }
    }

    fn token(&self) -> &Token {
        &self.current
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_and_english_are_cut_lowercased_and_stemmed() {
        let mut analyzer = analyzer();
        let terms = terms(&mut analyzer, "我们的Running Dogs在北京大学，跑步！");
        assert!(terms.contains(&"run".to_string()), "{terms:?}");
        assert!(terms.contains(&"dog".to_string()), "{terms:?}");
        assert!(terms.contains(&"北京".to_string()), "{terms:?}");
        assert!(terms.contains(&"北京大学".to_string()), "{terms:?}");
        assert!(
            terms.iter().all(|t| t.chars().any(char::is_alphanumeric)),
            "{terms:?}"
        );
        assert!(!terms.iter().any(|t| t.trim().is_empty()), "{terms:?}");
        for stopword in ["的", "在", "我们"] {
            assert!(
                !terms.contains(&stopword.to_owned()),
                "{stopword}: {terms:?}"
            );
        }
    }

    #[test]
    fn stopwords_are_dropped_in_both_languages() {
        let mut analyzer = analyzer();
        assert_eq!(
            terms(&mut analyzer, "What are the laws of similarity?"),
            ["law", "similar"]
        );
        let chinese = terms(&mut analyzer, "RCEP具体包括哪些国家");
        assert!(chinese.contains(&"国家".to_owned()), "{chinese:?}");
        assert!(
            !chinese
                .iter()
                .any(|t| t == "哪些" || t == "哪" || t == "些"),
            "{chinese:?}"
        );
        assert!(terms(&mut analyzer, "what is it").is_empty());
    }

    #[test]
    fn punctuation_only_text_has_no_terms() {
        let mut analyzer = analyzer();
        assert_eq!(terms(&mut analyzer, " ，。!?:\" WING "), ["wing"]);
        assert!(terms(&mut analyzer, " ，。!?:\"  ").is_empty());
    }
}
