//! Our MiniLM vectors against the real sentence-transformers library's
//! (`tests/fixtures/minilm_reference.json`, written by `scripts/bench/minilm_reference.py`).

use serde::Deserialize;

use crate::{cosine, minilm};

#[derive(Deserialize)]
struct Fixture {
    max_seq_length: usize,
    sentences: Vec<Sentence>,
}

#[derive(Deserialize)]
struct Sentence {
    text: String,
    /// Token count with special tokens, before truncation.
    tokens: usize,
    embedding: Vec<f32>,
}

#[test]
fn minilm_matches_sentence_transformers() -> anyhow::Result<()> {
    let Some(model) = minilm()? else {
        return Ok(());
    };
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/minilm_reference.json"
    );
    let fixture: Fixture = serde_json::from_slice(&std::fs::read(path)?)?;
    assert_eq!(fixture.max_seq_length, model.max_tokens());
    assert!(fixture.sentences.len() >= 8);
    assert!(
        fixture
            .sentences
            .iter()
            .any(|s| s.tokens > model.max_tokens()),
        "the fixture should include a text that is truncated"
    );
    let texts: Vec<&str> = fixture.sentences.iter().map(|s| s.text.as_str()).collect();
    let ours = model.embed(&texts)?;
    for (sentence, vector) in fixture.sentences.iter().zip(&ours) {
        assert_eq!(
            model.count_tokens(&sentence.text)? + 2,
            sentence.tokens,
            "{:?}",
            sentence.text
        );
        let similarity = cosine(vector, &sentence.embedding);
        assert!(
            similarity >= 0.999_999,
            "{:?}: cosine {similarity} with sentence-transformers",
            sentence.text
        );
    }
    Ok(())
}
