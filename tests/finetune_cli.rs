//! End-to-end tests of `bftkit finetune` on a tiny decoder the test writes itself.

mod common;

use predicates::prelude::*;
use predicates::str::contains;

fn setup(kind: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    common::tiny_model(dir.path(), kind);
    let lines: Vec<String> = [
        ("the gene", "is a kinase"),
        ("the protein", "is a receptor in the membrane"),
        ("the factor", "is a transcription factor"),
        ("the cell", "cycle and dna repair"),
        ("the pathway", "signal binding"),
        ("a gene", "tumor suppressor"),
    ]
    .iter()
    .map(|(p, r)| serde_json::json!({"prompt": p, "response": r}).to_string())
    .collect();
    std::fs::write(dir.path().join("train.jsonl"), lines.join("\n") + "\n").unwrap();
    dir
}

/// `bftkit finetune` on the test's model and data into `out`, with the test's batch size,
/// learning rate and epochs, seed 1 unless `extra` (space-separated options) gives one.
fn finetune(dir: &tempfile::TempDir, out: &str, extra: &str) -> assert_cmd::assert::Assert {
    let extra: Vec<&str> = extra.split_whitespace().collect();
    common::bftkit_in(dir.path())
        .args([
            "finetune",
            "--model",
            "model",
            "--data",
            "train.jsonl",
            "--out",
            out,
        ])
        .args(["--batch-size", "2", "--lr", "0.02", "--epochs", "4"])
        .args(if extra.contains(&"--seed") {
            &[][..]
        } else {
            &["--seed", "1"][..]
        })
        .args(extra)
        .assert()
}

