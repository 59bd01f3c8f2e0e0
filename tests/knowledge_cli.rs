//! End-to-end tests of `bftkit knowledge` on a tiny decoder and the built-in synthetic
//! benchmark files (every format, with malformed rows made by the test).

mod common;

use predicates::str::contains;

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    common::tiny_model(dir.path(), "llama");
    bftkit::fixtures::write(dir.path()).unwrap(); // dir/data/mcq/...
    dir
}

fn knowledge(dir: &tempfile::TempDir, out: &str, extra: &[&str]) -> assert_cmd::assert::Assert {
    common::bftkit_in(dir.path())
        .args([
            "knowledge",
            "--model",
            "model",
            "--data",
            "data",
            "--out",
            out,
        ])
        .args(extra)
        .assert()
}

fn read(dir: &tempfile::TempDir, out: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.path().join(out)).unwrap()).unwrap()
}

fn group<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == name)
        .unwrap_or_else(|| panic!("no group {name}"))
}

fn logprobs(report: &serde_json::Value) -> Vec<f64> {
    report["questions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|q| q["logprobs"].as_array().unwrap().clone())
        .map(|v| v.as_f64().unwrap())
        .collect()
}

#[test]
fn every_benchmark_is_scored_with_views_intervals_and_each_questions_logprobs() {
    let dir = setup();
    knowledge(&dir, "k.json", &["--shots", "5"])
        .success()
        .stdout(contains("mmlu_medical"))
        .stdout(contains("pubmedqa"));
    let r = read(&dir, "k.json");
    assert_eq!(r["shots"], 5);
    // The fixtures hold 4 questions per MMLU subject (anatomy is medical, astronomy is not),
    // and 4 for each other benchmark.
    for (name, n, chance) in [
        ("mmlu", 8, 0.25),
        ("medqa", 4, 0.25),
        ("medmcqa", 4, 0.25),
        ("pubmedqa", 4, 1.0 / 3.0),
        ("mmlu_medical", 4, 0.25),
        ("mmlu_other", 4, 0.25),
    ] {
        let g = group(&r, name);
        assert_eq!(g["overall"]["n"], n, "{name}");
        assert!((g["chance"].as_f64().unwrap() - chance).abs() < 1e-12);
        let acc = g["overall"]["accuracy"].as_f64().unwrap();
        let ci: Vec<f64> = serde_json::from_value(g["overall"]["ci95"].clone()).unwrap();
        assert!(ci[0] <= acc && acc <= ci[1] && ci[0] >= 0.0 && ci[1] <= 1.0);
    }
    assert!(group(&r, "mmlu_medical")["subjects"]["anatomy"].is_object());
    assert!(group(&r, "mmlu_other")["subjects"]["astronomy"].is_object());
    // Every question: one finite log-probability per label, the choice is their argmax, and
    // the accuracies count exactly these choices.
    let qs = r["questions"].as_array().unwrap();
    assert_eq!(qs.len(), 20);
    let mut correct = 0;
    for q in qs {
        let lp: Vec<f64> = serde_json::from_value(q["logprobs"].clone()).unwrap();
        let labels = if q["benchmark"] == "pubmedqa" { 3 } else { 4 };
        assert_eq!(lp.len(), labels);
        assert!(lp.iter().all(|v| v.is_finite() && *v < 0.0));
        let best = (0..lp.len()).fold(0, |b, i| if lp[i] > lp[b] { i } else { b });
        assert_eq!(q["choice"].as_u64().unwrap() as usize, best);
        correct += (q["choice"] == q["answer"]) as usize;
    }
    let total: u64 = ["mmlu", "medqa", "medmcqa", "pubmedqa"]
        .iter()
        .map(|g| group(&r, g)["overall"]["correct"].as_u64().unwrap())
        .sum();
    assert_eq!(total as usize, correct);
}

#[test]
fn scores_do_not_depend_on_batching_and_shots_limit_and_templates_change_the_prompt() {
    let dir = setup();
    knowledge(&dir, "b1.json", &["--batch-size", "1"]).success();
    knowledge(&dir, "b7.json", &["--batch-size", "7"]).success();
    let (a, b) = (
        logprobs(&read(&dir, "b1.json")),
        logprobs(&read(&dir, "b7.json")),
    );
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-4, "batch 1 vs 7: {x} vs {y}");
    }
    knowledge(&dir, "s5.json", &["--shots", "5", "--bench", "mmlu"]).success();
    let s5 = read(&dir, "s5.json");
    assert_ne!(
        logprobs(&s5),
        logprobs(&read(&dir, "b1.json"))[..16].to_vec()
    );
    // The tiny model has 64 positions: 5-shot prompts are cut on the left, and said to be.
    assert_eq!(s5["max_len"], 64);
    assert!(s5["truncated"].as_u64().unwrap() > 0);
    knowledge(&dir, "l1.json", &["--limit", "1", "--bench", "mmlu,medqa"]).success();
    let l1 = read(&dir, "l1.json");
    assert_eq!(group(&l1, "mmlu")["overall"]["n"], 2); // one per subject
    assert_eq!(group(&l1, "medqa")["overall"]["n"], 1);
    assert!(l1["groups"]
        .as_array()
        .unwrap()
        .iter()
        .all(|g| g["name"] != "pubmedqa"));
    knowledge(
        &dir,
        "chat.json",
        &["--chat-template", "chatml", "--bench", "pubmedqa"],
    )
    .success();
    let chat = read(&dir, "chat.json");
    assert_eq!(chat["template"], "chatml");
    assert_ne!(
        logprobs(&chat),
        logprobs(&read(&dir, "b1.json"))[16..].to_vec()
    );
}

