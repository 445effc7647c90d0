//! What a model folder says about itself: the BERT `config.json`, where the tokenizer and the
//! weights are, and the sentence-transformers files (`modules.json`, `1_Pooling/config.json`,
//! `sentence_bert_config.json`).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::bert::{Activation, BertConfig};
use crate::error::ModelError;
use crate::pooling::Pooling;

/// Where the weights are.
#[derive(Debug, Clone)]
pub(crate) enum WeightsFile {
    Safetensors(PathBuf),
    /// A PyTorch pickle (`pytorch_model.bin`), read through candle's pickle support.
    Pytorch(PathBuf),
}

/// The files of one model folder.
#[derive(Debug, Clone)]
pub(crate) struct ModelFiles {
    pub config: PathBuf,
    pub tokenizer: PathBuf,
    pub weights: WeightsFile,
}

/// Pooling, normalization and length as the sentence-transformers files say, with the
/// defaults (mean pooling, normalize, no length) when they are absent.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SentenceSettings {
    pub pooling: Pooling,
    pub normalize: bool,
    pub max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct Module {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

/// The fields of a Hugging Face BERT `config.json` that inference needs, with the
/// transformers library's defaults for the optional ones.
#[derive(Deserialize)]
struct RawBertConfig {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "default_hidden_act")]
    hidden_act: String,
    #[serde(default = "default_max_position_embeddings")]
    max_position_embeddings: usize,
    #[serde(default = "default_type_vocab_size")]
    type_vocab_size: usize,
    #[serde(default = "default_layer_norm_eps")]
    layer_norm_eps: f64,
    #[serde(default)]
    position_embedding_type: Option<String>,
    #[serde(default)]
    model_type: Option<String>,
}

fn default_hidden_act() -> String {
    "gelu".to_owned()
}
fn default_max_position_embeddings() -> usize {
    512
}
fn default_type_vocab_size() -> usize {
    2
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, ModelError> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|error| ModelError::Malformed {
        path: path.to_path_buf(),
        reason: error.to_string(),
    })
}

/// Reads `path` when it exists; `Ok(None)` when it does not.
fn read_optional_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, ModelError> {
    if path.is_file() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

fn require(dir: &Path, name: &str) -> Result<PathBuf, ModelError> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ModelError::MissingFile {
            dir: dir.to_path_buf(),
            file: name.to_owned(),
        })
    }
}

/// Finds the model's files in `dir`. A sentence-transformers folder may keep the transformer
/// in a subfolder named by `modules.json` (older exports use `0_Transformer/`).
pub(crate) fn locate_files(dir: &Path) -> Result<ModelFiles, ModelError> {
    if !dir.is_dir() {
        return Err(ModelError::ModelDirNotFound {
            path: dir.to_path_buf(),
        });
    }
    let modules: Option<Vec<Module>> = read_optional_json(&dir.join("modules.json"))?;
    let transformer_dir = modules
        .iter()
        .flatten()
        .find(|module| module.kind.ends_with(".Transformer") && !module.path.is_empty())
        .map(|module| dir.join(&module.path))
        .filter(|sub| sub.join("config.json").is_file())
        .unwrap_or_else(|| dir.to_path_buf());
    let config = require(&transformer_dir, "config.json")?;
    let tokenizer = require(&transformer_dir, "tokenizer.json")?;
    let safetensors = transformer_dir.join("model.safetensors");
    let pytorch = transformer_dir.join("pytorch_model.bin");
    let weights = if safetensors.is_file() {
        WeightsFile::Safetensors(safetensors)
    } else if pytorch.is_file() {
        WeightsFile::Pytorch(pytorch)
    } else {
        return Err(ModelError::MissingFile {
            dir: transformer_dir,
            file: "model.safetensors (or pytorch_model.bin)".to_owned(),
        });
    };
    Ok(ModelFiles {
        config,
        tokenizer,
        weights,
    })
}

/// Reads the BERT configuration.
pub(crate) fn read_bert_config(path: &Path) -> Result<BertConfig, ModelError> {
    let raw: RawBertConfig = read_json(path)?;
    let unsupported = |reason: String| ModelError::Unsupported {
        path: path.to_path_buf(),
        reason,
    };
    if let Some(model_type) = raw.model_type.as_deref()
        && model_type != "bert"
    {
        return Err(unsupported(format!(
            "model_type `{model_type}` (only BERT-family models are supported)"
        )));
    }
    if let Some(kind) = raw.position_embedding_type.as_deref()
        && kind != "absolute"
    {
        return Err(unsupported(format!("position_embedding_type `{kind}`")));
    }
    let activation = match raw.hidden_act.as_str() {
        "gelu" => Activation::Gelu,
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
        "relu" => Activation::Relu,
        other => return Err(unsupported(format!("hidden_act `{other}`"))),
    };
    if raw.num_attention_heads == 0 || !raw.hidden_size.is_multiple_of(raw.num_attention_heads) {
        return Err(ModelError::Malformed {
            path: path.to_path_buf(),
            reason: format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                raw.hidden_size, raw.num_attention_heads
            ),
        });
    }
    Ok(BertConfig {
        vocab_size: raw.vocab_size,
        hidden_size: raw.hidden_size,
        num_hidden_layers: raw.num_hidden_layers,
        num_attention_heads: raw.num_attention_heads,
        intermediate_size: raw.intermediate_size,
        activation,
        max_position_embeddings: raw.max_position_embeddings,
        type_vocab_size: raw.type_vocab_size,
        layer_norm_eps: raw.layer_norm_eps,
    })
}

