#!/usr/bin/env bash
# GPU checks for a CUDA build of bftkit, in one run (the device machine is lent by the minute):
#  1. tiny seeded Llama and Qwen2 (bftkit fixtures --models): 3 LoRA BFT steps on CPU f32 and on
#     the GPU in f32 must log the same losses (to 1e-4 relative), and in bf16 close ones; greedy
#     describe must write the same text on CPU and GPU (f32);
#  2. with a real model (MODEL, e.g. SmolLM2-135M GGUF) and chat data (DATA): the first step's
#     loss on CPU and GPU (f32), then scripts/gpu_smoke.sh (bf16 BFT fine-tune + describe,
#     tokens/s).
# Usage: scripts/gpu_check.sh BFTKIT_BINARY [MODEL] [DATA] [GENES]; writes logs to $OUT or a
# temporary folder. DEV (default cuda:0) can be set to cpu to dry-run the script without a GPU;
# TINY=" " skips part 1.
set -uo pipefail
BIN=$(realpath "$1")
MODEL=${2:-}
DATA=${3:-}
GENES=${4:-}
DEV=${DEV:-cuda:0}
OUT=${OUT:-$(mktemp -d)}
T=$(mktemp -d)
fail=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$BIN" fixtures --out "$T/fx" --models > /dev/null || exit 1
cat > "$T/train.jsonl" <<'EOF'
{"prompt": "the gene", "response": "is a kinase"}
{"prompt": "the protein", "response": "is a receptor in the membrane"}
{"prompt": "the factor", "response": "is a transcription factor"}
{"prompt": "the cell", "response": "cycle and dna repair"}
EOF
printf 'the\ngene\n' > "$T/genes.txt"

# Losses of two train_log.jsonl files agree to a relative tolerance.
same_losses() {
    python3 - "$1" "$2" "$3" <<'PY'
import json, sys
a = [json.loads(l)["loss"] for l in open(sys.argv[1])]
b = [json.loads(l)["loss"] for l in open(sys.argv[2])]
tol = float(sys.argv[3])
worst = max(abs(x - y) / max(abs(x), 1e-12) for x, y in zip(a, b))
ok = len(a) == len(b) and worst <= tol
print(f"  losses {[round(x, 6) for x in a]} vs {[round(x, 6) for x in b]}: "
      f"max rel diff {worst:.2e} (tol {tol:g}) {'OK' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
PY
}

for kind in ${TINY:-llama qwen2}; do
    m="$T/fx/models/tiny-$kind"
    echo "== tiny $kind: 3 BFT LoRA steps, CPU f32 vs $DEV f32 and bf16"
    for run in "cpu f32" "$DEV f32" "$DEV bf16"; do
        set -- $run
        "$BIN" finetune --model "$m" --data "$T/train.jsonl" --out "$T/ft-$kind-$1-$2" \
            --device "$1" --dtype "$2" --loss bft --max-steps 3 --epochs 2 --batch-size 2 --lr 0.02 \
            --seed 0 --lora-r 4 2> "$OUT/ft-$kind-$1-$2.err" || { echo "  $run failed:"; tail -5 "$OUT/ft-$kind-$1-$2.err"; fail=1; }
    done
    same_losses "$T/ft-$kind-cpu-f32/train_log.jsonl" "$T/ft-$kind-$DEV-f32/train_log.jsonl" 1e-4 || fail=1
    same_losses "$T/ft-$kind-cpu-f32/train_log.jsonl" "$T/ft-$kind-$DEV-bf16/train_log.jsonl" 5e-2 || fail=1
    echo "== tiny $kind: describe, CPU vs $DEV (f32, greedy)"
    for d in cpu "$DEV"; do
        "$BIN" describe "$T/genes.txt" --model "$m" --adapter "$T/ft-$kind-cpu-f32" --device "$d" \
            --dtype f32 --max-new-tokens 12 --out "$T/d-$kind-$d.tsv" 2> "$OUT/d-$kind-$d.err" || { echo "  describe on $d failed:"; tail -5 "$OUT/d-$kind-$d.err"; fail=1; }
    done
    if cmp -s "$T/d-$kind-cpu.tsv" "$T/d-$kind-$DEV.tsv"; then echo "  same text OK"; else echo "  texts differ FAIL"; diff "$T/d-$kind-cpu.tsv" "$T/d-$kind-$DEV.tsv"; fail=1; fi
done

if [ -n "$MODEL" ] && [ -e "$MODEL" ]; then
    echo "== real model $MODEL: first step on CPU f32 vs $DEV f32 (batch 4, max-len 128)"
    head -8 "$DATA" > "$T/real8.jsonl"
    for d in cpu "$DEV"; do
        "$BIN" finetune --model "$MODEL" --data "$T/real8.jsonl" --out "$T/real-$d" --device "$d" \
            --dtype f32 --loss bft --max-steps 1 --batch-size 4 --max-len 128 --seed 0 \
            2> "$OUT/real-$d.err" || { echo "  $d failed:"; tail -5 "$OUT/real-$d.err"; fail=1; }
    done
    same_losses "$T/real-cpu/train_log.jsonl" "$T/real-$DEV/train_log.jsonl" 1e-3 || fail=1
    echo "== real model: scripts/gpu_smoke.sh (bf16 BFT LoRA fine-tune + describe on $DEV)"
    OUT="$T/smoke" DATA="$DATA" GENES="$GENES" DEVICE="$DEV" \
        "$(dirname "$0")/gpu_smoke.sh" "$BIN" "$MODEL" "${STEPS:-30}" 2>&1 | grep -v '^\s*$' | tail -30 || fail=1
    cp "$T/smoke/ft/train_log.jsonl" "$OUT/smoke_train_log.jsonl" 2> /dev/null
    cp "$T/smoke/profiles.tsv" "$T/smoke/profiles.tsv.describe.json" "$OUT/" 2> /dev/null
else
    echo "== no real model given: skipped the SmolLM2 part"
fi
[ $fail = 0 ] && echo "ALL GPU CHECKS PASSED" || echo "SOME GPU CHECKS FAILED"
exit $fail
