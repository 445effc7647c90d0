//! Reading a GGUF file: its metadata, the tokenizer it carries, and the weights of the
//! architectures candle implements.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use candle_transformers::models::{quantized_llama, quantized_qwen2, quantized_qwen3};
use rayon::iter::{IntoParallelIterator, ParallelIterator};
use tokenizers::SplitDelimiterBehavior;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

use crate::error::ModelError;

/// llama.cpp's token type for control tokens (`<|im_start|>` …); 4 is user-defined.
const CONTROL_TOKEN_TYPES: [i32; 2] = [3, 4];

/// The model families candle has a quantized implementation of, by `general.architecture`.
pub(crate) enum Weights {
    Llama(quantized_llama::ModelWeights),
    Qwen2(quantized_qwen2::ModelWeights),
    Qwen3(quantized_qwen3::ModelWeights),
}

impl Weights {
    /// Logits of the last position of `tokens`, which start at position `position`.
    pub(crate) fn forward(
        &mut self,
        tokens: &[u32],
        position: usize,
    ) -> candle_core::Result<Tensor> {
        let input = Tensor::new(tokens, &Device::Cpu)?.unsqueeze(0)?;
        let logits = match self {
            Self::Llama(model) => model.forward(&input, position)?,
            Self::Qwen2(model) => model.forward(&input, position)?,
            Self::Qwen3(model) => model.forward(&input, position)?,
        };
        logits.squeeze(0)
    }

    /// Frees the key-value cache of the last generation.
    pub(crate) fn clear(&mut self) {
        match self {
            Self::Llama(model) => model.clear_kv_cache(),
            Self::Qwen2(model) => model.clear_kv_cache(),
            Self::Qwen3(model) => model.clear_kv_cache(),
        }
    }
}

/// What a GGUF file says about the model in it.
pub(crate) struct GgufModel {
    pub(crate) architecture: String,
    /// Positions the model can attend over here (capped by the implementation's RoPE table).
    pub(crate) context_length: usize,
    pub(crate) tokenizer: Tokenizer,
    /// Tokens that end a generation.
    pub(crate) end_tokens: Vec<u32>,
    pub(crate) bos_token: Option<String>,
    pub(crate) bos_token_id: Option<u32>,
    /// Whether prompts start with the BOS token even when the template does not write it.
    pub(crate) add_bos_token: bool,
    pub(crate) eos_token: Option<String>,
    pub(crate) chat_template: Option<String>,
    pub(crate) quantization: String,
    pub(crate) converted_to: Option<String>,
    pub(crate) parameters: u64,
    pub(crate) weights: Weights,
}

