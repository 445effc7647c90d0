//! Integration tests of `landfall-models`: the real all-MiniLM-L6-v2 (fetched by
//! `scripts/fetch-test-models.sh`; skipped with a message when absent unless
//! `LANDFALL_REQUIRE_TEST_MODELS=1`) and tiny BERTs the tests write themselves.

mod cross_encoder;
mod minilm;
mod reference;
mod smollm2;
mod tiny;

use std::sync::OnceLock;

use landfall_models::{BertEmbedder, EmbedderOptions};

/// The MiniLM embedder, loaded once for the whole binary; `None` when the model is absent
/// (and not required).
fn minilm() -> anyhow::Result<Option<&'static BertEmbedder>> {
    static MINILM: OnceLock<Result<BertEmbedder, String>> = OnceLock::new();
    let Some(dir) = landfall_models::test_support::minilm_dir()? else {
        return Ok(None);
    };
    let loaded = MINILM.get_or_init(|| {
        BertEmbedder::load(&dir, EmbedderOptions::default()).map_err(|error| error.to_string())
    });
    match loaded {
        Ok(embedder) => Ok(Some(embedder)),
        Err(error) => Err(anyhow::anyhow!("loading MiniLM: {error}")),
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f32]) -> f32 {
    dot(a, a).sqrt()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    dot(a, b) / (norm(a) * norm(b)).max(f32::MIN_POSITIVE)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