fn log(dir: &tempfile::TempDir, out: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.path().join(out).join("train_log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn lora_bft_run_logs_steps_saves_peft_adapters_and_a_merged_model() {
    let dir = setup("qwen2");
    finetune(&dir, "run", "--loss bft --window 4 --merge --lora-r 4")
        .success()
        .stdout(contains("12 steps on 6 samples"));
    let steps = log(&dir, "run");
    assert_eq!(steps.len(), 12);
    // BFT's loss is weighted by p, so it rises as the model learns; check it is sane here and
    // check learning on the plain cross-entropy below.
    assert!(steps
        .iter()
        .all(|s| s["loss"].as_f64().unwrap().is_finite()));
    let sw = steps[0]["mean_sample_weight"].as_f64().unwrap();
    assert!(
        sw > 0.0 && sw < 1.0,
        "BFT sample weights lie in (0, 1): {sw}"
    );
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("run/adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (cfg["peft_type"].as_str(), cfg["r"].as_u64()),
        (Some("LORA"), Some(4))
    );
    let adapters = candle_core::safetensors::load(
        dir.path().join("run/adapter_model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    assert!(adapters.contains_key("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));
    // The merged folder is a plain model that embed reads.
    std::fs::write(
        dir.path().join("texts.json"),
        r#"{"TP53": "the tumor suppressor gene"}"#,
    )
    .unwrap();
    common::bftkit_in(dir.path())
        .args([
            "embed",
            "--texts",
            "texts.json",
            "--model",
            "run/merged",
            "--out",
            "e.tsv",
        ])
        .assert()
        .success()
        .stdout(contains("embedded 1 of 1 genes"));
}

#[test]
fn full_finetuning_and_sft_work_and_bad_data_names_the_line() {
    let dir = setup("llama");
    finetune(&dir, "full", "--full --loss sft").success();
    let steps = log(&dir, "full");
    assert_eq!(steps.len(), 12);
    let mean = |s: &[serde_json::Value]| {
        s.iter().map(|x| x["loss"].as_f64().unwrap()).sum::<f64>() / s.len() as f64
    };
    let (early, late) = (mean(&steps[..3]), mean(&steps[9..]));
    assert!(late < 0.8 * early, "SFT loss {early} -> {late}");
    finetune(&dir, "short", "--full --max-steps 3").success();
    assert_eq!(log(&dir, "short").len(), 3);
    assert!(dir.path().join("full/model.safetensors").is_file());
    assert!(dir.path().join("full/config.json").is_file());
    std::fs::write(dir.path().join("train.jsonl"), "{\"prompt\": \"x\"}\n").unwrap();
    finetune(&dir, "bad", "")
        .failure()
        .stderr(contains("train.jsonl:1"));
}

#[test]
fn resuming_from_a_checkpoint_continues_exactly() {
    let dir = setup("llama");
    // 6 samples, batches of 2, 4 epochs: 12 steps; seeded adapter dropout.
    let opts = "--save-every 3 --lora-r 4 --lora-dropout 0.1";
    finetune(&dir, "a", opts).success();
    // The same seed gives the same run, bit for bit (adapter init and dropout are seeded).
    finetune(&dir, "c", opts).success();
    let bytes = |p: &str| std::fs::read(dir.path().join(p)).unwrap();
    assert!(
        bytes("a/adapter_model.safetensors") == bytes("c/adapter_model.safetensors"),
        "two runs with the same seed differ"
    );
    finetune(&dir, "d", &format!("{opts} --seed 2")).success();
    assert!(
        bytes("a/adapter_model.safetensors") != bytes("d/adapter_model.safetensors"),
        "another seed gives the same run"
    );
    assert!(dir
        .path()
        .join("a/checkpoint-3/optimizer.safetensors")
        .is_file());
    assert!(dir
        .path()
        .join("a/checkpoint-12/weights.safetensors")
        .is_file());
    // A run interrupted after step 3: only its checkpoint and the log so far survive.
    let b = dir.path().join("b");
    std::fs::create_dir_all(b.join("checkpoint-3")).unwrap();
    for f in ["weights.safetensors", "optimizer.safetensors", "state.json"] {
        std::fs::copy(
            dir.path().join("a/checkpoint-3").join(f),
            b.join("checkpoint-3").join(f),
        )
        .unwrap();
    }
    let a_log = log(&dir, "a");
    let head: Vec<String> = a_log[..3].iter().map(|v| v.to_string()).collect();
    std::fs::write(b.join("train_log.jsonl"), head.join("\n") + "\n").unwrap();
    finetune(&dir, "b", &format!("{opts} --resume")).success();
    let b_log = log(&dir, "b");
    assert_eq!(b_log.len(), 12);
    for (x, y) in a_log.iter().zip(&b_log) {
        assert_eq!(x["step"], y["step"]);
        let (lx, ly) = (x["loss"].as_f64().unwrap(), y["loss"].as_f64().unwrap());
        assert!(
            (lx - ly).abs() <= 1e-6 * lx.abs().max(1.0),
            "step {}: {lx} vs {ly}",
            x["step"]
        );
    }
    let load = |p: &str| {
        candle_core::safetensors::load(dir.path().join(p), &candle_core::Device::Cpu).unwrap()
    };
    let (wa, wb) = (
        load("a/adapter_model.safetensors"),
        load("b/adapter_model.safetensors"),
    );
    for (name, t) in &wa {
        let d = (t - &wb[name])
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d < 1e-5, "{name}: {d}");
    }
    // Different settings are refused.
    finetune(
        &dir,
        "b",
        "--save-every 3 --lora-r 4 --lora-dropout 0.1 --max-grad-norm 0.5 --resume",
    )
    .failure()
    .stderr(contains("different settings"));
}

