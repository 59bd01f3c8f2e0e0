"""Cross-check of `bftkit knowledge` against transformers (PyTorch, CPU, float32).

bftkit scores the model on the benchmark files and writes every question's label
log-probabilities. This script then reads the same files itself, writes each prompt itself
(lm-evaluation-harness's templates, written out independently of bftkit's code), loads the same
model with transformers (a GGUF file is dequantised by transformers' own reader, the tokenizer
rebuilt from the GGUF metadata by transformers), and scores every question bftkit scored the
harness's way: context and context+continuation tokenised without special tokens, the
continuation's tokens are the second's beyond the first's length, and a label's score is the
sum of its tokens' log-probabilities, each question alone (no padding). It reports

- how often the two pick the same label (the issue's bar: >= 99.5% of questions, differences
  explained by near-ties), and the near-ties among the disagreements;
- the largest absolute difference of label log-probabilities (bar: <= 1e-3 in float32) — the
  real test, since a 135M model picks "A" for most questions and agreement of choices alone
  proves little;
- each tool's accuracy per benchmark, and both wall times (bftkit's whole process; torch's
  scoring loop with the model loaded).

Exit status 1 when a bar is missed.

usage:
  bench/.venv-torch/bin/python bench/knowledge_vs_transformers.py --data ../shared/data \
      --model models/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf --limit 10
  bench/.venv-torch/bin/python bench/knowledge_vs_transformers.py --quick
(venv: pip install torch transformers gguf accelerate numpy)
"""
import argparse
import csv
import glob
import json
import os
import subprocess
import sys
import time

import common

LETTERS = ["A", "B", "C", "D"]
PUBMEDQA = ["yes", "no", "maybe"]


# ---- the benchmark files, read independently of bftkit ------------------------------------
def read_mmlu(data):
    """{id: (subject, question, options, answer)} with ids `subject:row` (1-based)."""
    out = {}
    for path in sorted(glob.glob(os.path.join(data, "mcq/mmlu_test/*_test.csv"))):
        subject = os.path.basename(path)[: -len("_test.csv")]
        with open(path, newline="") as f:
            for i, row in enumerate(csv.reader(f)):
                out[f"{subject}:{i + 1}"] = (subject, row[0], row[1:5], LETTERS.index(row[5].strip()))
    return out


def read_mmlu_dev(data):
    """{subject: [(question, options, answer)]} in file order."""
    out = {}
    for path in sorted(glob.glob(os.path.join(data, "mcq/mmlu_dev/*_dev.csv"))):
        subject = os.path.basename(path)[: -len("_dev.csv")]
        with open(path, newline="") as f:
            rows = list(csv.reader(f))[1:]
        out[subject] = [(r[0], r[1:5], int(r[5])) for r in rows]
    return out


def read_medqa(data):
    out = {}
    with open(os.path.join(data, "mcq/medqa_usmle/phrases_no_exclude_test.jsonl")) as f:
        for i, line in enumerate(f):
            if line.strip():
                v = json.loads(line)
                out[str(i + 1)] = (v["question"], [v["options"][k] for k in LETTERS], LETTERS.index(v["answer_idx"]))
    return out


def read_medmcqa(data):
    out = {}
    with open(os.path.join(data, "mcq/medmcqa/dev.json")) as f:
        for i, line in enumerate(f):
            if line.strip():
                v = json.loads(line)
                key = v.get("id", str(i + 1))
                out[key] = (v["question"], [v["opa"], v["opb"], v["opc"], v["opd"]], v["cop"] - 1)
    return out


def read_pubmedqa(data):
    d = os.path.join(data, "mcq/pubmedqa")
    everything = json.load(open(os.path.join(d, "ori_pqal.json")))
    truth = json.load(open(os.path.join(d, "test_ground_truth.json")))
    return {
        pmid: ("\n".join(everything[pmid]["CONTEXTS"]), everything[pmid]["QUESTION"], PUBMEDQA.index(label))
        for pmid, label in truth.items()
    }


# ---- the harness's prompts ------------------------------------------------------------------
def lettered(options):
    return "".join(f"{l}. {o}\n" for l, o in zip(LETTERS, options))


def mmlu_prompt(subject, question, options, shots):
    text = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
    for q, o, a in shots:
        text += f"{q.strip()}\n{lettered(o)}Answer: {LETTERS[a]}\n\n"
    return text + f"{question.strip()}\n{lettered(options)}Answer:"


def prompt_of(bench, qid, files, dev, shots):
    """(prompt, continuations, gold answer) of question `qid`."""
    conts = [" " + l for l in LETTERS]
    if bench == "mmlu":
        subject, q, o, a = files["mmlu"][qid]
        return mmlu_prompt(subject, q, o, dev.get(subject, [])[:shots]), conts, a
    if bench == "medqa":
        q, o, a = files["medqa"][qid]
        return f"Question: {q}\n{lettered(o)}Answer:", conts, a
    if bench == "medmcqa":
        q, o, a = files["medmcqa"][qid]
        return f"Question: {q}\nChoices:\n{lettered(o)}Answer:", conts, a
    context, q, a = files["pubmedqa"][qid]
    return f"Abstract: {context}\nQuestion: {q}\nAnswer:", [" " + l for l in PUBMEDQA], a


