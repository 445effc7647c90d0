//! Speed and greedy output of [`LocalChatModel`] on a GGUF file, as one JSON line on stdout.
//!
//! ```text
//! cargo run --release -p landfall-models --example chat_bench -- MODEL.gguf TASKS.json [--exact]
//! ```
//! `--exact` runs the file's weights as they are (no Q8_0 conversion of Q4_1/Q5_x).
//! `TASKS.json`: `{"prefill": "long user message", "generate": "user message",
//! "generate_tokens": 128, "greedy": ["question", …], "greedy_tokens": 32, "runs": 3}`.
//! Every message is rendered with the model's chat template. Prompt processing is timed as
//! the first token's latency of a one-token generation; generation as the tokens after the
//! first over the time after the first. `scripts/bench-local.sh` runs it side by side with
//! llama.cpp.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use landfall_models::{
    GenerationEvent, GenerationParams, LocalChatModel, LocalChatOptions, SamplingParams,
    TemplateMessage,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Tasks {
    prefill: String,
    generate: String,
    generate_tokens: usize,
    greedy: Vec<String>,
    greedy_tokens: usize,
    runs: usize,
}

fn user(text: &str) -> Vec<TemplateMessage> {
    vec![TemplateMessage {
        role: "user".to_owned(),
        content: text.to_owned(),
    }]
}

fn greedy(max_tokens: usize) -> GenerationParams {
    GenerationParams {
        max_tokens,
        sampling: SamplingParams {
            temperature: 0.0,
            ..SamplingParams::default()
        },
        stop: Vec::new(),
    }
}

/// Runs one generation: (text, completion tokens, seconds to the first text, seconds in all).
fn run(
    model: &LocalChatModel,
    prompt: &[u32],
    max_tokens: usize,
) -> anyhow::Result<(String, usize, f64, f64)> {
    let started = Instant::now();
    let mut generation = model.generate(prompt.to_vec(), greedy(max_tokens))?;
    let mut text = String::new();
    let mut first = None;
    while let Some(event) = generation.blocking_recv() {
        match event? {
            GenerationEvent::Text(piece) => {
                first.get_or_insert_with(|| started.elapsed().as_secs_f64());
                text.push_str(&piece);
            }
            GenerationEvent::Finished {
                completion_tokens, ..
            } => {
                let total = started.elapsed().as_secs_f64();
                return Ok((text, completion_tokens, first.unwrap_or(total), total));
            }
        }
    }
    anyhow::bail!("the generation ended without finishing")
}

/// Peak resident memory of this process, in MiB (`VmHWM`).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

#[expect(clippy::print_stdout, reason = "a benchmark prints its result")]
#[expect(clippy::cast_precision_loss, reason = "token counts are small")]
fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(model_path), Some(tasks_path)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: chat_bench MODEL.gguf TASKS.json");
    };
    let tasks: Tasks = serde_json::from_slice(
        &std::fs::read(&tasks_path).with_context(|| format!("reading {tasks_path}"))?,
    )?;
    let load_started = Instant::now();
    let options = LocalChatOptions {
        convert_slow_weights: args.next().as_deref() != Some("--exact"),
        ..LocalChatOptions::default()
    };
    let model = LocalChatModel::load(&PathBuf::from(&model_path), &options)?;
    let load_seconds = load_started.elapsed().as_secs_f64();
    let loaded_rss_mib = peak_rss_mib();

    let prefill_prompt = model.prompt(&user(&tasks.prefill))?;
    let generate_prompt = model.prompt(&user(&tasks.generate))?;
    // Warm-up: page the weights in and let the thread pool start.
    run(&model, &generate_prompt, 4)?;
    let (mut prefill, mut decode) = (Vec::new(), Vec::new());
    let mut generated = 0;
    for _ in 0..tasks.runs {
        let (_, _, first, _) = run(&model, &prefill_prompt, 1)?;
        prefill.push(prefill_prompt.len() as f64 / first);
        let (_, tokens, first, total) = run(&model, &generate_prompt, tasks.generate_tokens)?;
        generated = tokens;
        decode.push((tokens.saturating_sub(1)) as f64 / (total - first));
    }
    let mut outputs = Vec::new();
    for question in &tasks.greedy {
        let prompt = model.prompt(&user(question))?;
        outputs.push(run(&model, &prompt, tasks.greedy_tokens)?.0);
    }
    let result = serde_json::json!({
        "load_seconds": load_seconds,
        "prefill_prompt_tokens": prefill_prompt.len(),
        "prefill_tokens_per_second": median(prefill),
        "generate_prompt_tokens": generate_prompt.len(),
        "generated_tokens": generated,
        "generate_tokens_per_second": median(decode),
        "peak_rss_mib": peak_rss_mib(),
        "peak_rss_after_load_mib": loaded_rss_mib,
        "greedy": outputs,
        "quantization": model.info().quantization,
        "converted_to": model.info().converted_to,
    });
    println!("{result}");
    Ok(())
}
