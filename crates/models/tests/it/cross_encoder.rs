//! The cross-encoder against sentence-transformers: `tests/fixtures/tiny-cross-encoder` is a
//! tiny random `BertForSequenceClassification` with the logits the real `CrossEncoder` gave
//! it (written by `scripts/bench/cross_encoder_reference.py`).

use std::path::PathBuf;

use landfall_models::{CrossEncoder, ModelError};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    max_length: usize,
    pairs: Vec<(String, String)>,
    logits: Vec<f32>,
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-cross-encoder")
}

#[test]
fn scores_match_sentence_transformers() -> anyhow::Result<()> {
    let reference: Reference =
        serde_json::from_slice(&std::fs::read(fixture().join("reference.json"))?)?;
    // A batch size that splits the pairs unevenly, so padding and batching are exercised.
    let model = CrossEncoder::load(&fixture(), Some(reference.max_length), 3)?;
    for ((query, passage), expected) in reference.pairs.iter().zip(&reference.logits) {
        let alone = model.score(query, &[passage])?;
        assert!(
            (alone[0] - expected).abs() < 1e-4,
            "{query:?} / {passage:?}: {} vs sentence-transformers {expected}",
            alone[0]
        );
    }
    // One query against several passages in one call, as reranking does.
    let query = &reference.pairs[0].0;
    let passages: Vec<&str> = reference.pairs[..2]
        .iter()
        .map(|(_, passage)| passage.as_str())
        .collect();
    let scores = model.score(query, &passages)?;
    for (score, expected) in scores.iter().zip(&reference.logits) {
        assert!((score - expected).abs() < 1e-4, "{score} vs {expected}");
    }
    assert!(model.score(query, &[])?.is_empty());
    Ok(())
}

#[test]
fn an_embedding_model_is_not_a_cross_encoder() -> anyhow::Result<()> {
    let Some(minilm) = landfall_models::test_support::minilm_dir()? else {
        return Ok(());
    };
    let error = CrossEncoder::load(&minilm, None, 8).map(|_| ()).err();
    assert!(
        matches!(&error, Some(ModelError::Unsupported { reason, .. }) if reason.contains("not a cross-encoder")),
        "{error:?}"
    );
    Ok(())
}
