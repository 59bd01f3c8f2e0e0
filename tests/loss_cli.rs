//! End-to-end tests of `bftkit loss`.

use assert_cmd::Command;
use predicates::str::contains;

fn loss(dir: &tempfile::TempDir, text: &str, extra: &[&str]) -> assert_cmd::assert::Assert {
    let p = dir.path().join("p.jsonl");
    std::fs::write(&p, text).unwrap();
    Command::cargo_bin("bftkit")
        .unwrap()
        .args(["loss", "--probs"])
        .arg(&p)
        .args(extra)
        .assert()
}

#[test]
fn reports_weights_per_sample_and_the_batch_loss() {
    let dir = tempfile::tempdir().unwrap();
    let out = loss(
        &dir,
        "{\"probs\": [0.9, 0.1, 0.9, 0.9]}\n\n{\"logprobs\": [-0.1, -0.2]}\n",
        &["--window", "2"],
    )
    .success()
    .get_output()
    .stdout
    .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["batch_size"], 2);
    assert_eq!(v["samples"][1]["line"], 3);
    let s0 = &v["samples"][0];
    assert!((s0["p_conf"].as_f64().unwrap() - 0.3).abs() < 1e-9);
    assert!((s0["sample_weight"].as_f64().unwrap() - 0.7).abs() < 1e-9);
    assert_eq!(s0["n"], 4);
    let total =
        v["samples"][0]["loss"].as_f64().unwrap() + v["samples"][1]["loss"].as_f64().unwrap();
    assert!((v["batch_loss"].as_f64().unwrap() - total / 2.0).abs() < 1e-12);
    // SFT weighs every sample and token by 1.
    let out = loss(&dir, "{\"probs\": [0.5, 0.25]}\n", &["--loss", "sft"])
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let want = 1.5 * std::f64::consts::LN_2;
    assert!((v["batch_loss"].as_f64().unwrap() - want).abs() < 1e-7);
}

#[test]
fn bad_lines_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    loss(&dir, "{\"probs\": [0.5]}\n{\"probs\": [1.5]}\n", &[])
        .failure()
        .stderr(contains("p.jsonl:2"))
        .stderr(contains("(0, 1]"));
    loss(&dir, "{\"probs\": [0.5]}\nnot json\n", &[])
        .failure()
        .stderr(contains("p.jsonl:2: not valid JSON"));
    loss(&dir, "{\"tokens\": [1]}\n", &[])
        .failure()
        .stderr(contains("p.jsonl:1"));
    loss(&dir, "{\"logprobs\": [0.2]}\n", &[])
        .failure()
        .stderr(contains("<= 0"));
    loss(&dir, "{\"probs\": [0.5]}\n", &["--window", "0"])
        .failure()
        .stderr(contains("--window"));
}
