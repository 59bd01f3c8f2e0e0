"""LoRA BFT training: bftkit against transformers + peft, same model, data, batches and loss.

Both tools train the same decoder with LoRA (r 16, alpha 32, all seven linear layers, no
dropout), the official BFT loss (token weight p, sample weight 1 - p_conf, window 256), AdamW
(lr 2e-4, betas 0.9/0.999, eps 1e-8, no weight decay), global-norm clipping at 1 and a cosine
schedule without warm-up, on the same conversations cut at --max-len. Batches: bftkit groups
samples of similar length (with --steps x --batch samples, one bucket: the length-sorted
samples in consecutive groups); the peer runs the samples bftkit's log names for each step, in
its order, and checks that their response-token counts are the ones bftkit logged. Each tool runs in its own
process, so peak memory is its own: host RSS (/usr/bin/time) on the CPU, nvidia-smi's
memory.used sampled every 0.1 s on a GPU.

Reported: response tokens per second of step time over steps 2..N (step 1 warms up), peak
memory, and the loss of every step of both tools (they must agree: 1e-2 relative at step 1).

  python bench/train_vs_peft.py --model models/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf \\
      --data reports/smollm2_cpu/stages/data/train.jsonl --batch 4 --max-len 256 --steps 10 --threads 2
  python bench/train_vs_peft.py --quick          # the tiny fixture model: a dry run in seconds
  python bench/train_vs_peft.py --device cuda --dtype bf16 --model DIR ...   # bench/gpu_vs_torch.sh

(venv: pip install torch transformers peft gguf accelerate numpy)
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


# ---- data: bftkit's rendering and truncation --------------------------------------------------
def render_chatml(messages):
    """(text, carries loss) pieces, as bftkit renders ChatML."""
    out = []
    for m in messages:
        learn = m["role"] == "assistant"
        out += [(f"<|im_start|>{m['role']}\n", False), (m["content"], learn), ("<|im_end|>", learn), ("\n", False)]
    return out


def tokenize(tok, pieces, max_len):
    ids, resp = [], []
    for text, learn in pieces:
        t = tok(text, add_special_tokens=False)["input_ids"]
        ids += t
        resp += [learn] * len(t)
    return ids[:max_len], resp[:max_len]


def response_count(sample):
    ids, resp = sample
    return sum(resp[1:])


def batches_in_bftkit_order(samples, log):
    """The samples of each step as bftkit's log names them; None when the log's response-token
    counts do not match this tokenisation (the two tools would not see the same tokens)."""
    out = [step["samples"] for step in log]
    if any(sum(response_count(samples[i]) for i in g) != step["tokens"] for g, step in zip(out, log)):
        return None
    return out


# ---- the peer: transformers + peft -------------------------------------------------------------
def official_confidence(logprobs, g):
    n = len(logprobs)
    if n == 0:
        return 0.0
    if n < g:
        m = sum(logprobs) / n
    else:
        s = sum(logprobs[:g])
        m = s
        for k in range(g, n):
            s += logprobs[k] - logprobs[k - g]
            m = min(m, s)
        m /= g
    return min(max(math.exp(m), 0.0), 1.0)


def bft_loss(logits, ids, resp, window=256):
    """The official BFT loss of a right-padded batch; logits (B, T, V) for inputs ids[:, :-1]."""
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)
    gold = logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)  # (B, T)
    mask = resp[:, 1:]
    total = 0.0
    b = ids.shape[0]
    for r in range(b):
        lp = gold[r][mask[r]]
        n = lp.shape[0]
        values = lp.detach().double().tolist()
        s = 1.0 - official_confidence(values, window)
        w = lp.detach().exp()
        total = total + s * (-(w * lp)).sum() / (n + 1e-8)
    return total / b


def peer(args):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    if args.model.endswith(".gguf"):
        folder, name = os.path.split(args.model)
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        sys.path.insert(0, HERE)
        from knowledge_vs_transformers import restore_digit_splitting

        restore_digit_splitting(tok, args.model)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype)
    else:
        tok = AutoTokenizer.from_pretrained(args.model)
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype)
    model.to(device)
    model.config.use_cache = False
    if args.peer_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=LORA_TARGETS,
                                             task_type="CAUSAL_LM"))
    for n, p in model.named_parameters():
        if p.requires_grad:
            p.data = p.data.float()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    work = json.load(open(args.work))
    samples, groups = work["samples"], work["groups"]
    total = len(groups)
    steps = []
    for k, g in enumerate(groups):
        lr = args.lr * 0.5 * (1 + math.cos(math.pi * k / total))
        for pg in opt.param_groups:
            pg["lr"] = lr
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        t = max(len(samples[i][0]) for i in g)
        ids = torch.zeros((len(g), t), dtype=torch.long)
        resp = torch.zeros((len(g), t), dtype=torch.bool)
        for r, i in enumerate(g):
            s_ids, s_resp = samples[i]
            ids[r, :len(s_ids)] = torch.tensor(s_ids)
            resp[r, :len(s_resp)] = torch.tensor(s_resp)
        ids, resp = ids.to(device), resp.to(device)
        logits = model(input_ids=ids[:, :-1]).logits
        loss = bft_loss(logits, ids, resp)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        tokens = int(resp[:, 1:].sum())
        steps.append({"step": k + 1, "loss": float(loss), "tokens": tokens, "seconds": dt})
    json.dump(steps, open(args.peer_out, "w"))


# ---- the driver ----------------------------------------------------------------------------------
class GpuPeak:
    """Highest nvidia-smi memory.used (MiB) while running."""

    def __init__(self):
        self.peak, self.stop = 0, False
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop:
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, check=True).stdout
                self.peak = max(self.peak, int(out.split()[0]))
            except (OSError, subprocess.CalledProcessError, ValueError, IndexError):
                pass
            time.sleep(0.1)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop = True
        self.thread.join()


def timed(cmd, env, gpu):
    """Runs cmd; returns (peak memory in GB, seconds): host RSS, or GPU memory when gpu."""
    t0 = time.perf_counter()
    if gpu:
        with GpuPeak() as g:
            r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        peak = g.peak / 1024
    else:
        r = subprocess.run(["/usr/bin/time", "-f", "PEAK_KIB %M"] + cmd, env=env, capture_output=True, text=True)
        peak = next((int(l.split()[1]) for l in r.stderr.splitlines() if l.startswith("PEAK_KIB")), 0) / 1024**2
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])} ... failed:\n{r.stderr[-3000:]}")
    return peak, time.perf_counter() - t0


def rate(steps):
    later = steps[1:] or steps
    return sum(s["tokens"] for s in later) / sum(s["seconds"] for s in later)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bftkit", default="target/release/bftkit")
    p.add_argument("--model")
    p.add_argument("--data")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--max-len", type=int, default=256)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    p.add_argument("--bftkit-args", default="", help="extra finetune flags (e.g. --gradient-checkpointing)")
    p.add_argument("--peer-checkpointing", action="store_true", help="the peer with gradient checkpointing")
    p.add_argument("--no-peer", action="store_true",
                   help="bftkit alone (a base the peer cannot load, e.g. a q4_k GGUF): its speed and peak memory")
    p.add_argument("--label", default=None)
    p.add_argument("--out", default=None)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--peer-out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.peer:
        return peer(args)
    out = common.quick_out(args) if args.quick or args.out is None else args.out
    os.makedirs(out, exist_ok=True)
    if args.quick:
        subprocess.run([args.bftkit, "fixtures", "--models", "--out", out], check=True, stdout=subprocess.DEVNULL)
        args.model = os.path.join(out, "models/tiny-llama.gguf")
        args.batch, args.max_len, args.steps = 2, 64, 3
        convs = [[{"role": "user", "content": f"tell me about gene G{i}."},
                  {"role": "assistant", "content": "a gene " * (3 + 2 * i)}] for i in range(args.batch * args.steps)]
    else:
        convs = [json.loads(l)["messages"] for l in open(args.data) if l.strip()]
    convs = convs[:args.batch * args.steps]
    data = os.path.join(out, "train.jsonl")
    with open(data, "w") as f:
        for c in convs:
            f.write(json.dumps({"messages": c}) + "\n")

    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    gpu = args.device == "cuda"
    run_dir = os.path.join(out, "bftkit")
    cmd = [args.bftkit, "finetune", "--model", args.model, "--data", data, "--out", run_dir, "--overwrite",
           "--loss", "bft", "--batch-size", str(args.batch), "--max-len", str(args.max_len),
           "--max-steps", str(args.steps), "--lr", str(args.lr), "--warmup-ratio", "0", "--seed", "0",
           "--device", args.device, "--dtype", args.dtype] + args.bftkit_args.split()
    b_peak, _ = timed(cmd, env, gpu)
    b_log = [json.loads(l) for l in open(os.path.join(run_dir, "train_log.jsonl"))]
    for s in b_log:
        s["seconds"] = s["tokens"] / s["tokens_per_s"]
    if args.no_peer:
        label = args.label or os.path.basename(args.model)
        mem = "peak GPU" if gpu else "peak RSS"
        json.dump({"label": label, "device": args.device, "dtype": args.dtype, "batch": args.batch,
                   "max_len": args.max_len, "steps": args.steps, "bftkit_args": args.bftkit_args,
                   "bftkit": {"tokens_per_s": rate(b_log), "peak_gb": b_peak, "losses": [s["loss"] for s in b_log]}},
                  open(os.path.join(out, "train_vs_peft.json"), "w"), indent=1)
        print(f"| model | batch x len | bftkit tokens/s | bftkit {mem} | peft tokens/s | peft {mem} | speed | memory |")
        print(f"| {label} {args.bftkit_args} | {args.batch} x {args.max_len} | {rate(b_log):,.0f} | {b_peak:.2f} GB | "
              f"not run | | | |")
        print("step losses, bftkit:", " ".join(f"{s['loss']:.5g}" for s in b_log))
        return

    from transformers import AutoTokenizer

    if args.model.endswith(".gguf"):
        folder, name = os.path.split(args.model)
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        from knowledge_vs_transformers import restore_digit_splitting

        restore_digit_splitting(tok, args.model)
    else:
        tok = AutoTokenizer.from_pretrained(args.model)
    samples = [tokenize(tok, render_chatml(c), args.max_len) for c in convs]
    groups = batches_in_bftkit_order(samples, b_log)
    same_order = groups is not None
    if not same_order:
        print("warning: the response-token counts of bftkit's batches differ from this tokenisation; "
              "the peer runs length-sorted groups", file=sys.stderr)
        order = sorted(range(len(samples)), key=lambda i: len(samples[i][0]))
        groups = [order[i:i + args.batch] for i in range(0, len(order), args.batch)]
    work = os.path.join(out, "work.json")
    json.dump({"samples": samples, "groups": groups}, open(work, "w"))
    peer_out = os.path.join(out, "peer.json")
    pcmd = [sys.executable, os.path.abspath(__file__), "--peer", "--work", work, "--peer-out", peer_out,
            "--model", args.model, "--threads", str(args.threads), "--device", args.device,
            "--dtype", args.dtype, "--lr", str(args.lr)] + (["--peer-checkpointing"] if args.peer_checkpointing else [])
    p_peak, _ = timed(pcmd, env, gpu)
    p_log = json.load(open(peer_out))

    b_rate, p_rate = rate(b_log), rate(p_log)
    rel = [abs(a["loss"] - b["loss"]) / max(abs(b["loss"]), 1e-12) for a, b in zip(b_log, p_log)]
    label = args.label or os.path.basename(args.model)
    result = {
        "label": label, "device": args.device, "dtype": args.dtype, "batch": args.batch, "max_len": args.max_len,
        "steps": args.steps, "threads": args.threads, "bftkit_args": args.bftkit_args,
        "same_batches": same_order,
        "bftkit": {"tokens_per_s": b_rate, "peak_gb": b_peak, "losses": [s["loss"] for s in b_log]},
        "peer": {"tokens_per_s": p_rate, "peak_gb": p_peak, "losses": [s["loss"] for s in p_log]},
        "speed_ratio": b_rate / p_rate, "memory_ratio": b_peak / max(p_peak, 1e-9),
        "step1_loss_rel_diff": rel[0] if rel else None, "max_loss_rel_diff": max(rel) if rel else None,
    }
    json.dump(result, open(os.path.join(out, "train_vs_peft.json"), "w"), indent=1)
    mem = "peak GPU" if gpu else "peak RSS"
    print(f"| model | batch x len | bftkit tokens/s | bftkit {mem} | peft tokens/s | peft {mem} | speed | memory |")
    print(f"| {label} {args.bftkit_args} | {args.batch} x {args.max_len} | {b_rate:,.0f} | {b_peak:.2f} GB | "
          f"{p_rate:,.0f} | {p_peak:.2f} GB | {b_rate / p_rate:.2f}x | {b_peak / max(p_peak, 1e-9):.2f}x |")
    print("step losses, bftkit:", " ".join(f"{s['loss']:.5g}" for s in b_log))
    print("step losses, peft:  ", " ".join(f"{s['loss']:.5g}" for s in p_log))
    ok = same_order and rel and rel[0] < 1e-2
    print(f"step-1 loss relative difference {rel[0]:.2e} ({'agree' if ok else 'DISAGREE'}); "
          f"largest over the steps {max(rel):.2e}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
