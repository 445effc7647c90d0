//! [`LocalChatModel`]: a quantized GGUF chat model generating on the CPU.
//!
//! One worker thread per loaded model runs generations one at a time from a bounded queue;
//! candle's matrix kernels use every core for each token, so running two generations at once
//! would only interleave them. A generation streams its text through a channel and stops
//! as soon as the receiving side is dropped.

mod gguf;
mod sampler;
mod stops;
mod template;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use tokenizers::Tokenizer;
use tokio::sync::mpsc;

pub use sampler::SamplingParams;
pub use template::{ChatTemplate, TemplateMessage};

use crate::error::ModelError;
use gguf::Weights;
use sampler::Sampler;
use stops::{Scan, StopScanner};

/// Prompt chunk sizes for the prefill, largest first. candle caches one attention mask per
/// (chunk, position) shape and never frees them; a fixed set of sizes keeps that cache small.
const PREFILL_CHUNKS: [usize; 5] = [256, 64, 16, 4, 1];

/// Choices made when loading a [`LocalChatModel`]; `None` means "as the file says".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalChatOptions {
    /// A `tokenizer.json` to use instead of the tokenizer in the GGUF metadata.
    pub tokenizer: Option<PathBuf>,
    /// A Jinja chat template to use instead of `tokenizer.chat_template`.
    pub chat_template: Option<String>,
    /// Fewer positions than the model supports (prompt and output together).
    pub context_length: Option<usize>,
    /// Generations that may wait while one runs; more are refused with
    /// [`GenerateError::QueueFull`].
    pub queue_size: usize,
    /// Convert weights that candle multiplies with scalar code on x86 (Q4_1, Q5_0, Q5_1) to
    /// Q8_0: about 4x faster, twice their memory, and outputs that differ slightly from
    /// llama.cpp's on the original weights.
    pub convert_slow_weights: bool,
}

impl Default for LocalChatOptions {
    fn default() -> Self {
        Self {
            tokenizer: None,
            chat_template: None,
            context_length: None,
            queue_size: 16,
            convert_slow_weights: true,
        }
    }
}

/// What was loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalModelInfo {
    pub path: PathBuf,
    /// `general.architecture`: `llama`, `qwen2`, `qwen3`.
    pub architecture: String,
    /// Positions for prompt and output together.
    pub context_length: usize,
    /// The weight matrices' GGML type in the file (`Q4_1`, `Q8_0`, `Q4K` …).
    pub quantization: String,
    /// Their type in memory, when converted (see [`LocalChatOptions::convert_slow_weights`]).
    pub converted_to: Option<String>,
    pub parameters: u64,
    pub file_bytes: u64,
}

/// One generation's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationParams {
    /// Most tokens to generate; fewer when the context fills up first.
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Text that ends the generation; it is not part of the output.
    pub stop: Vec<String>,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model ended its turn, or a stop sequence was generated.
    Stop,
    /// `max_tokens` or the context length was reached.
    Length,
}

/// What a running generation sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GenerationEvent {
    /// More output: whole UTF-8 characters, never part of a stop sequence.
    Text(String),
    /// The last event of a generation that succeeded.
    Finished {
        reason: FinishReason,
        prompt_tokens: usize,
        /// Tokens sampled, the end-of-turn token included.
        completion_tokens: usize,
    },
}

/// Why a generation could not run or broke off.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerateError {
    #[error("the local model's queue is full ({queue_size} generations waiting)")]
    QueueFull { queue_size: usize },
    #[error("the prompt has {prompt_tokens} tokens but the model's context holds {context_length}")]
    ContextTooLong {
        prompt_tokens: usize,
        context_length: usize,
    },
    #[error("{0}")]
    InvalidRequest(String),
    #[error("the local model failed: {0}")]
    Inference(String),
    #[error("the local model was unloaded")]
    Unloaded,
}

/// The receiving end of one generation: [`GenerationEvent::Text`] items, then `Finished`,
/// or an error as the last item. Dropping it cancels the generation.
pub type Generation = mpsc::Receiver<Result<GenerationEvent, GenerateError>>;

struct Job {
    prompt: Vec<u32>,
    params: GenerationParams,
    events: mpsc::Sender<Result<GenerationEvent, GenerateError>>,
}

/// What the caller-facing handle and the worker share.
struct Shared {
    tokenizer: Tokenizer,
    end_tokens: Vec<u32>,
    bos_token_id: Option<u32>,
    context_length: usize,
    waiting: AtomicUsize,
}

