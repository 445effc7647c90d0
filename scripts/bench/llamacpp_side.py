"""llama.cpp's side of scripts/bench-local.sh: the same tasks as landfall-models' chat_bench
example, through llama-cpp-python on the same GGUF, printed as one JSON line.

Usage: llamacpp_side.py MODEL.gguf TASKS.json THREADS
"""
import json
import sys
import time

from llama_cpp import Llama

SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
END_TOKENS = (0, 2)  # <|endoftext|>, <|im_end|>


def chatml(question):
    # SmolLM2's chat template, as landfall renders it (the tokens are checked equal in tests).
    return (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n"
            "<|im_start|>assistant\n")


def run(llm, ids, max_tokens):
    """(tokens, seconds to the first token, seconds in all), greedy."""
    started = time.perf_counter()
    first = None
    out = []
    for token in llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
        if first is None:
            first = time.perf_counter() - started
        if token in END_TOKENS:
            out.append(token)
            break
        out.append(token)
        if len(out) == max_tokens:
            break
    return out, first, time.perf_counter() - started


def peak_rss_mib():
    """Peak resident memory of this process so far (VmHWM), in MiB."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def median(values):
    return sorted(values)[len(values) // 2]


def greedy_outputs(llm, questions, n):
    outputs = []
    for question in questions:
        ids = llm.tokenize(chatml(question).encode(), add_bos=False, special=True)
        tokens, _, _ = run(llm, ids, n)
        tokens = [t for t in tokens if t not in END_TOKENS]
        outputs.append({"tokens": tokens,
                        "prefixes": [llm.detokenize(tokens[:k]).decode("utf-8", "replace")
                                     for k in range(1, len(tokens) + 1)]})
    return outputs


def main():
    model, tasks_path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    tasks = json.load(open(tasks_path))
    baseline_rss = peak_rss_mib()
    started = time.perf_counter()
    llm = Llama(model_path=model, n_ctx=4096, n_threads=threads, n_threads_batch=threads,
                seed=0, verbose=False)
    load_seconds = time.perf_counter() - started
    prefill_ids = llm.tokenize(chatml(tasks["prefill"]).encode(), add_bos=False, special=True)
    generate_ids = llm.tokenize(chatml(tasks["generate"]).encode(), add_bos=False, special=True)
    run(llm, generate_ids, 4)
    prefill, decode = [], []
    generated = 0
    for _ in range(tasks["runs"]):
        _, first, _ = run(llm, prefill_ids, 1)
        prefill.append(len(prefill_ids) / first)
        tokens, first, total = run(llm, generate_ids, tasks["generate_tokens"])
        generated = len(tokens)
        decode.append((len(tokens) - 1) / (total - first))
    outputs = greedy_outputs(llm, tasks["greedy"], tasks["greedy_tokens"])
    peak_rss = peak_rss_mib()
    # The same greedy runs with an f32 KV cache, as candle keeps it.
    f32 = Llama(model_path=model, n_ctx=4096, n_threads=threads, n_threads_batch=threads,
                seed=0, verbose=False, type_k=0, type_v=0)
    outputs_f32 = greedy_outputs(f32, tasks["greedy"], tasks["greedy_tokens"])
    print(json.dumps({
        "load_seconds": load_seconds,
        "prefill_prompt_tokens": len(prefill_ids),
        "prefill_tokens_per_second": median(prefill),
        "generate_prompt_tokens": len(generate_ids),
        "generated_tokens": generated,
        "generate_tokens_per_second": median(decode),
        # Before the second model is loaded; the interpreter and numpy alone take
        # baseline_rss_mib of it.
        "peak_rss_mib": peak_rss,
        "baseline_rss_mib": baseline_rss,
        "greedy": outputs,
        "greedy_f32_kv": outputs_f32,
    }))


if __name__ == "__main__":
    main()