#[test]
fn adapters_change_the_scores() {
    let dir = setup();
    let lines: Vec<String> = (0..6)
        .map(|i| {
            serde_json::json!({"prompt": format!("the gene {i}"), "response": "is a kinase"})
                .to_string()
        })
        .collect();
    std::fs::write(dir.path().join("train.jsonl"), lines.join("\n") + "\n").unwrap();
    common::bftkit_in(dir.path())
        .args([
            "finetune",
            "--model",
            "model",
            "--data",
            "train.jsonl",
            "--out",
            "run",
        ])
        .args([
            "--batch-size",
            "2",
            "--lr",
            "0.05",
            "--epochs",
            "2",
            "--seed",
            "1",
        ])
        .assert()
        .success();
    knowledge(&dir, "base.json", &["--bench", "medqa"]).success();
    knowledge(
        &dir,
        "tuned.json",
        &["--bench", "medqa", "--adapter", "run"],
    )
    .success();
    let (base, tuned) = (read(&dir, "base.json"), read(&dir, "tuned.json"));
    assert!(tuned["adapter"].as_str().unwrap().ends_with("run"));
    let diff = logprobs(&base)
        .iter()
        .zip(logprobs(&tuned))
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(
        diff > 1e-3,
        "the adapters left every score as it was: {diff}"
    );
}

#[test]
fn malformed_files_and_settings_are_refused_with_file_and_line() {
    let dir = setup();
    let mcq = dir.path().join("data/mcq");
    // A MedQA row without its answer.
    let path = mcq.join("medqa_usmle/phrases_no_exclude_test.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[2] = r#"{"question": "Which?", "options": {"A": "a", "B": "b", "C": "c", "D": "d"}}"#;
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    knowledge(&dir, "k.json", &["--bench", "medqa"])
        .failure()
        .stderr(contains("phrases_no_exclude_test.jsonl:3"));
    // An MMLU row with three options.
    std::fs::write(mcq.join("mmlu_test/anatomy_test.csv"), "What?,a,b,c,A\n").unwrap();
    knowledge(&dir, "k.json", &["--bench", "mmlu"])
        .failure()
        .stderr(contains("anatomy_test.csv:1"));
    // A MedMCQA answer outside 1-4.
    let path = mcq.join("medmcqa/dev.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let first = text.lines().next().unwrap();
    let mut row: serde_json::Value = serde_json::from_str(first).unwrap();
    row["cop"] = 7.into();
    std::fs::write(&path, row.to_string() + "\n").unwrap();
    knowledge(&dir, "k.json", &["--bench", "medmcqa"])
        .failure()
        .stderr(contains("dev.json:1"));
    knowledge(&dir, "k.json", &["--bench", "pubmedqa", "--shots", "6"])
        .failure()
        .stderr(contains("--shots 6"));
    assert!(!dir.path().join("k.json").exists());
    // A missing benchmark folder is named.
    std::fs::remove_dir_all(mcq.join("pubmedqa")).unwrap();
    knowledge(&dir, "k.json", &["--bench", "pubmedqa"])
        .failure()
        .stderr(contains("pubmedqa"));
}