#[test]
fn a_previous_run_is_never_overwritten_or_resumed_by_mistake() {
    let dir = setup("llama");
    std::fs::write(
        dir.path().join("eval.jsonl"),
        "{\"prompt\": \"the gene\", \"response\": \"is a receptor\"}\n",
    )
    .unwrap();
    let opts = "--save-every 4 --lora-r 4 --max-steps 8 --eval-data eval.jsonl --eval-every 4";
    finetune(&dir, "run", opts).success();
    let run = dir.path().join("run");
    let before = std::fs::read(run.join("adapter_model.safetensors")).unwrap();
    // A second fresh run into the same folder is refused, and the first run's files survive.
    finetune(&dir, "run", opts)
        .failure()
        .stderr(contains("holds a previous run").and(contains("--overwrite")));
    assert_eq!(
        std::fs::read(run.join("adapter_model.safetensors")).unwrap(),
        before
    );
    assert!(run.join("checkpoint-8").is_dir());
    // --resume and --overwrite contradict each other.
    finetune(&dir, "run", &format!("{opts} --resume --overwrite"))
        .failure()
        .stderr(contains("--overwrite"));
    // A checkpoint is resumed only by the run that made it: other data, other settings.
    let data = dir.path().join("train.jsonl");
    let original = std::fs::read_to_string(&data).unwrap();
    std::fs::write(&data, original.replace("kinase", "phosphatase")).unwrap();
    finetune(&dir, "run", &format!("{opts} --resume"))
        .failure()
        .stderr(contains("different settings").and(contains("training data")));
    std::fs::write(&data, &original).unwrap();
    finetune(
        &dir,
        "run",
        &format!(
            "{} --resume",
            opts.replace("--max-steps 8", "--max-steps 12")
        ),
    )
    .failure()
    .stderr(contains("max_steps"));
    // Another base model under the same path.
    let model = dir.path().join("model");
    std::fs::rename(&model, dir.path().join("llama")).unwrap();
    common::tiny_model(dir.path(), "qwen2");
    finetune(&dir, "run", &format!("{opts} --resume"))
        .failure()
        .stderr(contains("the base model"));
    std::fs::remove_dir_all(&model).unwrap();
    std::fs::rename(dir.path().join("llama"), &model).unwrap();
    // The same run resumes from its newest checkpoint, whatever a kill left in its logs (a
    // partial last line, an evaluation missing); the report covers the whole run.
    std::fs::remove_dir_all(run.join("checkpoint-8")).unwrap();
    let eval_log = run.join("eval_log.jsonl");
    let evals = std::fs::read_to_string(&eval_log).unwrap();
    let without_step_4: String = evals
        .lines()
        .filter(|l| !l.contains("\"step\":4,"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(without_step_4, evals);
    std::fs::write(&eval_log, without_step_4).unwrap();
    let mut partial = std::fs::OpenOptions::new()
        .append(true)
        .open(run.join("train_log.jsonl"))
        .unwrap();
    std::io::Write::write_all(&mut partial, b"{\"step\": 9, \"loss").unwrap();
    drop(partial);
    finetune(&dir, "run", &format!("{opts} --resume")).success();
    assert_eq!(std::fs::read_to_string(&eval_log).unwrap(), evals);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("finetune.json")).unwrap()).unwrap();
    assert_eq!(report["steps"], 8);
    assert_eq!(report["resumed_from"], 4);
    assert_eq!(log(&dir, "run").len(), 8);
    assert_eq!(
        std::fs::read(run.join("adapter_model.safetensors")).unwrap(),
        before,
        "resuming at step 4 does not reproduce the run"
    );
    // --overwrite replaces the run: no stale checkpoint is left behind.
    finetune(&dir, "run", "--lora-r 4 --max-steps 2 --overwrite").success();
    assert!(!run.join("checkpoint-4").exists());
    assert!(!run.join("checkpoint-8").exists());
    assert_eq!(log(&dir, "run").len(), 2);
}

