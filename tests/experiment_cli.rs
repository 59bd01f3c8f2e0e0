//! The experiment end to end on the fixtures and tiny models: a suite with a base arm and a
//! BFT-tuned arm runs fine-tune → describe → embed → knowledge → probe → report; a second run
//! reuses every stage; a run interrupted during describe completes on rerun with the same
//! profiles as the uninterrupted run.

mod common;

use std::path::Path;

use bftkit::eval::arms::StageStatus;
use bftkit::pipeline::{run, RunRequest};

const SUITE: &str = r#"
name = "exp"
data = "fx/data"
seed = 3
tasks = ["dosage_sensitive_tfs", "bivalent_vs_no_methyl"]
umap = false

[experiment]
texts = "fx/data/gene_profiles/gene_profiles.tsv"
encoder = "fx/models/tiny-bert"
max_genes = 30
fidelity_genes = 6
eval_genes = 4
examples = 2

[experiment.describe]
max_new_tokens = 6
batch_size = 4

[experiment.knowledge]
benchmarks = ["mmlu", "pubmedqa"]
limit = 1

[[arms]]
name = "base"
model = "fx/models/tiny-qwen2"

[[arms]]
name = "bft"
model = "fx/models/tiny-qwen2"

[arms.finetune]
loss = "bft"
max_steps = 3
batch_size = 4
lr = 0.01
max_len = 48
eval_every = 1
save_every = 1
"#;

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    common::bftkit_in(dir.path())
        .args(["fixtures", "--out", "fx", "--models"])
        .assert()
        .success();
    std::fs::write(dir.path().join("suite.toml"), SUITE).unwrap();
    dir
}

fn request(dir: &Path, out: &str) -> RunRequest {
    RunRequest {
        config: Some(dir.join("suite.toml")),
        out: dir.join(out),
        ..RunRequest::default()
    }
}

fn statuses(out: &bftkit::pipeline::RunOutput) -> Vec<(String, StageStatus)> {
    let exp = out.report.runs[0].experiment.as_ref().unwrap();
    exp.stages
        .iter()
        .map(|s| (s.stage.clone(), s.status))
        .collect()
}

fn profiles(dir: &Path, out: &str, arm: &str) -> String {
    std::fs::read_to_string(
        dir.join(out)
            .join(format!("exp/stages/describe-{arm}/profiles.tsv")),
    )
    .unwrap()
}

#[test]
fn two_arms_run_end_to_end_are_reused_and_resume_after_an_interrupted_describe() {
    let dir = setup();
    let d = dir.path();
    let first = run(&request(d, "a").prepare().unwrap(), |_, _, _| {}).unwrap();
    let st = statuses(&first);
    let names: Vec<&str> = st.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "data",
            "embed-curated",
            "describe-base",
            "embed-base",
            "knowledge-base",
            "finetune-bft",
            "describe-bft",
            "embed-bft",
            "knowledge-bft",
            "probe"
        ]
    );
    assert!(st.iter().all(|(_, s)| *s == StageStatus::Ran), "{st:?}");
    let run0 = &first.report.runs[0];
    let exp = run0.experiment.as_ref().unwrap();
    // Both arms were probed beside the random baseline, on both tasks.
    for arm in ["base", "bft"] {
        let n = run0
            .probe
            .results
            .iter()
            .filter(|r| r.embedding_set == arm)
            .count();
        assert_eq!(n, 2, "{arm}");
    }
    let (base, bft) = (&exp.arms[0], &exp.arms[1]);
    assert!(base.finetune.is_none() && base.train.is_empty());
    assert_eq!(bft.train.len(), 3);
    // Held-out evaluation before training and after each step.
    assert_eq!(
        bft.eval.iter().map(|e| e.step).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert!(bft
        .finetune
        .as_deref()
        .unwrap()
        .starts_with("BFT loss, LoRA r16"));
    for a in [base, bft] {
        assert_eq!(a.describe.genes, exp.genes.described);
        assert_eq!(
            a.fidelity
                .iter()
                .map(|f| (f.genes.as_str(), f.n))
                .collect::<Vec<_>>(),
            [("seen", 6), ("held_out", 6)]
        );
        for f in &a.fidelity {
            assert!((-1.0..=1.0).contains(&f.cosine) && (0.0..=1.0).contains(&f.rouge_l));
        }
        let views: Vec<&str> = a.knowledge.iter().map(|k| k.name.as_str()).collect();
        assert!(
            views.contains(&"mmlu") && views.contains(&"pubmedqa"),
            "{views:?}"
        );
    }
    assert_eq!(exp.genes.kept, 30);
    assert_eq!(
        (exp.genes.fidelity_seen, exp.genes.fidelity_held_out),
        (6, 6)
    );
    assert_eq!(exp.examples.len(), 2);
    assert_eq!(exp.examples[0].genes, "held_out");
    assert_eq!(exp.examples[0].generated.len(), 2);
    // The report shows the arms, their curves and the stages.
    let html = std::fs::read_to_string(&first.index).unwrap();
    for want in [
        "Model arms",
        "Example profiles",
        "held-out CE",
        "stages reused",
    ] {
        assert!(html.contains(want), "{want}");
    }
    assert!(d.join("a/exp/curve_0_loss.png").is_file());
    assert!(d.join("a/exp/curve_0_heldout_p.png").is_file());

    // The same suite again: every stage reused, the same scores.
    let second = run(&request(d, "a").prepare().unwrap(), |_, _, _| {}).unwrap();
    assert!(
        statuses(&second)
            .iter()
            .all(|(_, s)| *s == StageStatus::Reused),
        "{:?}",
        statuses(&second)
    );
    // Every score, without the timings.
    fn untimed(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("runtime_s");
                m.values_mut().for_each(untimed);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(untimed),
            _ => {}
        }
    }
    let scores = |o: &bftkit::pipeline::RunOutput| {
        let mut v = serde_json::to_value(&o.report.runs[0].probe.results).unwrap();
        untimed(&mut v);
        v
    };
    assert!(scores(&first) == scores(&second), "scores differ");

    // Interrupted during the first describe; the rerun continues it and gets the same profiles.
    let mut cut = request(d, "b");
    cut.stop_after_profiles = Some(5);
    let err = run(&cut.prepare().unwrap(), |_, _, _| {}).err().unwrap();
    assert!(
        format!("{err:#}").contains("interrupted after 5 profiles"),
        "{err:#}"
    );
    let partial = d.join("b/exp/stages/describe-base/profiles.partial.tsv");
    assert_eq!(
        std::fs::read_to_string(&partial).unwrap().lines().count(),
        5
    );
    // A kill can cut the last line short: it is dropped and described again.
    let mut text = std::fs::read_to_string(&partial).unwrap();
    text.push_str("GENE9999\t1\t");
    std::fs::write(&partial, text).unwrap();
    let resumed = run(&request(d, "b").prepare().unwrap(), |_, _, _| {}).unwrap();
    let st = statuses(&resumed);
    assert_eq!(st[0], ("data".into(), StageStatus::Reused));
    assert_eq!(st[2], ("describe-base".into(), StageStatus::Resumed));
    assert_eq!(st[5], ("finetune-bft".into(), StageStatus::Ran));
    for arm in ["base", "bft"] {
        assert_eq!(profiles(d, "a", arm), profiles(d, "b", arm), "{arm}");
    }
    assert!(scores(&first) == scores(&resumed), "scores differ");

    // --fresh runs everything again.
    let fresh = RunRequest {
        fresh: true,
        ..request(d, "b")
    };
    let again = run(&fresh.prepare().unwrap(), |_, _, _| {}).unwrap();
    assert!(statuses(&again).iter().all(|(_, s)| *s == StageStatus::Ran));
}