/// A loaded GGUF chat model. `Send + Sync`; cheap to share in an `Arc`. Dropping the last
/// handle lets queued generations finish, then stops the worker thread and frees the weights.
pub struct LocalChatModel {
    info: LocalModelInfo,
    template: ChatTemplate,
    shared: Arc<Shared>,
    jobs: SyncSender<Job>,
    queue_size: usize,
}

impl std::fmt::Debug for LocalChatModel {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("LocalChatModel")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl LocalChatModel {
    /// Loads the GGUF file at `path` and starts its worker thread. Blocking: run it off the
    /// async reactor.
    ///
    /// # Errors
    /// A missing or unreadable file, an architecture or tokenizer this crate cannot run, or a
    /// chat template that does not compile.
    pub fn load(path: &Path, options: &LocalChatOptions) -> Result<Self, ModelError> {
        let file_bytes = std::fs::metadata(path)
            .map_err(|source| ModelError::Io {
                path: path.to_owned(),
                source,
            })?
            .len();
        let model = gguf::read(
            path,
            options.tokenizer.as_deref(),
            options.convert_slow_weights,
        )?;
        let template_source = options
            .chat_template
            .as_deref()
            .or(model.chat_template.as_deref());
        let template = ChatTemplate::new(
            template_source,
            model.bos_token.as_deref(),
            model.eos_token.as_deref(),
        )
        .map_err(|reason| ModelError::Malformed {
            path: path.to_owned(),
            reason: format!("chat template: {reason}"),
        })?;
        let context_length = options
            .context_length
            .map_or(model.context_length, |cap| cap.min(model.context_length));
        let info = LocalModelInfo {
            path: path.to_owned(),
            architecture: model.architecture,
            context_length,
            quantization: model.quantization,
            converted_to: model.converted_to,
            parameters: model.parameters,
            file_bytes,
        };
        let shared = Arc::new(Shared {
            tokenizer: model.tokenizer,
            end_tokens: model.end_tokens,
            bos_token_id: model.add_bos_token.then_some(model.bos_token_id).flatten(),
            context_length,
            waiting: AtomicUsize::new(0),
        });
        let (jobs, queue) = std::sync::mpsc::sync_channel(options.queue_size);
        let worker = Arc::clone(&shared);
        let name = format!("landfall-local-{}", info.architecture);
        std::thread::Builder::new()
            .name(name)
            .spawn(move || work(&worker, model.weights, &queue))
            .map_err(|source| ModelError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            info,
            template,
            shared,
            jobs,
            queue_size: options.queue_size,
        })
    }

    #[must_use]
    pub fn info(&self) -> &LocalModelInfo {
        &self.info
    }

    /// Generations waiting for the running one to finish.
    #[must_use]
    pub fn waiting(&self) -> usize {
        self.shared.waiting.load(Ordering::Relaxed)
    }

    /// The prompt tokens for `messages`, rendered with the chat template.
    ///
    /// # Errors
    /// [`GenerateError::InvalidRequest`] when the template refuses the messages.
    pub fn prompt(&self, messages: &[TemplateMessage]) -> Result<Vec<u32>, GenerateError> {
        let text = self
            .template
            .render(messages)
            .map_err(|reason| GenerateError::InvalidRequest(format!("chat template: {reason}")))?;
        let encoding = self
            .shared
            .tokenizer
            .encode(text.as_str(), false)
            .map_err(|error| GenerateError::Inference(format!("tokenizer: {error}")))?;
        let mut tokens = Vec::with_capacity(encoding.len() + 1);
        if let Some(bos) = self.shared.bos_token_id
            && encoding.get_ids().first() != Some(&bos)
        {
            tokens.push(bos);
        }
        tokens.extend_from_slice(encoding.get_ids());
        Ok(tokens)
    }