/// Reads the model at `path`; `tokenizer_json` replaces the tokenizer the file carries.
pub(crate) fn read(
    path: &Path,
    tokenizer_json: Option<&Path>,
    convert_slow_weights: bool,
) -> Result<GgufModel, ModelError> {
    let io = |source| ModelError::Io {
        path: path.to_owned(),
        source,
    };
    let malformed = |reason: String| ModelError::Malformed {
        path: path.to_owned(),
        reason,
    };
    let mut reader = BufReader::new(File::open(path).map_err(io)?);
    let content = Content::read(&mut reader)
        .map_err(|error| malformed(format!("not a GGUF file: {error}")))?;
    let metadata = Metadata {
        path,
        values: &content.metadata,
    };
    let architecture = metadata.string("general.architecture")?.to_owned();
    let trained_context = metadata
        .unsigned(&format!("{architecture}.context_length"))
        .unwrap_or(4096);
    let context_length = match architecture.as_str() {
        "llama" => trained_context.min(quantized_llama::MAX_SEQ_LEN as u64),
        _ => trained_context,
    };
    let tokenizer = match tokenizer_json {
        Some(file) => Tokenizer::from_file(file).map_err(|error| ModelError::Malformed {
            path: file.to_owned(),
            reason: error.to_string(),
        })?,
        None => gguf_tokenizer(&metadata)?,
    };
    let token_text = |key: &str| -> Option<String> {
        let id = u32::try_from(metadata.unsigned(key)?).ok()?;
        tokenizer.id_to_token(id)
    };
    let bos_token = token_text("tokenizer.ggml.bos_token_id");
    let bos_token_id = metadata
        .unsigned("tokenizer.ggml.bos_token_id")
        .and_then(|id| u32::try_from(id).ok());
    let add_bos_token = metadata
        .values
        .get("tokenizer.ggml.add_bos_token")
        .and_then(|value| value.to_bool().ok())
        .unwrap_or(false);
    let eos_token = token_text("tokenizer.ggml.eos_token_id");
    let mut end_tokens: Vec<u32> = ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"]
        .iter()
        .filter_map(|key| u32::try_from(metadata.unsigned(key)?).ok())
        .collect();
    // Chat models end a turn with these whatever the file calls its end token.
    for text in [
        "<|im_end|>",
        "<|endoftext|>",
        "<|eot_id|>",
        "<end_of_turn>",
        "</s>",
    ] {
        if let Some(id) = tokenizer.token_to_id(text) {
            end_tokens.push(id);
        }
    }
    end_tokens.sort_unstable();
    end_tokens.dedup();
    let chat_template = metadata
        .values
        .get("tokenizer.chat_template")
        .and_then(|value| value.to_string().ok())
        .cloned();
    let quantization = quantization_of(&content);
    let parameters = content
        .tensor_infos
        .values()
        .map(|info| info.shape.elem_count() as u64)
        .sum();
    let device = Device::Cpu;
    let (content, mut reader) = if convert_slow_weights {
        requantized(content, reader, path)?
    } else {
        (content, Reader::File(reader))
    };
    let converted_to = matches!(reader, Reader::Converted(_)).then(|| "Q8_0".to_owned());
    let weights = match architecture.as_str() {
        "llama" => quantized_llama::ModelWeights::from_gguf(content, &mut reader, &device)
            .map(Weights::Llama),
        "qwen2" => quantized_qwen2::ModelWeights::from_gguf(content, &mut reader, &device)
            .map(Weights::Qwen2),
        "qwen3" => quantized_qwen3::ModelWeights::from_gguf(content, &mut reader, &device)
            .map(Weights::Qwen3),
        other => {
            return Err(ModelError::Unsupported {
                path: path.to_owned(),
                reason: format!(
                    "architecture `{other}`: local chat models can be llama (Llama, Mistral, \
                     SmolLM), qwen2 or qwen3"
                ),
            });
        }
    }
    .map_err(|error| malformed(format!("cannot load the weights: {error}")))?;
    Ok(GgufModel {
        architecture,
        context_length: usize::try_from(context_length).unwrap_or(usize::MAX),
        tokenizer,
        end_tokens,
        bos_token,
        bos_token_id,
        add_bos_token,
        eos_token,
        chat_template,
        quantization,
        converted_to,
        parameters,
        weights,
    })
}

/// Weight types candle multiplies with scalar code only on x86 (no AVX2 `vec_dot`); they run
/// several times faster converted to Q8_0, which holds them with less rounding than they had.
const SLOW_TYPES: [GgmlDType; 3] = [GgmlDType::Q4_1, GgmlDType::Q5_0, GgmlDType::Q5_1];

