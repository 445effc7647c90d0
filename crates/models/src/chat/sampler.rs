//! Choosing the next token from the logits: penalties, then temperature, top-k and top-p.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};

/// How the next token is chosen. `temperature == 0` is greedy and deterministic.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    pub temperature: f64,
    /// Nucleus sampling; 1 keeps every token.
    pub top_p: f64,
    /// Only the `top_k` most likely tokens; 0 keeps every token.
    pub top_k: usize,
    /// llama.cpp's repetition penalty over the last [`Self::penalty_window`] tokens; 1 is off.
    pub repetition_penalty: f32,
    /// OpenAI's `frequency_penalty` and `presence_penalty` (-2..=2), over the same window.
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    pub penalty_window: usize,
    /// Same seed, same parameters, same prompt: same tokens.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            repetition_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            penalty_window: 64,
            seed: 0,
        }
    }
}

pub(crate) struct Sampler {
    params: SamplingParams,
    processor: LogitsProcessor,
}

impl Sampler {
    pub(crate) fn new(params: SamplingParams) -> Self {
        let temperature = params.temperature;
        let sampling = if temperature <= 0.0 {
            Sampling::ArgMax
        } else {
            let nucleus = params.top_p > 0.0 && params.top_p < 1.0;
            match (params.top_k, nucleus) {
                (0, false) => Sampling::All { temperature },
                (0, true) => Sampling::TopP {
                    p: params.top_p,
                    temperature,
                },
                (k, false) => Sampling::TopK { k, temperature },
                (k, true) => Sampling::TopKThenTopP {
                    k,
                    p: params.top_p,
                    temperature,
                },
            }
        };
        Self {
            processor: LogitsProcessor::from_sampling(params.seed, sampling),
            params,
        }
    }

    /// The next token after `history` (prompt and output so far), from 1-D `logits`.
    pub(crate) fn sample(&mut self, logits: &Tensor, history: &[u32]) -> candle_core::Result<u32> {
        let params = &self.params;
        let penalized = params.repetition_penalty != 1.0
            || params.frequency_penalty != 0.0
            || params.presence_penalty != 0.0;
        if !penalized {
            return self.processor.sample(logits);
        }
        let mut values: Vec<f32> = logits.to_dtype(candle_core::DType::F32)?.to_vec1()?;
        let window = &history[history.len().saturating_sub(params.penalty_window)..];
        penalize(&mut values, window, params);
        let penalized = Tensor::from_vec(values, logits.dims1()?, &Device::Cpu)?;
        self.processor.sample(&penalized)
    }
}

/// llama.cpp's order: the repetition penalty divides positive logits and multiplies negative
/// ones; then OpenAI's `logit -= count * frequency + (count > 0) * presence`.
fn penalize(logits: &mut [f32], window: &[u32], params: &SamplingParams) {
    let mut counts: HashMap<u32, u32> = HashMap::new();
    for &token in window {
        *counts.entry(token).or_default() += 1;
    }
    for (token, count) in counts {
        let Some(logit) = usize::try_from(token)
            .ok()
            .and_then(|index| logits.get_mut(index))
        else {
            continue;
        };
        if params.repetition_penalty != 1.0 {
            if *logit > 0.0 {
                *logit /= params.repetition_penalty;
            } else {
                *logit *= params.repetition_penalty;
            }
        }
        #[expect(
            clippy::cast_precision_loss,
            reason = "counts are at most the window size"
        )]
        let count = count as f32;
        *logit -= count * params.frequency_penalty + params.presence_penalty;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits(values: &[f32]) -> candle_core::Result<Tensor> {
        Tensor::new(values, &Device::Cpu)
    }

    #[test]
    fn temperature_zero_is_argmax() -> candle_core::Result<()> {
        let mut sampler = Sampler::new(SamplingParams {
            temperature: 0.0,
            ..SamplingParams::default()
        });
        assert_eq!(sampler.sample(&logits(&[0.1, 3.0, 2.9])?, &[])?, 1);
        Ok(())
    }

    #[test]
    fn a_seed_repeats_the_same_choices() -> candle_core::Result<()> {
        let params = SamplingParams {
            temperature: 1.0,
            seed: 42,
            ..SamplingParams::default()
        };
        let values = logits(&[1.0, 1.0, 1.0, 1.0, 1.0, 1.0])?;
        let draw = |params: &SamplingParams| -> candle_core::Result<Vec<u32>> {
            let mut sampler = Sampler::new(params.clone());
            (0..32).map(|_| sampler.sample(&values, &[])).collect()
        };
        let first = draw(&params)?;
        assert_eq!(first, draw(&params)?);
        assert!(
            first.iter().any(|&token| token != first[0]),
            "uniform logits vary"
        );
        Ok(())
    }

    #[test]
    fn top_k_one_is_greedy_at_any_temperature() -> candle_core::Result<()> {
        let mut sampler = Sampler::new(SamplingParams {
            temperature: 5.0,
            top_k: 1,
            seed: 7,
            ..SamplingParams::default()
        });
        for _ in 0..16 {
            assert_eq!(sampler.sample(&logits(&[0.0, 0.5, 0.4])?, &[])?, 1);
        }
        Ok(())
    }

    #[test]
    fn penalties_follow_llama_cpp_then_openai() {
        let params = SamplingParams {
            repetition_penalty: 2.0,
            frequency_penalty: 0.5,
            presence_penalty: 1.0,
            ..SamplingParams::default()
        };
        let mut values = [4.0, -1.0, 3.0];
        penalize(&mut values, &[0, 0, 1], &params);
        // token 0: 4/2 - 2*0.5 - 1; token 1: -1*2 - 0.5 - 1; token 2 untouched.
        assert_eq!(values, [0.0, -3.5, 3.0]);
    }

    #[test]
    fn a_repeated_token_loses_to_a_fresh_one() -> candle_core::Result<()> {
        let mut sampler = Sampler::new(SamplingParams {
            temperature: 0.0,
            repetition_penalty: 1.5,
            ..SamplingParams::default()
        });
        assert_eq!(sampler.sample(&logits(&[3.0, 2.5])?, &[0])?, 1);
        Ok(())
    }
}
