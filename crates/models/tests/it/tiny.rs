//! A tiny BERT (hidden 32, 2 layers, random weights) and WordPiece tokenizer that the tests
//! write themselves: pooling and normalization settings, weight-name variants, and the
//! errors for missing files.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use landfall_models::{BertEmbedder, EmbedderOptions, ModelError, Pooling};
use serde_json::json;

use crate::{max_abs_diff, norm};

const HIDDEN: usize = 32;
const LAYERS: usize = 2;
const INTERMEDIATE: usize = 64;
const POSITIONS: usize = 24;
const WORDS: &[&str] = &[
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "dog", "ran",
    "##s", "hello", "world", ",", ".", "知", "识", "库",
];

fn config() -> serde_json::Value {
    json!({
        "architectures": ["BertModel"],
        "hidden_act": "gelu",
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "max_position_embeddings": POSITIONS,
        "model_type": "bert",
        "num_attention_heads": 4,
        "num_hidden_layers": LAYERS,
        "pad_token_id": 0,
        "type_vocab_size": 2,
        "vocab_size": WORDS.len(),
    })
}

/// A BERT tokenizer.json that, like MiniLM's, pads and truncates on its own (to 16 and 4
/// tokens): the embedder must turn both off.
fn tokenizer() -> serde_json::Value {
    let vocab: serde_json::Map<String, serde_json::Value> = WORDS
        .iter()
        .enumerate()
        .map(|(id, word)| ((*word).to_owned(), json!(id)))
        .collect();
    let special = |id: usize| {
        json!({"id": id, "content": WORDS[id], "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": true})
    };
    json!({
        "version": "1.0",
        "truncation": {"max_length": 4, "strategy": "LongestFirst", "stride": 0},
        "padding": {"strategy": {"Fixed": 16}, "direction": "Right", "pad_to_multiple_of": null,
                    "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
        "added_tokens": (0..5).map(special).collect::<Vec<_>>(),
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                       "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}
            }
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab}
    })
}

/// Random weights under BERT's names, each prefixed with `prefix`.
fn weights(prefix: &str) -> anyhow::Result<HashMap<String, Tensor>> {
    let dev = Device::Cpu;
    let random = |shape: &[usize]| Tensor::randn(0f32, 0.2, shape, &dev);
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        (
            "embeddings.word_embeddings.weight".into(),
            vec![WORDS.len(), HIDDEN],
        ),
        (
            "embeddings.position_embeddings.weight".into(),
            vec![POSITIONS, HIDDEN],
        ),
        (
            "embeddings.token_type_embeddings.weight".into(),
            vec![2, HIDDEN],
        ),
    ];
    let mut norms = vec!["embeddings.LayerNorm".to_owned()];
    for layer in 0..LAYERS {
        let at = |name: &str| format!("encoder.layer.{layer}.{name}");
        for name in ["query", "key", "value"] {
            shapes.push((
                at(&format!("attention.self.{name}.weight")),
                vec![HIDDEN, HIDDEN],
            ));
            shapes.push((at(&format!("attention.self.{name}.bias")), vec![HIDDEN]));
        }
        shapes.push((at("attention.output.dense.weight"), vec![HIDDEN, HIDDEN]));
        shapes.push((at("attention.output.dense.bias"), vec![HIDDEN]));
        shapes.push((at("intermediate.dense.weight"), vec![INTERMEDIATE, HIDDEN]));
        shapes.push((at("intermediate.dense.bias"), vec![INTERMEDIATE]));
        shapes.push((at("output.dense.weight"), vec![HIDDEN, INTERMEDIATE]));
        shapes.push((at("output.dense.bias"), vec![HIDDEN]));
        norms.push(at("attention.output.LayerNorm"));
        norms.push(at("output.LayerNorm"));
    }
    let mut tensors = HashMap::new();
    for (name, shape) in shapes {
        tensors.insert(format!("{prefix}{name}"), random(&shape)?);
    }
    for name in norms {
        let ones = Tensor::ones(HIDDEN, DType::F32, &dev)?;
        tensors.insert(format!("{prefix}{name}.weight"), ones);
        tensors.insert(format!("{prefix}{name}.bias"), random(&[HIDDEN])?);
    }
    Ok(tensors)
}

fn write_json(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, serde_json::to_vec_pretty(value)?)?;
    Ok(())
}

/// Writes a tiny model into `dir` with CLS pooling and no Normalize module.
fn write_tiny_model(dir: &Path, tensors: &HashMap<String, Tensor>) -> anyhow::Result<()> {
    write_json(&dir.join("config.json"), &config())?;
    write_json(&dir.join("tokenizer.json"), &tokenizer())?;
    write_json(
        &dir.join("modules.json"),
        &json!([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}
        ]),
    )?;
    write_json(
        &dir.join("1_Pooling/config.json"),
        &json!({"word_embedding_dimension": HIDDEN, "pooling_mode_cls_token": true,
                "pooling_mode_mean_tokens": false}),
    )?;
    candle_core::safetensors::save(tensors, dir.join("model.safetensors"))?;
    Ok(())
}

