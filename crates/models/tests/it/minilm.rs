//! all-MiniLM-L6-v2 as shipped (sentence-transformers layout, padding in its tokenizer.json).

use std::sync::Arc;

use landfall_models::Pooling;

use crate::{cosine, max_abs_diff, minilm, norm};

#[test]
fn loads_with_the_folders_settings() -> anyhow::Result<()> {
    let Some(model) = minilm()? else {
        return Ok(());
    };
    assert_eq!(model.model_id(), "all-MiniLM-L6-v2");
    assert_eq!(model.dimensions(), 384);
    assert_eq!(
        model.max_tokens(),
        256,
        "sentence_bert_config.json's max_seq_length"
    );
    assert_eq!(model.pooling(), Pooling::Mean);
    assert!(model.normalizes(), "modules.json lists Normalize");
    Ok(())
}

#[test]
fn vectors_are_unit_norm_and_batching_changes_nothing() -> anyhow::Result<()> {
    let Some(model) = minilm()? else {
        return Ok(());
    };
    let texts = [
        "Short.",
        "A somewhat longer sentence about vector search and keyword search together.",
        "",
        "知识库中的文档需要被切分成小块。",
        "The quick brown fox jumps over the lazy dog, then naps in the afternoon sun.",
    ];
    let batch = model.embed(&texts)?;
    assert_eq!(batch.len(), texts.len());
    for (text, vector) in texts.iter().zip(&batch) {
        assert_eq!(vector.len(), 384);
        assert!(
            (norm(vector) - 1.0).abs() < 1e-4,
            "{text:?}: norm {}",
            norm(vector)
        );
        let alone = model.embed(&[text])?;
        let diff = max_abs_diff(vector, &alone[0]);
        assert!(diff < 1e-5, "{text:?}: batch and single differ by {diff}");
    }
    Ok(())
}

#[test]
fn paraphrases_score_high_and_unrelated_sentences_low() -> anyhow::Result<()> {
    let Some(model) = minilm()? else {
        return Ok(());
    };
    let v = model.embed(&[
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The stock market fell sharply on Monday.",
        "Hi",
        "Quarterly tax filing deadline",
    ])?;
    let paraphrase = cosine(&v[0], &v[1]);
    let unrelated = cosine(&v[0], &v[2]);
    assert!(paraphrase > 0.7, "paraphrase pair scored {paraphrase}");
    assert!(unrelated < 0.3, "unrelated pair scored {unrelated}");
    // With the tokenizer.json's padding to 128 tokens left on, two short unrelated texts
    // would score ~0.87 (their vectors would be mostly padding).
    let short = cosine(&v[3], &v[4]);
    assert!(
        short < 0.3,
        "two short unrelated texts scored {short}: padding leaked in"
    );
    Ok(())
}

#[test]
fn token_spans_are_char_boundaries_and_match_the_count() -> anyhow::Result<()> {
    let Some(model) = minilm()? else {
        return Ok(());
    };
    let text = "Hello, wörld! Landfall's knowledge-base: 知识库 ingests PDFs. café";
    let spans = model.token_spans(text)?;
    assert_eq!(spans.len(), model.count_tokens(text)?);
    assert!(!spans.is_empty());
    let mut previous_end = 0;
    for span in &spans {
        assert!(text.is_char_boundary(span.start) && text.is_char_boundary(span.end));
        assert!(
            span.start < span.end && span.start >= previous_end,
            "{span:?}"
        );
        previous_end = span.end;
    }
    let pieces: Vec<&str> = spans.iter().map(|span| &text[span.clone()]).collect();
    assert_eq!(pieces[0], "Hello");
    assert!(
        pieces.contains(&"知") && pieces.contains(&"库"),
        "{pieces:?}"
    );
    assert_eq!(model.count_tokens("")?, 0);
    // No truncation in counting: the tokenizer.json's own 128-token limit is off.
    let long = "word ".repeat(1000);
    assert_eq!(model.count_tokens(&long)?, 1000);
    assert_eq!(model.token_spans(&long)?.len(), 1000);
    Ok(())
}

#[test]
fn long_texts_are_truncated_to_max_tokens() -> anyhow::Result<()> {
    let Some(model) = minilm()? else {
        return Ok(());
    };
    let long: String = (0..3000)
        .map(|i| format!("token{} ", i % 97))
        .collect::<String>();
    let spans = model.token_spans(&long)?;
    assert!(spans.len() > 2 * model.max_tokens());
    // [CLS] + (max_tokens - 2) tokens + [SEP]: the prefix that survives truncation.
    let prefix = &long[..spans[model.max_tokens() - 3].end];
    let vectors = model.embed(&[&long, prefix])?;
    let diff = max_abs_diff(&vectors[0], &vectors[1]);
    assert!(
        diff < 1e-5,
        "truncated text differs from its kept prefix by {diff}"
    );
    Ok(())
}

#[test]
fn empty_input_gives_empty_output() -> anyhow::Result<()> {
    let Some(model) = minilm()? else {
        return Ok(());
    };
    assert!(model.embed(&[])?.is_empty());
    Ok(())
}

#[test]
fn concurrent_callers_get_the_same_vectors() -> anyhow::Result<()> {
    let Some(model) = minilm()? else {
        return Ok(());
    };
    let texts = [
        "Concurrency test one.",
        "Another sentence for the second thread.",
    ];
    let expected = model.embed(&texts)?;
    let shared = Arc::new(model);
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || shared.embed(&texts))
        })
        .collect();
    for handle in handles {
        let got = handle
            .join()
            .map_err(|_| anyhow::anyhow!("embedding thread panicked"))??;
        for (a, b) in got.iter().zip(&expected) {
            assert!(max_abs_diff(a, b) < 1e-5);
        }
    }
    Ok(())
}