    /// Tokens of `text` as plain text (special tokens spelled out are not special).
    ///
    /// # Errors
    /// When the tokenizer fails.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, GenerateError> {
        self.shared
            .tokenizer
            .encode(text, false)
            .map(|encoding| encoding.get_ids().to_vec())
            .map_err(|error| GenerateError::Inference(format!("tokenizer: {error}")))
    }

    /// The text of `tokens`, special tokens left out.
    ///
    /// # Errors
    /// When a token is not in the vocabulary.
    pub fn detokenize(&self, tokens: &[u32]) -> Result<String, GenerateError> {
        self.shared
            .tokenizer
            .decode(tokens, true)
            .map_err(|error| GenerateError::Inference(format!("detokenizer: {error}")))
    }

    /// Queues a generation from `prompt` tokens.
    ///
    /// # Errors
    /// [`GenerateError::ContextTooLong`] when the prompt leaves no room for output,
    /// [`GenerateError::QueueFull`] when the queue is full, [`GenerateError::Unloaded`] when
    /// the worker has stopped.
    pub fn generate(
        &self,
        prompt: Vec<u32>,
        params: GenerationParams,
    ) -> Result<Generation, GenerateError> {
        if prompt.len() >= self.shared.context_length {
            return Err(GenerateError::ContextTooLong {
                prompt_tokens: prompt.len(),
                context_length: self.shared.context_length,
            });
        }
        if prompt.is_empty() {
            return Err(GenerateError::InvalidRequest(
                "the prompt is empty".to_owned(),
            ));
        }
        let (events, generation) = mpsc::channel(64);
        self.shared.waiting.fetch_add(1, Ordering::Relaxed);
        let job = Job {
            prompt,
            params,
            events,
        };
        match self.jobs.try_send(job) {
            Ok(()) => Ok(generation),
            Err(refused) => {
                self.shared.waiting.fetch_sub(1, Ordering::Relaxed);
                Err(match refused {
                    TrySendError::Full(_) => GenerateError::QueueFull {
                        queue_size: self.queue_size,
                    },
                    TrySendError::Disconnected(_) => GenerateError::Unloaded,
                })
            }
        }
    }
}

/// The worker thread: one generation at a time until every handle is gone.
fn work(shared: &Shared, mut weights: Weights, queue: &Receiver<Job>) {
    while let Ok(job) = queue.recv() {
        shared.waiting.fetch_sub(1, Ordering::Relaxed);
        if job.events.is_closed() {
            continue;
        }
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            run(shared, &mut weights, &job.prompt, &job.params, &job.events)
        }));
        weights.clear();
        let failure = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(error)) => error,
            Err(_) => GenerateError::Inference("the forward pass panicked".to_owned()),
        };
        let _ = job.events.blocking_send(Err(failure));
    }
}

/// One generation. Returns early, with `Ok`, when the receiver is gone.
fn run(
    shared: &Shared,
    weights: &mut Weights,
    prompt: &[u32],
    params: &GenerationParams,
    events: &mpsc::Sender<Result<GenerationEvent, GenerateError>>,
) -> Result<(), GenerateError> {
    let failed = |error: candle_core::Error| GenerateError::Inference(error.to_string());
    let mut position = 0;
    let mut logits = None;
    let mut rest = prompt;
    while !rest.is_empty() {
        let size = PREFILL_CHUNKS
            .into_iter()
            .find(|&size| size <= rest.len())
            .unwrap_or(1);
        logits = Some(weights.forward(&rest[..size], position).map_err(failed)?);
        position += size;
        rest = &rest[size..];
        if events.is_closed() {
            return Ok(());
        }
    }
    let Some(mut logits) = logits else {
        return Err(GenerateError::InvalidRequest(
            "the prompt is empty".to_owned(),
        ));
    };
    let mut sampler = Sampler::new(params.sampling.clone());
    let mut history = prompt.to_vec();
    let mut decoder = shared.tokenizer.decode_stream(true);
    let mut stops = StopScanner::new(params.stop.clone());
    let mut completion_tokens = 0;
    let reason = loop {
        let next = sampler.sample(&logits, &history).map_err(failed)?;
        completion_tokens += 1;
        history.push(next);
        if shared.end_tokens.contains(&next) {
            break FinishReason::Stop;
        }
        let text = decoder
            .step(next)
            .map_err(|error| GenerateError::Inference(format!("detokenizer: {error}")))?;
        if let Some(text) = text {
            let (text, stopped) = match stops.push(&text) {
                Scan::Emit(text) => (text, false),
                Scan::Stop(text) => (text, true),
            };
            if !text.is_empty()
                && events
                    .blocking_send(Ok(GenerationEvent::Text(text)))
                    .is_err()
            {
                return Ok(());
            }
            if stopped {
                break FinishReason::Stop;
            }
        }
        // No forward pass for a token that will not be sampled.
        if completion_tokens >= params.max_tokens || position + 1 >= shared.context_length {
            break FinishReason::Length;
        }
        logits = weights.forward(&[next], position).map_err(failed)?;
        position += 1;
        if events.is_closed() {
            return Ok(());
        }
    };
    let held = stops.finish();
    if !held.is_empty()
        && events
            .blocking_send(Ok(GenerationEvent::Text(held)))
            .is_err()
    {
        return Ok(());
    }
    let _ = events.blocking_send(Ok(GenerationEvent::Finished {
        reason,
        prompt_tokens: prompt.len(),
        completion_tokens,
    }));
    Ok(())
}