#[test]
fn cls_pooling_without_normalize() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    write_tiny_model(dir.path(), &weights("")?)?;
    let model = BertEmbedder::load(dir.path(), EmbedderOptions::default())?;
    assert_eq!(model.dimensions(), HIDDEN);
    assert_eq!(model.pooling(), Pooling::Cls);
    assert!(!model.normalizes());
    assert_eq!(
        model.max_tokens(),
        POSITIONS,
        "no sentence_bert_config.json"
    );

    let texts = [
        "hello",
        "the cat sat on the mat , the dog ran .",
        "知识库",
        "",
    ];
    let batch = model.embed(&texts)?;
    for (text, vector) in texts.iter().zip(&batch) {
        assert_eq!(vector.len(), HIDDEN);
        assert!(
            (norm(vector) - 1.0).abs() > 0.1,
            "{text:?} looks normalized"
        );
        let alone = &model.embed(&[text])?[0];
        assert!(
            max_abs_diff(vector, alone) < 1e-5,
            "{text:?}: batch differs from single"
        );
    }
    // The tokenizer.json's own padding (16) and truncation (4) are off.
    assert_eq!(model.count_tokens("the cat sat on the mat")?, 6);
    assert_eq!(model.token_spans("cats")?, vec![0..3, 3..4]);
    // Longer than the 24 positions: truncated, not an error.
    let long = "the cat sat on the mat . ".repeat(20);
    assert_eq!(model.embed(&[&long])?[0].len(), HIDDEN);

    let overridden = BertEmbedder::load(
        dir.path(),
        EmbedderOptions {
            pooling: Some(Pooling::Mean),
            normalize: Some(true),
            ..EmbedderOptions::default()
        },
    )?;
    let mean = overridden.embed(&texts)?;
    for (vector, cls) in mean.iter().zip(&batch) {
        assert!((norm(vector) - 1.0).abs() < 1e-5);
        assert!(
            max_abs_diff(vector, cls) > 1e-3,
            "mean pooling gave the CLS vector"
        );
    }
    Ok(())
}

#[test]
fn bert_prefixed_and_gamma_beta_weights_load_the_same() -> anyhow::Result<()> {
    let plain = weights("")?;
    let prefixed: HashMap<String, Tensor> = plain
        .iter()
        .map(|(name, tensor)| {
            let name = name.replace("LayerNorm.weight", "LayerNorm.gamma");
            let name = name.replace("LayerNorm.bias", "LayerNorm.beta");
            (format!("bert.{name}"), tensor.clone())
        })
        .collect();
    let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    write_tiny_model(a.path(), &plain)?;
    write_tiny_model(b.path(), &prefixed)?;
    let texts = ["hello world", "the cats"];
    let from_plain = BertEmbedder::load(a.path(), EmbedderOptions::default())?.embed(&texts)?;
    let from_prefixed = BertEmbedder::load(b.path(), EmbedderOptions::default())?.embed(&texts)?;
    for (x, y) in from_plain.iter().zip(&from_prefixed) {
        assert!(max_abs_diff(x, y) < 1e-6);
    }
    Ok(())
}

#[test]
fn missing_files_are_named() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    write_tiny_model(dir.path(), &weights("")?)?;

    std::fs::remove_file(dir.path().join("model.safetensors"))?;
    let error = BertEmbedder::load(dir.path(), EmbedderOptions::default()).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, ModelError::MissingFile { .. }), "{message}");
    assert!(
        message.contains("model.safetensors") && message.contains("pytorch_model.bin"),
        "{message}"
    );

    std::fs::remove_file(dir.path().join("tokenizer.json"))?;
    let error = BertEmbedder::load(dir.path(), EmbedderOptions::default()).unwrap_err();
    assert!(
        error.to_string().contains("has no tokenizer.json"),
        "{error}"
    );

    let error =
        BertEmbedder::load(&dir.path().join("nope"), EmbedderOptions::default()).unwrap_err();
    assert!(
        matches!(error, ModelError::ModelDirNotFound { .. }),
        "{error}"
    );
    Ok(())
}

#[test]
fn mismatched_or_corrupt_files_are_named() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut tensors = weights("")?;
    tensors.remove("encoder.layer.1.output.dense.weight");
    write_tiny_model(dir.path(), &tensors)?;
    let error = BertEmbedder::load(dir.path(), EmbedderOptions::default()).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("model.safetensors") && message.contains("do not match"),
        "{message}"
    );

    std::fs::write(dir.path().join("tokenizer.json"), "{\"version\": ")?;
    let error = BertEmbedder::load(dir.path(), EmbedderOptions::default()).unwrap_err();
    assert!(matches!(error, ModelError::Malformed { .. }), "{error}");
    assert!(error.to_string().contains("tokenizer.json"), "{error}");

    let error = BertEmbedder::load(
        dir.path(),
        EmbedderOptions {
            batch_size: 0,
            ..EmbedderOptions::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(error, ModelError::InvalidOptions { .. }),
        "{error}"
    );
    Ok(())
}