/// A fine-tuning killed after a checkpoint resumes from it on rerun and ends with the same
/// adapters as the uninterrupted run.
#[test]
fn an_interrupted_fine_tuning_resumes_from_its_checkpoint() {
    let dir = setup();
    let d = dir.path();
    run(&request(d, "c").prepare().unwrap(), |_, _, _| {}).unwrap();
    let ft = d.join("c/exp/stages/finetune-bft");
    let adapters = std::fs::read(ft.join("adapter_model.safetensors")).unwrap();
    let log = std::fs::read_to_string(ft.join("train_log.jsonl")).unwrap();
    // What a kill after step 2's checkpoint leaves: no step 3, no outputs, the stage unfinished.
    std::fs::remove_dir_all(ft.join("checkpoint-3")).unwrap();
    for f in [
        "adapter_model.safetensors",
        "adapter_config.json",
        "finetune.json",
    ] {
        std::fs::remove_file(ft.join(f)).unwrap();
    }
    let two: Vec<&str> = log.lines().take(2).collect();
    std::fs::write(ft.join("train_log.jsonl"), two.join("\n") + "\n").unwrap();
    let stage = ft.join("stage.json");
    let text = std::fs::read_to_string(&stage).unwrap();
    std::fs::write(
        &stage,
        text.replace("\"complete\": true", "\"complete\": false"),
    )
    .unwrap();
    let again = run(&request(d, "c").prepare().unwrap(), |_, _, _| {}).unwrap();
    let st = statuses(&again);
    assert_eq!(st[5], ("finetune-bft".into(), StageStatus::Resumed));
    // Its key is unchanged, so what follows it is reused.
    assert_eq!(st[6], ("describe-bft".into(), StageStatus::Reused));
    assert_eq!(
        std::fs::read(ft.join("adapter_model.safetensors")).unwrap(),
        adapters
    );
    let steps = |t: &str| -> Vec<f64> {
        t.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                    .as_f64()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(
        steps(&std::fs::read_to_string(ft.join("train_log.jsonl")).unwrap()),
        steps(&log)
    );
}

#[test]
fn a_suite_with_arms_but_no_experiment_section_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let suite = "[[arms]]\nname = \"a\"\nmodel = \"m\"\n";
    std::fs::write(dir.path().join("s.toml"), suite).unwrap();
    common::bftkit_in(dir.path())
        .args(["run", "--config", "s.toml"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("no [experiment] section"));
    let bad = "[[arms]]\nname = \"a\"\nmodel = \"m\"\nepochs = 3\n";
    std::fs::write(dir.path().join("s.toml"), bad).unwrap();
    common::bftkit_in(dir.path())
        .args(["run", "--config", "s.toml"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("epochs"));
}
