//! Reading weights into a name → tensor map that `candle_transformers`' BERT can load.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use crate::error::ModelError;
use crate::settings::WeightsFile;

/// Loads every tensor of `file`, with names normalized to what candle's `BertModel` asks for:
/// no `bert.` prefix (checkpoints saved from `BertForMaskedLM` and similar carry one), and
/// `LayerNorm.weight`/`bias` for the `gamma`/`beta` names of old TensorFlow-era checkpoints.
///
/// The file is read into memory rather than memory-mapped: mapping needs `unsafe`, which this
/// workspace forbids, and the buffer is freed once the tensors are built.
pub(crate) fn load_tensors(file: &WeightsFile) -> Result<HashMap<String, Tensor>, ModelError> {
    let (path, tensors) = match file {
        WeightsFile::Safetensors(path) => {
            let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
                path: path.clone(),
                source,
            })?;
            let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu);
            (path, tensors)
        }
        WeightsFile::Pytorch(path) => {
            let tensors = candle_core::pickle::read_all(path)
                .map(|pairs| pairs.into_iter().collect::<HashMap<_, _>>());
            (path, tensors)
        }
    };
    let tensors = tensors.map_err(|error| ModelError::Malformed {
        path: path.clone(),
        reason: error.to_string(),
    })?;
    let has_prefix = tensors.contains_key("bert.embeddings.word_embeddings.weight");
    let normalized = tensors
        .into_iter()
        .map(|(name, tensor)| {
            // Heads outside the encoder (`cls.*` of a masked-LM checkpoint, `classifier.*` of
            // a cross-encoder) keep their names.
            let name = match name.strip_prefix("bert.") {
                Some(inner) if has_prefix => inner.to_owned(),
                _ => name,
            };
            (normalize_name(name), tensor)
        })
        .collect();
    Ok(normalized)
}

fn normalize_name(name: String) -> String {
    if let Some(stem) = name.strip_suffix("LayerNorm.gamma") {
        format!("{stem}LayerNorm.weight")
    } else if let Some(stem) = name.strip_suffix("LayerNorm.beta") {
        format!("{stem}LayerNorm.bias")
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized() {
        let cases = [
            (
                "encoder.layer.0.output.LayerNorm.gamma",
                "encoder.layer.0.output.LayerNorm.weight",
            ),
            ("embeddings.LayerNorm.beta", "embeddings.LayerNorm.bias"),
            (
                "embeddings.word_embeddings.weight",
                "embeddings.word_embeddings.weight",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_name(input.to_owned()), expected);
        }
    }

    #[test]
    fn prefixed_checkpoints_drop_the_prefix_and_keep_heads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let one = Tensor::ones(2, candle_core::DType::F32, &Device::Cpu).unwrap();
        let tensors: HashMap<String, Tensor> = [
            "bert.embeddings.word_embeddings.weight",
            "bert.embeddings.LayerNorm.gamma",
            "cls.predictions.bias",
            "classifier.weight",
        ]
        .into_iter()
        .map(|name| (name.to_owned(), one.clone()))
        .collect();
        candle_core::safetensors::save(&tensors, &path).unwrap();
        let loaded = load_tensors(&WeightsFile::Safetensors(path)).unwrap();
        let mut names: Vec<_> = loaded.keys().cloned().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "classifier.weight",
                "cls.predictions.bias",
                "embeddings.LayerNorm.weight",
                "embeddings.word_embeddings.weight"
            ]
        );
    }

    #[test]
    fn garbage_weights_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        std::fs::write(&path, b"not safetensors").unwrap();
        let error = load_tensors(&WeightsFile::Safetensors(path)).unwrap_err();
        assert!(error.to_string().contains("model.safetensors"), "{error}");
    }
}