#[test]
fn weights_lists_the_samples_bft_emphasises() {
    let dir = setup("qwen2");
    let out = common::bftkit_in(dir.path())
        .args([
            "weights",
            "--model",
            "model",
            "--data",
            "train.jsonl",
            "--window",
            "4",
        ])
        .args(["--top", "3", "--out", "w.json"])
        .assert()
        .success()
        .stdout(contains("6 samples"))
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 2 + 3, "{text}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("w.json")).unwrap()).unwrap();
    let samples = v["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 6);
    assert!(samples.iter().all(|s| {
        let w = s["sample_weight"].as_f64().unwrap();
        s["n"].as_u64().unwrap() > 0 && w > 0.0 && w < 1.0
    }));
}

#[test]
fn held_out_evaluation_is_logged_before_during_and_after_training() {
    let dir = setup("llama");
    let opts = "--loss sft --max-steps 5 --eval-data train.jsonl";
    finetune(&dir, "e", &format!("{opts} --eval-every 2")).success();
    let evals: Vec<serde_json::Value> =
        std::fs::read_to_string(dir.path().join("e/eval_log.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let steps: Vec<u64> = evals.iter().map(|e| e["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, vec![0, 2, 4, 5]);
    let loss = |i: usize| evals[i]["loss"].as_f64().unwrap();
    let prob = |i: usize| evals[i]["mean_prob"].as_f64().unwrap();
    assert!(evals.iter().all(|e| e["samples"] == 6));
    // SFT on these very samples lowers their cross-entropy and raises their probability.
    assert!(loss(3) < loss(0), "{} -> {}", loss(0), loss(3));
    assert!(prob(3) > prob(0) && prob(0) > 0.0 && prob(3) < 1.0);
}

#[test]
fn describe_writes_profiles_that_embed_reads() {
    let dir = setup("qwen2");
    finetune(&dir, "a", "--lora-r 4 --max-steps 2").success();
    std::fs::write(dir.path().join("genes.txt"), "# genes\nTP53\nBRCA1\nCD4\n").unwrap();
    let run = |extra: &[&str]| {
        common::bftkit_in(dir.path())
            .args(["describe", "genes.txt", "--model", "model"])
            .args([
                "--out",
                "p.tsv",
                "--max-new-tokens",
                "6",
                "--batch-size",
                "2",
            ])
            .args(extra)
            .assert()
    };
    run(&["--adapter", "a"])
        .success()
        .stdout(contains("3 profiles"));
    let text = std::fs::read_to_string(dir.path().join("p.tsv")).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows[0], "symbol\tprofile");
    assert_eq!(rows.len(), 4);
    assert!(rows[1].starts_with("TP53\t") && rows[3].starts_with("CD4\t"));
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("p.tsv.describe.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["genes"], 3);
    assert_eq!(report["adapter"], "a");
    // Greedy decoding is deterministic.
    run(&["--adapter", "a"]).success();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("p.tsv")).unwrap(),
        text
    );
    // The profiles feed `bftkit embed` directly (here with the tiny decoder as the encoder).
    common::bftkit_in(dir.path())
        .args(["embed", "genes.txt", "--texts", "p.tsv", "--model", "model"])
        .args(["--out", "e.tsv"])
        .assert()
        .success();
    assert!(dir.path().join("e.tsv").is_file());
    // Adapters of another shape are refused with the file named.
    finetune(&dir, "big", "--lora-r 8 --max-steps 1").success();
    std::fs::copy(
        dir.path().join("big/adapter_model.safetensors"),
        dir.path().join("a/adapter_model.safetensors"),
    )
    .unwrap();
    run(&["--adapter", "a"])
        .failure()
        .stderr(contains("adapter_model.safetensors"));
}

