#!/usr/bin/env bash
# The real CPU run of issue 4: SmolLM2-135M-Instruct LoRA-tuned with SFT and with BFT on
# "tell me about gene X." -> NCBI/UniProt summary (genept_summaries), a seeded 90/10 split by
# gene, the held-out loss every few steps, and held-out profiles before and after.
# Usage: bench/finetune_smollm2.sh [DATA_DIR] [STEPS]   (models from scripts/fetch_models.sh)
# Output: bench/out/finetune/ (ignored); bench/README.md records the numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-${BFTKIT_DATA:-../shared/data}}
STEPS=${2:-40}
MODEL=models/SmolLM2-135M-Instruct
OUT=bench/out/finetune
BIN=target/release/bftkit
cargo build --release --quiet
mkdir -p "$OUT"
$BIN sft-data --texts "$DATA/genept_summaries/ncbi_uniprot_summaries_1915genes.json" \
    --out "$OUT/data" --test-fraction 0.1 --seed 0
# Held-out loss on the first 48 test genes (the split itself is random), profiles for 5.
head -48 "$OUT/data/test.jsonl" > "$OUT/data/eval48.jsonl"
head -5 "$OUT/data/test_genes.txt" > "$OUT/data/show5.txt"
COMMON=(--model "$MODEL" --data "$OUT/data/train.jsonl" --eval-data "$OUT/data/eval48.jsonl"
        --eval-every 10 --max-steps "$STEPS" --max-len 128 --batch-size 4 --lr 5e-4
        --warmup-ratio 0.1 --seed 0)
$BIN describe "$OUT/data/show5.txt" --model "$MODEL" --out "$OUT/profiles_base.tsv" \
    --max-new-tokens 128 --batch-size 5
for LOSS in sft bft; do
    /usr/bin/time -v $BIN finetune "${COMMON[@]}" --loss "$LOSS" --out "$OUT/$LOSS" \
        2> "$OUT/$LOSS.time.txt"
    $BIN describe "$OUT/data/show5.txt" --model "$MODEL" --adapter "$OUT/$LOSS" \
        --out "$OUT/profiles_$LOSS.tsv" --max-new-tokens 128 --batch-size 5
done
echo "held-out loss (nats per response token):"
paste <(jq -r '"\(.step)\t\(.loss)"' "$OUT/sft/eval_log.jsonl") \
      <(jq -r '.loss' "$OUT/bft/eval_log.jsonl")
