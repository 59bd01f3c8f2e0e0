"""Markdown table of `bftkit probe` results (one or more JSON files) beside the tasks' published
reference numbers: each task's main metric (mean ± sd) per embedding set, with coverage.
Reads `bftkit probe --out` files and `bftkit run` results.json files.

usage: python3 bench/results_table.py results_a.json [results_b.json ...]
"""
import json
import sys


def main(paths):
    rows, sets, refs, cover = {}, [], {}, {}
    reports = []
    for p in paths:
        d = json.load(open(p))
        reports += [run["probe"] for run in d["runs"]] if "runs" in d else [d]
    for report in reports:
        real = [e["name"] for e in report["embedding_sets"] if e["name"] != "random"]
        for r in report["results"]:
            name = r["embedding_set"]
            if name == "random":
                name = f"random N(0,1) like {real[0]}"
            if name not in sets:
                sets.append(name)
            metric = r["main_metric"]
            s = r.get("extra", {}).get(metric) or r["scores"][metric]
            rows.setdefault((r["task"], metric), {})[name] = f"{s['mean']:.3f} ± {s['sd']:.3f}"
            c = r["coverage"]
            total = c["positive_total"] + c["negative_total"]
            matched = c["positive_matched"] + c["negative_matched"]
            cover.setdefault((r["task"], metric), {})[name] = f"{100 * matched / max(total, 1):.0f}%"
            refs[r["task"]] = "; ".join(f"{x['name']} {x['value']:.3f}" for x in r["references"][:2])
        for s in report.get("skipped", []):
            rows.setdefault((s["task"], ""), {})
    print("| task (metric) | " + " | ".join(f"{s} (coverage)" for s in sets) + " | published |")
    print("|---|" + "---|" * (len(sets) + 1))
    for key in sorted(rows):
        task, metric = key
        cells = [f"{rows[key].get(s, 'skipped')} ({cover.get(key, {}).get(s, '-')})" for s in sets]
        label = f"{task} ({metric})" if metric else task
        print(f"| {label} | " + " | ".join(cells) + f" | {refs.get(task, '')} |")


if __name__ == "__main__":
    main(sys.argv[1:])