/// The file as read, or, when it has weights of a [`SLOW_TYPES`] type, a GGUF with those
/// converted to Q8_0 (about twice their memory).
fn requantized(
    content: Content,
    mut reader: BufReader<File>,
    path: &Path,
) -> Result<(Content, Reader), ModelError> {
    let slow = content
        .tensor_infos
        .values()
        .any(|info| SLOW_TYPES.contains(&info.ggml_dtype));
    if !slow {
        return Ok((content, Reader::File(reader)));
    }
    let failed = |error: candle_core::Error| ModelError::Malformed {
        path: path.to_owned(),
        reason: format!("cannot convert the weights to Q8_0: {error}"),
    };
    let device = Device::Cpu;
    let mut read = Vec::with_capacity(content.tensor_infos.len());
    for (name, info) in &content.tensor_infos {
        let tensor = content.tensor(&mut reader, name, &device).map_err(failed)?;
        // Q8_0 packs rows in blocks of 32; a row of another length stays as it was.
        let row = info.shape.dims().last().copied().unwrap_or(0);
        let convert = SLOW_TYPES.contains(&info.ggml_dtype) && row % 32 == 0;
        read.push((name.clone(), tensor, convert));
    }
    let tensors = read
        .into_par_iter()
        .map(|(name, tensor, convert)| {
            if !convert {
                return Ok((name, tensor));
            }
            let values = tensor.dequantize(&Device::Cpu)?;
            Ok((name, QTensor::quantize(&values, GgmlDType::Q8_0)?))
        })
        .collect::<candle_core::Result<Vec<_>>>()
        .map_err(failed)?;
    let metadata: Vec<(&str, &Value)> = content
        .metadata
        .iter()
        .map(|(key, value)| (key.as_str(), value))
        .collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors
        .iter()
        .map(|(name, tensor)| (name.as_str(), tensor))
        .collect();
    // Written to an unlinked temporary file rather than memory: the converted weights would
    // otherwise be in memory twice while the model reads them.
    let scratch = std::env::temp_dir().join(format!(
        "landfall-q8_0-{}-{}.gguf",
        std::process::id(),
        SCRATCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let io = |source| ModelError::Io {
        path: scratch.clone(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&scratch)
        .map_err(io)?;
    let _ = std::fs::remove_file(&scratch);
    {
        let mut writer = std::io::BufWriter::new(&mut file);
        gguf_file::write(&mut writer, &metadata, &tensor_refs).map_err(failed)?;
        std::io::Write::flush(&mut writer).map_err(io)?;
    }
    drop(tensor_refs);
    drop(tensors);
    let mut reader = BufReader::new(file);
    std::io::Seek::rewind(&mut reader).map_err(io)?;
    let converted = Content::read(&mut reader).map_err(failed)?;
    Ok((converted, Reader::Converted(reader)))
}

/// Numbers the scratch files of conversions running at once.
static SCRATCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Where the weights are read from: the file, or a converted copy.
enum Reader {
    File(BufReader<File>),
    /// The converted copy, in an unlinked temporary file.
    Converted(BufReader<File>),
}

impl std::io::Read for Reader {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::File(file) | Self::Converted(file) => file.read(buffer),
        }
    }
}

impl std::io::Seek for Reader {
    fn seek(&mut self, position: std::io::SeekFrom) -> std::io::Result<u64> {
        match self {
            Self::File(file) | Self::Converted(file) => file.seek(position),
        }
    }
}

/// The most common tensor type among the weight matrices: what the file is "quantized as".
fn quantization_of(content: &Content) -> String {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for info in content.tensor_infos.values() {
        if info.shape.rank() == 2 {
            *counts.entry(format!("{:?}", info.ggml_dtype)).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
        .map(|(dtype, _)| dtype)
        .unwrap_or_default()
}

/// Typed reads of GGUF metadata, with errors naming the file and the key.
struct Metadata<'a> {
    path: &'a Path,
    values: &'a HashMap<String, Value>,
}

impl Metadata<'_> {
    fn error(&self, reason: String) -> ModelError {
        ModelError::Malformed {
            path: PathBuf::from(self.path),
            reason,
        }
    }

    fn get(&self, key: &str) -> Result<&Value, ModelError> {
        self.values
            .get(key)
            .ok_or_else(|| self.error(format!("no `{key}` in the metadata")))
    }

    fn string(&self, key: &str) -> Result<&str, ModelError> {
        self.get(key)?
            .to_string()
            .map(String::as_str)
            .map_err(|_| self.error(format!("`{key}` is not a string")))
    }

    fn unsigned(&self, key: &str) -> Option<u64> {
        let value = self.values.get(key)?;
        match value {
            Value::I32(number) => u64::try_from(*number).ok(),
            Value::I64(number) => u64::try_from(*number).ok(),
            other => other.to_u64().ok(),
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<String>, ModelError> {
        let not_strings = || self.error(format!("`{key}` is not an array of strings"));
        self.get(key)?
            .to_vec()
            .map_err(|_| not_strings())?
            .iter()
            .map(|value| value.to_string().cloned().map_err(|_| not_strings()))
            .collect()
    }

    fn integers(&self, key: &str) -> Result<Vec<i32>, ModelError> {
        let not_integers = || self.error(format!("`{key}` is not an array of integers"));
        self.get(key)?
            .to_vec()
            .map_err(|_| not_integers())?
            .iter()
            .map(|value| match value {
                Value::I32(number) => Ok(*number),
                Value::U32(number) => i32::try_from(*number).map_err(|_| not_integers()),
                Value::I8(number) => Ok(i32::from(*number)),
                Value::U8(number) => Ok(i32::from(*number)),
                _ => Err(not_integers()),
            })
            .collect()
    }
}

/// The byte-level BPE tokenizer a `gpt2`-model GGUF carries (Llama 3, Qwen, SmolLM …),
/// pre-tokenized as llama.cpp does for the file's `tokenizer.ggml.pre`.
fn gguf_tokenizer(metadata: &Metadata<'_>) -> Result<Tokenizer, ModelError> {
    let model = metadata.string("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(ModelError::Unsupported {
            path: metadata.path.to_owned(),
            reason: format!(
                "tokenizer model `{model}` (only byte-level BPE, `gpt2`, is read from GGUF); \
                 give the model's tokenizer.json instead"
            ),
        });
    }
    let tokens = metadata.strings("tokenizer.ggml.tokens")?;
    let merges = metadata
        .strings("tokenizer.ggml.merges")?
        .into_iter()
        .map(|merge| {
            merge
                .split_once(' ')
                .map(|(left, right)| (left.to_owned(), right.to_owned()))
                .ok_or_else(|| metadata.error(format!("merge `{merge}` is not two tokens")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let types = metadata
        .integers("tokenizer.ggml.token_type")
        .unwrap_or_default();
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(id, token)| (token.clone(), u32::try_from(id).unwrap_or(u32::MAX)))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|error| metadata.error(format!("bad BPE vocabulary: {error}")))?;
    let mut tokenizer = Tokenizer::new(bpe);
    let pre = metadata.string("tokenizer.ggml.pre").unwrap_or("default");
    let pre_tokenizer = pre_tokenizer(pre)
        .map_err(|error| metadata.error(format!("pre-tokenizer `{pre}`: {error}")))?;
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    let specials: Vec<AddedToken> = types
        .iter()
        .zip(&tokens)
        .filter(|(kind, _)| CONTROL_TOKEN_TYPES.contains(kind))
        .map(|(_, token)| AddedToken::from(token.clone(), true))
        .collect();
    tokenizer
        .add_special_tokens(specials)
        .map_err(|error| metadata.error(format!("bad special tokens: {error}")))?;
    Ok(tokenizer)
}

/// GPT-4-style splitting that Llama 3 uses (numbers in runs of up to three digits).
const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 2 and 3 split as Llama 3 does, but every digit alone.
const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The pre-tokenizer llama.cpp applies for the file's `tokenizer.ggml.pre`
/// (`llama-vocab.cpp`): GPT-2's regex, with digits split one by one first for SmolLM and
/// StarCoder, or the Llama 3 and Qwen 2 patterns. The byte-level step never adds a leading
/// space.
fn pre_tokenizer(pre: &str) -> Result<PreTokenizerWrapper, String> {
    let split = |pattern: &str| -> Result<PreTokenizerWrapper, String> {
        let regex = SplitPattern::Regex(pattern.to_owned());
        let split = Split::new(regex, SplitDelimiterBehavior::Isolated, false)
            .map_err(|error| error.to_string())?;
        Ok(Sequence::new(vec![
            split.into(),
            ByteLevel::new(false, true, false).into(),
        ])
        .into())
    };
    match pre {
        "smollm" | "starcoder" | "refact" | "command-r" | "falcon3" => Ok(Sequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ])
        .into()),
        "llama3" | "llama-bpe" | "smaug-bpe" | "falcon" => split(LLAMA3_PATTERN),
        "qwen2" | "deepseek-r1-qwen" => split(QWEN2_PATTERN),
        _ => Ok(ByteLevel::new(false, true, true).into()),
    }
}
