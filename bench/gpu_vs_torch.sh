#!/usr/bin/env bash
# LoRA BFT fine-tuning on one GPU: bftkit's CUDA build against transformers + peft, in one run on
# the GPU machine. For each model shape and batch: a random-weight model made there by PyTorch
# (bench/make_random_decoder.py; nothing downloaded), then bench/train_vs_peft.py (same data,
# batches, BFT loss, LoRA r16/a32 on all linear layers, bf16 base with f32 adapters, AdamW, clip 1,
# max length 256; step-1 losses must agree to 1e-2). Then: gradient checkpointing on the 8B shape
# at 16 x 1024 (both tools checkpointing), and 50 steps over a q8_0 base against the bf16 base on
# the 1.5B shape (bftkit; the mean relative loss difference must stay within 2%). Last, bftkit alone
# on a Llama-3-70B-shaped model with a q4_k base (bench/make_random_gguf.py writes it: random q4_k
# blocks, ~40 GB), LoRA BFT at 4 x 512 with --base-quant auto and gradient checkpointing: its speed
# and peak memory (no peer: transformers cannot train over a q4_k GGUF base).
#
#   BFTKIT=target/cuda/bftkit TOKENIZER=models/smollm2-tokenizer DATA=train.jsonl bench/gpu_vs_torch.sh
#
# BFTKIT: the CUDA binary (../shared/tools/build-cuda.sh, or cargo build --release --features cuda).
# TOKENIZER: a folder with a tokenizer.json whose ids fit every shape's vocabulary (SmolLM2's,
# written by scripts/fetch_models.sh); DATA: JSONL conversations ({"messages": [...]}).
# SHAPES="shape:batch ..." picks the rows; STEPS the steps per row. EXTRA="ckpt quant big" picks
# the runs after the table (SKIP_EXTRA=1: none); CKPT="shape:batch:len", QUANT_SHAPE and
# BIG="shape:quant:batch:len" pick their models. The bf16 models are deleted before the 70B file
# is written, to fit a 64 GB disk, unless KEEP_MODELS=1. A dry run on a machine without a GPU:
#   DEVICE=cpu DTYPE=f32 SHAPES=tiny:2 CKPT=tiny:2:64 QUANT_SHAPE=tiny BIG=tiny-q:q4_k:2:64 ...
# The table goes to $OUT/table.md (and, by hand, into bench/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
BFTKIT=${BFTKIT:-target/cuda/bftkit}
TOKENIZER=${TOKENIZER:-models/smollm2-tokenizer}
DATA=${DATA:?DATA: a JSONL file of conversations}
OUT=${OUT:-bench/out/gpu}
SHAPES=${SHAPES:-"smollm2-135m:8 qwen2-1.5b:8 llama3-8b:1 llama3-8b:4 llama3-8b:8"}
STEPS=${STEPS:-10}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-bf16}
mkdir -p "$OUT"
if [ "$DEVICE" = cuda ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
fi
model() {
    [ -f "$OUT/models/$1/config.json" ] ||
        "$PY" bench/make_random_decoder.py --shape "$1" --tokenizer "$TOKENIZER" --out "$OUT/models/$1" \
            --device "$DEVICE"
}
table="$OUT/table.md"
echo "| model shape | batch x len | bftkit tokens/s | bftkit peak GPU | peft tokens/s | peft peak GPU | speed | memory |" >"$table"
echo "|---|---|---|---|---|---|---|---|" >>"$table"
status=0
for item in $SHAPES; do
    shape=${item%%:*} batch=${item##*:}
    model "$shape"
    "$PY" bench/train_vs_peft.py --bftkit "$BFTKIT" --device "$DEVICE" --dtype "$DTYPE" --model "$OUT/models/$shape" \
        --data "$DATA" --batch "$batch" --max-len 256 --steps "$STEPS" --label "$shape" \
        --out "$OUT/$shape-b$batch" | tee "$OUT/$shape-b$batch.log" || status=1
    grep -E "^\| $shape" "$OUT/$shape-b$batch.log" >>"$table" || echo "| $shape | $batch x 256 | failed | | | | | |" >>"$table"
done
EXTRA=${EXTRA-"ckpt quant big"}
[ "${SKIP_EXTRA:-0}" = 1 ] && EXTRA=""
has() { case " $EXTRA " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
if has ckpt; then
    IFS=: read -r cshape cbatch clen <<<"${CKPT:-llama3-8b:16:1024}"
    model "$cshape"
    "$PY" bench/train_vs_peft.py --bftkit "$BFTKIT" --device "$DEVICE" --dtype "$DTYPE" --model "$OUT/models/$cshape" \
        --data "$DATA" --batch "$cbatch" --max-len "$clen" --steps 3 --label "$cshape checkpointing" \
        --bftkit-args=--gradient-checkpointing --peer-checkpointing --out "$OUT/ckpt" | tee "$OUT/ckpt.log" || status=1
    grep -E "^\| $cshape" "$OUT/ckpt.log" >>"$table" || true
fi
if has quant; then
    QUANT_SHAPE=${QUANT_SHAPE:-qwen2-1.5b}
    model "$QUANT_SHAPE"
    for q in dense q8_0; do
        "$BFTKIT" finetune --model "$OUT/models/$QUANT_SHAPE" --data "$DATA" --out "$OUT/quant-$q" --overwrite \
            --loss bft --batch-size 8 --max-len 256 --max-steps 50 --seed 0 --device "$DEVICE" --dtype "$DTYPE" \
            --base-quant "$q" >/dev/null
    done
    "$PY" - "$OUT" "$QUANT_SHAPE" <<'EOF' | tee -a "$table"
import json, sys
out = sys.argv[1]
log = lambda q: [json.loads(l)["loss"] for l in open(f"{out}/quant-{q}/train_log.jsonl")]
a, b = log("dense"), log("q8_0")
rel = sum(abs(x - y) / abs(x) for x, y in zip(a, b)) / len(a)
print(f"\n{sys.argv[2]}, 50 steps, q8_0 base vs dense base: mean relative loss difference {rel:.2%} "
      f"({'within' if rel <= 0.02 else 'OVER'} 2%)")
EOF
fi
if has big; then
    IFS=: read -r bshape bquant bbatch blen <<<"${BIG:-llama3-70b:q4_k:4:512}"
    big="$OUT/models/$bshape-$bquant.gguf"
    if [ ! -f "$big" ]; then
        [ "${KEEP_MODELS:-0}" = 1 ] || find "$OUT/models" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
        "$PY" bench/make_random_gguf.py --shape "$bshape" --quant "$bquant" --tokenizer "$TOKENIZER" --out "$big"
    fi
    "$PY" bench/train_vs_peft.py --no-peer --bftkit "$BFTKIT" --device "$DEVICE" --dtype "$DTYPE" --model "$big" \
        --data "$DATA" --batch "$bbatch" --max-len "$blen" --steps 3 --label "$bshape $bquant base" \
        --bftkit-args="--base-quant auto --gradient-checkpointing" --out "$OUT/big" | tee "$OUT/big.log" || status=1
    grep -E "^\| $bshape" "$OUT/big.log" >>"$table" || echo "| $bshape $bquant base | failed | | | | | | |" >>"$table"
fi
echo; cat "$table"
exit $status
