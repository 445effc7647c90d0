#!/usr/bin/env bash
# Local chat model speed, side by side in one run: llama.cpp (llama-cpp-python, built from
# source in the bench venv) and landfall-models (candle, release build) run the same GGUF
# (SmolLM2-135M-Instruct Q4_1) on the same prompts with 2 threads. Prints prompt-processing and
# generation tokens/s, peak memory, the ratios, and how many of llama.cpp's greedy tokens
# landfall reproduces on fixed prompts (with llama.cpp's KV cache f16, its default, and f32,
# as candle keeps it).
#
# Usage: scripts/bench-local.sh [MODEL.gguf]   (default: the test model)
# Needs: python3; the venv ~/.cache/landfall-bench/venv gets llama-cpp-python (a ~12-minute
# C++ build on 2 cores, once).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODELS_DIR="${LANDFALL_TEST_MODELS:-$HOME/.cache/landfall-test}"
MODEL="${1:-$MODELS_DIR/SmolLM2-135M-Instruct.Q4_1.gguf}"
THREADS=2
VENV="${LANDFALL_BENCH_VENV:-$HOME/.cache/landfall-bench/venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/landfall-ci-target}"
export RAYON_NUM_THREADS="$THREADS"

[[ $# -gt 0 ]] || "$ROOT/scripts/fetch-test-models.sh"
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import llama_cpp' 2>/dev/null; then
    echo "bench-local: building llama-cpp-python 0.3.16 into $VENV (takes a while)" >&2
    [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
    CMAKE_ARGS="-DGGML_NATIVE=ON" "$VENV/bin/pip" install --quiet llama-cpp-python==0.3.16
fi
cargo build --quiet --release -p landfall-models --example chat_bench

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$VENV/bin/python" - "$WORK/tasks.json" <<'PY'
import json, sys
paragraph = ("The pump must be primed before the first start. Open the vent valve, fill the "
             "casing with water until it flows out of the vent, then close the valve. ")
json.dump({
    "prefill": paragraph * 24 + "Summarize the procedure.",
    "generate": "Write a long story about a lighthouse keeper and a storm.",
    "generate_tokens": 128,
    "greedy": ["List three primary colors.", "How do I reverse a list in Python?",
               "请用一句话介绍北京。", "What is the capital of France?",
               "Explain photosynthesis in one sentence.", "Write a haiku about the sea."],
    "greedy_tokens": 32,
    "runs": 3,
}, open(sys.argv[1], "w"))
PY
"$VENV/bin/python" "$ROOT/scripts/bench/llamacpp_side.py" "$MODEL" "$WORK/tasks.json" "$THREADS" > "$WORK/llama.json"
"$CARGO_TARGET_DIR/release/examples/chat_bench" "$MODEL" "$WORK/tasks.json" > "$WORK/ours.json"
"$CARGO_TARGET_DIR/release/examples/chat_bench" "$MODEL" "$WORK/tasks.json" --exact > "$WORK/exact.json"

"$VENV/bin/python" - "$WORK/llama.json" "$WORK/ours.json" "$WORK/exact.json" "$WORK/tasks.json" <<'PY'
import json, sys
theirs, ours, exact, tasks = (json.load(open(path)) for path in sys.argv[1:5])

def matched(reference, text):
    """llama.cpp tokens whose text landfall's output starts with (a held-back partial
    character at the end counts as matched)."""
    count = 0
    for k, prefix in enumerate(reference["prefixes"], start=1):
        if text.startswith(prefix.rstrip("\ufffd")):
            count = k
        else:
            break
    return count

converted = ours["converted_to"] or ours["quantization"]
print(f"SmolLM2-135M-Instruct {ours['quantization']}: {theirs['prefill_prompt_tokens']}-token prompt, "
      f"{tasks['generate_tokens']} generated tokens, median of {tasks['runs']} runs, 2 threads")
print(f"landfall runs the weights as {converted} (default) and as they are in the file (--exact)")
rows = [("prompt processing (tok/s)", "prefill_tokens_per_second"),
        ("generation (tok/s)", "generate_tokens_per_second"),
        ("peak RSS (MiB)", "peak_rss_mib"),
        ("load (s)", "load_seconds")]
print(f"{'':28} {'llama.cpp':>10} {'landfall':>10} {'ratio':>7} {'exact':>10} {'ratio':>7}")
for label, key in rows:
    a, b, c = theirs[key], ours[key], exact[key]
    print(f"{label:28} {a:10.1f} {b:10.1f} {b / a:6.2f}x {c:10.1f} {c / a:6.2f}x")
print(f"(llama.cpp's Python process takes {theirs['baseline_rss_mib']:.0f} MiB before the model loads)")
print(f"generated tokens: llama.cpp {theirs['generated_tokens']}, landfall {ours['generated_tokens']}, exact {exact['generated_tokens']}")
print("greedy tokens of llama.cpp matched (KV cache f16 / f32), of the first 32:")
print(f"  {'landfall':>9} {'exact':>9}  llama.cpp tokens  question")
for i, question in enumerate(tasks["greedy"]):
    f16, f32 = theirs["greedy"][i], theirs["greedy_f32_kv"][i]
    ours_text, exact_text = ours["greedy"][i], exact["greedy"][i]
    print(f"  {matched(f16, ours_text):3d} / {matched(f32, ours_text):3d} {matched(f16, exact_text):3d} / {matched(f32, exact_text):3d}"
          f"  {len(f16['tokens']):2d} / {len(f32['tokens']):2d}  {question}")
PY