/// Reads the sentence-transformers files of `dir`, if any.
pub(crate) fn read_sentence_settings(dir: &Path) -> Result<SentenceSettings, ModelError> {
    let modules_path = dir.join("modules.json");
    let modules: Option<Vec<Module>> = read_optional_json(&modules_path)?;
    // Without modules.json the folder is a plain transformers export: normalize by default,
    // since every caller compares embeddings by cosine.
    let normalize = modules.as_ref().is_none_or(|modules| {
        modules
            .iter()
            .any(|module| module.kind.ends_with(".Normalize"))
    });
    let pooling_dir = modules
        .iter()
        .flatten()
        .find(|module| module.kind.ends_with(".Pooling"))
        .map_or_else(|| dir.join("1_Pooling"), |module| dir.join(&module.path));
    let pooling_path = pooling_dir.join("config.json");
    let pooling = match read_optional_json::<PoolingConfig>(&pooling_path)? {
        Some(config) => pooling_from_config(&config, &pooling_path)?,
        None => Pooling::Mean,
    };
    let sentence_config: Option<SentenceBertConfig> =
        read_optional_json(&dir.join("sentence_bert_config.json"))?;
    Ok(SentenceSettings {
        pooling,
        normalize,
        max_seq_length: sentence_config.and_then(|config| config.max_seq_length),
    })
}

fn pooling_from_config(config: &PoolingConfig, path: &Path) -> Result<Pooling, ModelError> {
    let unsupported = |reason: &str| ModelError::Unsupported {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    if config.pooling_mode_weightedmean_tokens {
        return Err(unsupported("weighted-mean pooling"));
    }
    if config.pooling_mode_lasttoken {
        return Err(unsupported("last-token pooling"));
    }
    let modes = [
        (config.pooling_mode_cls_token, Pooling::Cls),
        (config.pooling_mode_mean_tokens, Pooling::Mean),
        (config.pooling_mode_max_tokens, Pooling::Max),
        (
            config.pooling_mode_mean_sqrt_len_tokens,
            Pooling::MeanSqrtLen,
        ),
    ];
    let mut chosen = modes.iter().filter(|(on, _)| *on).map(|(_, mode)| *mode);
    match (chosen.next(), chosen.next()) {
        (Some(mode), None) => Ok(mode),
        (None, _) => Err(unsupported("no pooling mode is set")),
        (Some(_), Some(_)) => Err(unsupported(
            "several pooling modes at once (concatenated vectors)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn defaults_without_sentence_transformers_files() {
        let dir = tempfile::tempdir().unwrap();
        let settings = read_sentence_settings(dir.path()).unwrap();
        assert_eq!(
            settings,
            SentenceSettings {
                pooling: Pooling::Mean,
                normalize: true,
                max_seq_length: None
            }
        );
    }

    #[test]
    fn modules_without_normalize_turn_it_off() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "modules.json",
            r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
                {"idx":1,"name":"1","path":"pool","type":"sentence_transformers.models.Pooling"}]"#,
        );
        write(
            dir.path(),
            "pool/config.json",
            r#"{"word_embedding_dimension": 8, "pooling_mode_cls_token": true}"#,
        );
        write(
            dir.path(),
            "sentence_bert_config.json",
            r#"{"max_seq_length": 64}"#,
        );
        let settings = read_sentence_settings(dir.path()).unwrap();
        assert_eq!(
            settings,
            SentenceSettings {
                pooling: Pooling::Cls,
                normalize: false,
                max_seq_length: Some(64)
            }
        );
    }

    #[test]
    fn pooling_configs() {
        let cases = [
            (r#"{"pooling_mode_mean_tokens": true}"#, Ok(Pooling::Mean)),
            (r#"{"pooling_mode_max_tokens": true}"#, Ok(Pooling::Max)),
            (
                r#"{"pooling_mode_mean_sqrt_len_tokens": true}"#,
                Ok(Pooling::MeanSqrtLen),
            ),
            (
                r#"{"pooling_mode_mean_tokens": true, "pooling_mode_cls_token": true}"#,
                Err("several pooling modes"),
            ),
            (r#"{}"#, Err("no pooling mode")),
            (r#"{"pooling_mode_lasttoken": true}"#, Err("last-token")),
        ];
        for (json, expected) in cases {
            let config: PoolingConfig = serde_json::from_str(json).unwrap();
            let got = pooling_from_config(&config, Path::new("p.json"));
            match (got, expected) {
                (Ok(got), Ok(expected)) => assert_eq!(got, expected, "{json}"),
                (Err(error), Err(needle)) => {
                    assert!(error.to_string().contains(needle), "{json}: {error}");
                }
                (got, expected) => panic!("{json}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn malformed_and_unsupported_configs_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "config.json", "{not json");
        let error = read_bert_config(&dir.path().join("config.json")).unwrap_err();
        assert!(matches!(error, ModelError::Malformed { .. }), "{error}");
        assert!(error.to_string().contains("config.json"), "{error}");
        write(
            dir.path(),
            "config.json",
            r#"{"vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
                "num_attention_heads": 2, "intermediate_size": 16, "model_type": "xlm-roberta"}"#,
        );
        let error = read_bert_config(&dir.path().join("config.json")).unwrap_err();
        assert!(error.to_string().contains("xlm-roberta"), "{error}");
    }
}