# ---- scoring with transformers --------------------------------------------------------------
def restore_digit_splitting(tok, path):
    """transformers (5.25) rebuilds a GGUF tokenizer with the plain GPT-2 byte-level
    pre-tokenizer whatever `tokenizer.ggml.pre` says. For `smollm` (also `starcoder`, `refact`)
    the model's own tokenizer (its tokenizer.json, and llama.cpp) first splits digits one by one,
    then applies the GPT-2 regex; without that step "\n\n3" becomes three tokens instead of two
    (measured: 1 of 550 tokens of an MMLU 5-shot prompt, moving a log-probability by 0.05).
    bftkit follows the model's tokenizer, so the reference must too: the step is put back."""
    import gguf
    from tokenizers import pre_tokenizers

    field = gguf.GGUFReader(path).fields.get("tokenizer.ggml.pre")
    pre = bytes(field.parts[field.data[0]]).decode() if field is not None else "default"
    if pre in ("smollm", "starcoder", "refact"):
        tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ])


def load_model(path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if path.endswith(".gguf"):
        folder, name = os.path.split(path)
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        restore_digit_splitting(tok, path)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    else:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    return tok, model


def score(tok, model, context, conts, max_len):
    """Each continuation's summed log-probability, the harness's way (left-cut to max_len)."""
    import torch

    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]
    ctx = enc(context)
    cont_toks = [enc(context + c)[len(ctx):] for c in conts]
    out = []
    single = all(len(c) == 1 for c in cont_toks)
    cache = None
    for c in cont_toks:
        whole = (ctx + c)[-(max_len + 1):]
        inp = whole[:-1]
        if single and cache is not None and cache[0] == inp:
            lsm = cache[1]
        else:
            with torch.no_grad():
                logits = model(torch.tensor([inp])).logits[0].float()
            lsm = torch.log_softmax(logits, dim=-1)
            cache = (inp, lsm)
        n = len(c)
        out.append(sum(lsm[len(inp) - n + j, t].item() for j, t in enumerate(c)))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bftkit", default="target/release/bftkit")
    p.add_argument("--model", help="GGUF file or Hugging Face folder")
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--bench", default="mmlu,medqa,medmcqa,pubmedqa")
    p.add_argument("--limit", type=int, default=10, help="questions per subject (bftkit --limit)")
    p.add_argument("--shots", type=int, default=0)
    p.add_argument("--max-len", type=int, default=2048)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--out", default=None)
    p.add_argument("--quick", action="store_true", help="the tiny fixture model on the fixtures")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    out = common.quick_out(args) if args.quick or args.out is None else args.out
    os.makedirs(out, exist_ok=True)
    if args.quick:
        subprocess.run([args.bftkit, "fixtures", "--models", "--out", out], check=True, stdout=subprocess.DEVNULL)
        args.model = os.path.join(out, "models/tiny-llama.gguf")
        args.data = os.path.join(out, "data")
        args.shots = 5

    report_path = os.path.join(out, "knowledge.json")
    t0 = time.perf_counter()
    cmd = [args.bftkit, "knowledge", "--model", args.model, "--data", args.data, "--bench", args.bench,
           "--shots", str(args.shots), "--limit", str(args.limit), "--max-len", str(args.max_len),
           "--out", report_path]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bftkit_s = time.perf_counter() - t0
    report = json.load(open(report_path))
    max_len = report["max_len"]

    readers = {"mmlu": read_mmlu, "medqa": read_medqa, "medmcqa": read_medmcqa, "pubmedqa": read_pubmedqa}
    benches = args.bench.split(",")
    files = {b: readers[b](args.data) for b in benches}
    dev = read_mmlu_dev(args.data) if args.shots and "mmlu" in benches else {}

    tok, model = load_model(args.model)
    t0 = time.perf_counter()
    rows, worst, worst_q = [], 0.0, None
    same, near_ties, answers_agree = 0, 0, 0
    per_bench = {}
    for q in report["questions"]:
        prompt, conts, gold = prompt_of(q["benchmark"], q["id"], files, dev, args.shots)
        ref = score(tok, model, prompt, conts, max_len)
        diff = max(abs(a - b) for a, b in zip(ref, q["logprobs"]))
        if diff > worst:
            worst, worst_q = diff, (q["benchmark"], q["id"])
        choice = max(range(len(ref)), key=lambda i: (ref[i], -i))
        same += choice == q["choice"]
        if choice != q["choice"]:
            top = sorted(ref, reverse=True)
            near_ties += top[0] - top[1] < 2 * max(diff, 1e-6)
        answers_agree += gold == q["answer"]
        b = per_bench.setdefault(q["benchmark"], [0, 0, 0])
        b[0] += 1
        b[1] += q["choice"] == q["answer"]
        b[2] += choice == gold
    torch_s = time.perf_counter() - t0

    n = len(report["questions"])
    print(f"model {args.model}; {n} questions ({args.bench}), {args.shots} shots, limit {args.limit} per subject, "
          f"max length {max_len}; torch {torch.__version__} ({args.threads} threads)")
    print()
    print("| benchmark | questions | bftkit accuracy | transformers accuracy |")
    print("|---|---|---|---|")
    for b, (k, cb, ct) in per_bench.items():
        print(f"| {b} | {k} | {cb / k:.4f} | {ct / k:.4f} |")
    print()
    print(f"gold answers read alike: {answers_agree}/{n}")
    print(f"same choice: {same}/{n} = {same / n:.4%} (disagreements that are near-ties: {near_ties}/{n - same})")
    print(f"largest |log-probability difference|: {worst:.2e} (question {worst_q})")
    print(f"wall time: bftkit {bftkit_s:.1f} s (whole process, model load included); "
          f"transformers {torch_s:.1f} s (scoring only, one question at a time)")
    ok = answers_agree == n and same >= 0.995 * n and worst <= 1e-3
    print("agreement:", "PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
