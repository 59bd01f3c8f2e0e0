"""Markdown table of `bftkit probe` results (one or more JSON files) beside the tasks' published
reference numbers: mean ROC-AUC ± sd per task and embedding set, with coverage.

usage: python3 bench/results_table.py results_a.json [results_b.json ...]
"""
import json
import sys


def main(paths):
    rows, sets, refs, cover = {}, [], {}, {}
    for p in paths:
        report = json.load(open(p))
        real = [e["name"] for e in report["embedding_sets"] if e["name"] != "random"]
        for r in report["results"]:
            name = r["embedding_set"]
            if name == "random":
                name = f"random N(0,1) like {real[0]}"
            if name not in sets:
                sets.append(name)
            s = r["scores"]["roc_auc"]
            rows.setdefault(r["task"], {})[name] = f"{s['mean']:.3f} ± {s['sd']:.3f}"
            c = r["coverage"]
            total = c["positive_total"] + c["negative_total"]
            matched = c["positive_matched"] + c["negative_matched"]
            cover.setdefault(r["task"], {})[name] = f"{100 * matched / max(total, 1):.0f}%"
            refs[r["task"]] = "; ".join(f"{x['name']} {x['value']:.3f}" for x in r["references"][:2])
        for s in report.get("skipped", []):
            rows.setdefault(s["task"], {})
    print("| task | " + " | ".join(f"{s} (coverage)" for s in sets) + " | published |")
    print("|---|" + "---|" * (len(sets) + 1))
    for task in sorted(rows):
        cells = [f"{rows[task].get(s, 'skipped')} ({cover.get(task, {}).get(s, '-')})" for s in sets]
        print(f"| {task} | " + " | ".join(cells) + f" | {refs.get(task, '')} |")


if __name__ == "__main__":
    main(sys.argv[1:])