#[test]
fn bf16_base_weights_train_f32_adapters_and_devices_are_checked() {
    let dir = setup("qwen2");
    let opts = "--loss bft --lora-r 4 --max-steps 6";
    finetune(&dir, "b16", &format!("{opts} --dtype bf16")).success();
    let steps = log(&dir, "b16");
    let losses: Vec<f64> = steps.iter().map(|s| s["loss"].as_f64().unwrap()).collect();
    assert!(losses.iter().all(|l| l.is_finite()));
    let adapters = candle_core::safetensors::load(
        dir.path().join("b16/adapter_model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    assert!(adapters
        .values()
        .all(|t| t.dtype() == candle_core::DType::F32));
    // The bf16 run follows the f32 run (same seed, same data): the first step differs only by
    // bf16 rounding of the forward pass; later steps drift a little.
    finetune(&dir, "f32", opts).success();
    let f32_losses: Vec<f64> = log(&dir, "f32")
        .iter()
        .map(|s| s["loss"].as_f64().unwrap())
        .collect();
    assert!(
        (losses[0] - f32_losses[0]).abs() < 0.01 * f32_losses[0],
        "{losses:?} vs {f32_losses:?}"
    );
    for (a, b) in losses.iter().zip(&f32_losses) {
        assert!((a - b).abs() < 0.15 * b, "bf16 {a} vs f32 {b}");
    }
    finetune(&dir, "x", "--full --dtype bf16")
        .failure()
        .stderr(contains("full fine-tuning keeps f32"));
    finetune(&dir, "x", "--device tpu")
        .failure()
        .stderr(contains("unknown device 'tpu'"));
    if !cfg!(feature = "cuda") {
        finetune(&dir, "x", "--device cuda:0")
            .failure()
            .stderr(contains("--features cuda"));
    }
}

#[test]
fn fixtures_models_writes_loadable_model_folders_and_a_gguf_file() {
    let dir = tempfile::tempdir().unwrap();
    common::bftkit_in(dir.path())
        .args(["fixtures", "--out", "fx", "--models"])
        .assert()
        .success()
        .stdout(contains("tiny seeded models"));
    for m in ["tiny-bert", "tiny-llama", "tiny-qwen2"] {
        for f in ["config.json", "model.safetensors", "tokenizer.json"] {
            assert!(
                dir.path().join("fx/models").join(m).join(f).is_file(),
                "{m}/{f}"
            );
        }
    }
    // The decoder folder and its GGUF file are real models: describe runs on them.
    std::fs::write(dir.path().join("genes.txt"), "the\n").unwrap();
    for model in ["fx/models/tiny-llama", "fx/models/tiny-llama.gguf"] {
        common::bftkit_in(dir.path())
            .args(["describe", "genes.txt", "--model", model])
            .args(["--max-new-tokens", "4", "--out", "p.tsv"])
            .assert()
            .success();
        assert!(std::fs::read_to_string(dir.path().join("p.tsv"))
            .unwrap()
            .starts_with("symbol\tprofile\nthe\t"));
    }
}

#[test]
fn settings_that_cannot_train_are_refused_before_anything_is_written() {
    let dir = setup("llama");
    finetune(&dir, "run", "--max-steps 2").success();
    let log = std::fs::read_to_string(dir.path().join("run/train_log.jsonl")).unwrap();
    for (bad, flag) in [
        ("--batch-size 0", "--batch-size"),
        ("--grad-accum 0", "--grad-accum"),
        ("--max-steps 0", "--max-steps"),
        ("--lr nan", "--lr"),
        ("--lr=-1", "--lr"),
        ("--warmup-ratio nan", "--warmup-ratio"),
        ("--max-grad-norm nan", "--max-grad-norm"),
    ] {
        finetune(&dir, "run", bad).failure().stderr(contains(flag));
        let now = std::fs::read_to_string(dir.path().join("run/train_log.jsonl")).unwrap();
        assert_eq!(now, log, "{bad} touched the previous run's log");
    }
}

#[test]
fn checkpointing_keeps_the_losses_and_a_quantised_base_is_checked() {
    let dir = setup("llama");
    let opts = "--loss bft --lora-r 4 --max-steps 3 --lora-dropout 0.1";
    finetune(&dir, "plain", opts).success();
    finetune(&dir, "ckpt", &format!("{opts} --gradient-checkpointing")).success();
    let losses = |name: &str| -> Vec<f64> {
        log(&dir, name)
            .iter()
            .map(|s| s["loss"].as_f64().unwrap())
            .collect()
    };
    let (a, b) = (losses("plain"), losses("ckpt"));
    assert_eq!(a.len(), 3);
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-6 * x.abs().max(1.0), "{a:?} vs {b:?}");
    }
    // The tiny model's layers take 16 inputs: no whole q4_k block of 256.
    finetune(&dir, "q", "--base-quant q4_k --max-steps 1")
        .failure()
        .stderr(contains("--base-quant"))
        .stderr(contains("model.layers.0.self_attn.q_proj"));
    finetune(&dir, "f", "--full --base-quant q8_0 --max-steps 1")
        .failure()
        .stderr(contains("full fine-tuning"));
}
