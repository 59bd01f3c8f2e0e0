#!/usr/bin/env bash
# BFT vs SFT training-step time on the same batch (benches/bft_step.rs), then the peak memory of
# each variant in its own process. Needs models/ (scripts/fetch_models.sh) and the SFT data of
# bench/finetune_smollm2.sh (bench/out/finetune/data/train.jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench bft_step --quiet -- --reps 5
for v in sft bft; do
    /usr/bin/time -f "$v peak RSS: %M KiB" cargo bench --bench bft_step --quiet -- --reps 1 \
        --only "$v" 2>&1 | grep -E "peak RSS|tokens/s"
done
