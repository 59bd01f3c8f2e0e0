"""Host memory of loading a bf16 model for LoRA fine-tuning: bftkit's peak RSS at the moment it
reports the model loaded, against the size of the weights on disk (the goal: at most 1.2x), and
the peak over a one-step run (which adds the adapters, their gradients and AdamW moments).

RSS is read from /proc/PID/status every 10 ms; the "loaded" line is bftkit's own (stderr).
--baseline runs a second binary (e.g. an older build) the same way, for a before/after.

  python bench/make_random_decoder.py --shape qwen2-1.5b --tokenizer models/smollm2-tokenizer \\
      --out /tmp/rand-qwen2-1.5b --device cpu
  python bench/load_memory.py --model /tmp/rand-qwen2-1.5b --data train.jsonl [--baseline OLD_BINARY]
"""
import argparse
import os
import subprocess
import threading
import time


def weight_bytes(model):
    if os.path.isfile(model):
        return os.path.getsize(model)
    return sum(os.path.getsize(os.path.join(model, f)) for f in os.listdir(model)
               if f.endswith((".safetensors", ".gguf")))


def run(binary, model, data, out):
    cmd = [binary, "finetune", "--model", model, "--data", data, "--out", out, "--overwrite", "--dtype", "bf16",
           "--device", "cpu", "--max-steps", "1", "--batch-size", "1", "--max-len", "64", "--seed", "0"]
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    peak = [0]

    def poll():
        while p.poll() is None:
            try:
                with open(f"/proc/{p.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS"):
                            peak[0] = max(peak[0], int(line.split()[1]) * 1024)
            except OSError:
                pass
            time.sleep(0.01)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    at_load, lines = None, []
    for line in p.stderr:
        lines.append(line)
        if line.startswith("loaded "):
            at_load = peak[0]
    p.wait()
    t.join()
    if p.returncode != 0:
        raise SystemExit(f"{binary} failed:\n{''.join(lines)[-2000:]}")
    return at_load, peak[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bftkit", default="target/release/bftkit")
    ap.add_argument("--baseline", help="another bftkit binary, measured the same way")
    ap.add_argument("--model", required=True, help="a bf16 Hugging Face folder (or GGUF file)")
    ap.add_argument("--data", required=True, help="JSONL conversations")
    ap.add_argument("--out", default="bench/out/load_memory")
    a = ap.parse_args()
    size = weight_bytes(a.model)
    print(f"weights on disk: {size / 1e9:.2f} GB ({a.model})")
    print("| binary | peak RSS when loaded | ratio to weights | peak RSS, one step | ratio |")
    print("|---|---|---|---|---|")
    for name, binary in [("bftkit", a.bftkit), ("baseline", a.baseline)]:
        if not binary:
            continue
        at_load, peak = run(binary, a.model, a.data, os.path.join(a.out, name))
        load = f"{at_load / 1e9:.2f} GB | {at_load / size:.2f}x" if at_load else "(no 'loaded' line) |"
        print(f"| {name} | {load} | {peak / 1e9:.2f} GB | {peak / size:.2f}x |")


if __name__ == "__main__":
    main()
