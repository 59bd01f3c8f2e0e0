#!/usr/bin/env bash
# GPU smoke test: a short LoRA fine-tune (BFT, bf16 base weights) and a describe run on CUDA,
# printing tokens/s. Run on the GPU machine from the repository root with a CUDA build of bftkit:
#   cargo build --release --features cuda        # where nvcc exists (docs/dependencies.md: PyPI wheels)
#   scripts/gpu_smoke.sh [BFTKIT_BINARY] [MODEL] [STEPS]
# Needs models/ (scripts/fetch_models.sh) and the data of bench/finetune_smollm2.sh, or any
# chat JSONL as $DATA.
set -euo pipefail
BIN=${1:-target/release/bftkit}
MODEL=${2:-models/SmolLM2-135M-Instruct}
STEPS=${3:-20}
DATA=${DATA:-bench/out/finetune/data/train.jsonl}
DEVICE=${DEVICE:-cuda:0}
OUT=${OUT:-$(mktemp -d)}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
"$BIN" finetune --model "$MODEL" --data "$DATA" --out "$OUT/ft" --device "$DEVICE" --dtype bf16 \
    --loss bft --max-steps "$STEPS" --max-len 256 --batch-size 8 --seed 0
python3 - "$OUT/ft/train_log.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
tail = rows[1:] or rows  # the first step includes kernel warm-up
print(f"finetune: {len(rows)} steps, loss {rows[0]['loss']:.4f} -> {rows[-1]['loss']:.4f}, "
      f"{sum(r['tokens_per_s'] for r in tail) / len(tail):.0f} response tokens/s (steps 2..)")
PY
head -5 "${GENES:-bench/out/finetune/data/test_genes.txt}" > "$OUT/genes.txt"
"$BIN" describe "$OUT/genes.txt" --model "$MODEL" --adapter "$OUT/ft" --device "$DEVICE" \
    --out "$OUT/profiles.tsv" --max-new-tokens 128 --batch-size 5
cut -c1-200 "$OUT/profiles.tsv"
