//! End-to-end tests of `bftkit probe` and `bftkit tasks` on the project's own synthetic fixtures
//! (planted signal), through the real binary and the real task files.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn bftkit() -> Command {
    let mut c = Command::cargo_bin("bftkit").unwrap();
    c.env_remove("BFTKIT_DATA");
    c
}

fn probe_json(extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.json");
    let fx = fixtures();
    bftkit()
        .args(["probe", "--task", "all", "--data"])
        .arg(fx.join("data"))
        .arg("--embeddings")
        .arg(fx.join("embeddings.tsv"))
        .arg("--out")
        .arg(&out)
        .args(extra)
        .assert()
        .success();
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

fn auc(r: &Value) -> f64 {
    r["scores"]["roc_auc"]["mean"].as_f64().unwrap()
}

#[test]
fn planted_signal_scores_high_and_random_baseline_near_chance() {
    let v = probe_json(&["--baseline", "random", "--seed", "3"]);
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2 * 21, "21 tasks x 2 embedding sets");
    let mut random = Vec::new();
    for r in results
        .iter()
        .filter(|r| r["group"] == "gene" || r["group"] == "pair")
    {
        match r["embedding_set"].as_str().unwrap() {
            "embeddings" => assert!(auc(r) > 0.9, "{}: {}", r["task"], auc(r)),
            "random" => random.push(auc(r)),
            other => panic!("unexpected set {other}"),
        }
        assert!(r["scores"]["all_converged"].as_bool().unwrap());
        let folds = r["scores"]["folds"].as_array().unwrap();
        assert_eq!(folds.len(), r["n_folds"].as_u64().unwrap() as usize);
    }
    // The perturbation screens from one h5ad: the planted set's neighbours predict the response,
    // random neighbours do not; doubles are scored against the sum of their singles.
    let result = |task: &str, set: &str| {
        results
            .iter()
            .find(|r| r["task"] == task && r["embedding_set"] == set)
            .unwrap_or_else(|| panic!("{task} on {set}"))
            .clone()
    };
    let extra = |r: &Value, k: &str| r["extra"][k]["mean"].as_f64().unwrap_or(f64::NAN);
    for task in [
        "perturbation_norman2019_singles",
        "perturbation_mcfaline2023",
    ] {
        let (p, q) = (result(task, "embeddings"), result(task, "random"));
        assert!(
            extra(&p, "pearson_delta") > extra(&q, "pearson_delta") + 0.2
                && extra(&p, "pearson_delta") > extra(&p, "mean_baseline_pearson_delta"),
            "{task}: {} vs {}",
            p["extra"],
            q["extra"]
        );
    }
    let singles = result("perturbation_norman2019_singles", "embeddings");
    let protocol = singles["protocol"].as_str().unwrap();
    assert!(
        protocol.contains("over 13 targets (12 with an embedding; 40 control cells)"),
        "{protocol}"
    );
    assert!(
        protocol.contains("under 20 cells left out: GENE0212; 9 combinations left out"),
        "{protocol}"
    );
    assert_eq!(singles["coverage"]["missing_genes"][0], "GENE0390");
    let lines = result("perturbation_mcfaline2023", "embeddings");
    assert!(lines["protocol"]
        .as_str()
        .unwrap()
        .contains("A172 (8 perturbations, 40 controls)"));
    assert!(extra(&lines, "U87MG.pearson_delta").is_finite());
    let doubles = result("perturbation_norman2019_doubles", "embeddings");
    let protocol = doubles["protocol"].as_str().unwrap();
    assert!(
        protocol.contains("over 9 combinations (8 with every gene embedded)"),
        "{protocol}"
    );
    assert!(protocol.contains("from norman_gi/GI_scores_truth.csv: neomorphic 2, redundant 1, suppressor 1, synergy 4"), "{protocol}");
    assert!(
        extra(&doubles, "additive_pearson_delta") > 0.95,
        "planted doubles are near-additive"
    );
    assert!(extra(&doubles, "pearson_delta") > extra(&doubles, "mean_baseline_pearson_delta"));
    assert!(extra(&doubles, "gi.synergy.additive_mse").is_finite());
    assert_eq!(doubles["coverage"]["missing_genes"][0], "GENE0390+GENE0201");
    let mean = random.iter().sum::<f64>() / random.len() as f64;
    assert!((0.4..0.6).contains(&mean), "random mean AUC {mean}");
    assert!(random.iter().all(|&a| a < 0.75), "{random:?}");
    assert_eq!(v["seed"], 3);
    assert_eq!(v["embedding_sets"][0]["sha256"].as_str().unwrap().len(), 64);
    assert!(v["bftkit_version"].is_string());
    // The cell task: planted types are recovered from GenePT-w vectors; the random set's cell
    // vectors are a random projection of the expression, so they keep some of the signal.
    let cell = |set: &str| {
        results
            .iter()
            .find(|r| r["group"] == "cell" && r["embedding_set"] == set)
            .unwrap()
            .clone()
    };
    // The integration task: the gating rule finds the planted types and leaves out the cells
    // planted without a type or with two; every scIB metric lies in [0, 1]; the planted set
    // integrates the two modalities better than the random one.
    let integration = |set: &str| {
        results
            .iter()
            .find(|r| r["task"] == "integration_citeseq_eccite" && r["embedding_set"] == set)
            .unwrap()
            .clone()
    };
    let (pi, ri) = (integration("embeddings"), integration("random"));
    let protocol = pi["protocol"].as_str().unwrap();
    assert!(
        protocol.contains("B 16, CD4 T 16, CD8 T 16, NK 16, myeloid 16")
            && protocol.contains("unassigned: 4 of no type, 2 of several"),
        "{protocol}"
    );
    assert_eq!(pi["n_positive"], 80);
    // The labelled CITE-seq task takes the published types from obs.
    let bmmc = results
        .iter()
        .find(|r| r["task"] == "integration_citeseq_bmmc" && r["embedding_set"] == "embeddings")
        .unwrap();
    let protocol = bmmc["protocol"].as_str().unwrap();
    assert!(
        protocol.contains("labelled by the published obs column 'cell_type' into 4 (B 15, CD14+ Mono 15, CD8+ T 15, NK 15)"),
        "{protocol}"
    );
    assert!(
        protocol.contains("the metrics again with obs 'batch' (s1d1, s1d2) as batch"),
        "{protocol}"
    );
    // Every metric twice: with modality as batch, and with the sequencing batch.
    let extra = bmmc["extra"].as_object().unwrap();
    assert_eq!(extra.len(), 28, "{extra:?}");
    let bio = |k: &str| extra[k]["mean"].as_f64().unwrap();
    assert_eq!(
        bio("kmeans_ari"),
        bio("batch.kmeans_ari"),
        "labels are the same"
    );
    assert!(
        bio("batch.ilisi") > bio("ilisi"),
        "sequencing batches mix, modalities less"
    );
    for r in [&pi, &ri] {
        let extra = r["extra"].as_object().unwrap();
        assert_eq!(extra.len(), 14, "{extra:?}");
        for (k, v) in extra {
            let m = v["mean"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&m), "{k} = {m}");
        }
    }
    let total = |r: &Value| r["extra"]["total"]["mean"].as_f64().unwrap();
    assert!(total(&pi) > total(&ri), "{} vs {}", total(&pi), total(&ri));
    let (planted, random) = (cell("embeddings"), cell("random"));
    let acc = |r: &Value| r["scores"]["accuracy"]["mean"].as_f64().unwrap();
    assert!(acc(&planted) > 0.95, "{}", acc(&planted));
    assert!(acc(&random) < acc(&planted));
    for k in [
        "knn10_accuracy",
        "knn10_macro_f1",
        "kmeans_ari",
        "kmeans_nmi",
    ] {
        assert!(planted["extra"][k]["mean"].as_f64().unwrap() > 0.9, "{k}");
    }
    let cov = &planted["cell_coverage"];
    assert_eq!(
        (cov["genes_total"].as_u64(), cov["genes_matched"].as_u64()),
        (Some(150), Some(140))
    );
    assert!(cov["mass_fraction"].as_f64().unwrap() < 1.0);
    assert_eq!(planted["n_positive"], 80);
    // The perturbation task: neighbours in the planted space predict the held-out responses
    // better than the mean-perturbation baseline and than random embeddings.
    let pert = |set: &str| {
        results
            .iter()
            .find(|r| r["task"] == "perturbation_papalexi2021" && r["embedding_set"] == set)
            .unwrap()
            .clone()
    };
    let (p, q) = (pert("embeddings"), pert("random"));
    let m = |r: &Value, k: &str| r["extra"][k]["mean"].as_f64().unwrap();
    assert!(p.get("scores").is_none());
    assert!(m(&p, "pearson_delta") > m(&p, "mean_baseline_pearson_delta") + 0.2);
    assert!(m(&p, "pearson_delta") > m(&q, "pearson_delta") + 0.2);
    assert!(m(&p, "mse") < m(&p, "no_change_mse"));
    assert_eq!(p["n_positive"], 8);
}

#[test]
fn coverage_conflicts_and_protocols_are_reported() {
    let v = probe_json(&[]);
    let by_task = |name: &str| {
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["task"] == name)
            .unwrap()
            .clone()
    };
    // Gene tasks: 120 genes, one listed in both classes (dropped), some without embeddings.
    let r = by_task("dosage_sensitive_tfs");
    let c = &r["coverage"];
    assert_eq!(c["conflicts_dropped"], 1);
    let total = c["positive_total"].as_u64().unwrap() + c["negative_total"].as_u64().unwrap();
    assert_eq!(total, 119);
    let matched = c["positive_matched"].as_u64().unwrap() + c["negative_matched"].as_u64().unwrap();
    assert_eq!(
        matched,
        r["n_positive"].as_u64().unwrap() + r["n_negative"].as_u64().unwrap()
    );
    assert_eq!(
        total - matched,
        c["missing_genes"].as_array().unwrap().len() as u64
    );
    assert!(
        matched < total,
        "fixture genes without embeddings are counted as missing"
    );
    assert_eq!(r["n_folds"], 5);
    // Fixed split: one fold trained on train_text, tested on test_text.
    let r = by_task("ggi_gene2vec");
    assert_eq!(r["n_folds"], 1);
    assert_eq!(r["protocol"], "fixed train/test split");
    // Published folds: blank fold rows excluded and counted (every 20th of 600).
    let r = by_task("sl_pairs");
    assert_eq!(r["n_folds"], 3);
    assert_eq!(r["coverage"]["outside_folds"], 30);
    // PPI pairs with an unmapped protein (blank symbol) count as not matched.
    let r = by_task("ppi_pan");
    assert!(r["coverage"]["positive_matched"].as_u64() < r["coverage"]["positive_total"].as_u64());
}

#[test]
fn results_are_reproducible_for_a_seed() {
    let strip = |mut v: Value| {
        v["runtime_s"] = Value::Null;
        v["command"] = Value::Null;
        for r in v["results"].as_array_mut().unwrap() {
            r["scores"]["runtime_s"] = Value::Null;
        }
        v
    };
    let a = strip(probe_json(&["--seed", "11", "--baseline", "random"]));
    let b = strip(probe_json(&["--seed", "11", "--baseline", "random"]));
    assert_eq!(a, b);
    let c = strip(probe_json(&["--seed", "12", "--baseline", "random"]));
    assert_ne!(
        a["results"], c["results"],
        "the seed changes folds and the random baseline"
    );
}

#[test]
fn pair_features_and_fold_override() {
    for feature in ["concat", "product"] {
        let v = probe_json(&["--pair-feature", feature, "--folds", "3"]);
        for r in v["results"].as_array().unwrap() {
            if r["group"] == "pair" {
                assert_eq!(r["pair_feature"], feature);
            } else if r["group"] != "perturbation" && r["group"] != "integration" {
                // (perturbation tasks leave one target out: one fold per target; integration
                // has no folds)
                assert_eq!(r["n_folds"], 3);
            }
        }
    }
}

#[test]
fn default_run_uses_builtin_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    bftkit()
        .current_dir(dir.path())
        .args(["probe", "--task", "dosage_sensitive_tfs,ggi_gene2vec"])
        .assert()
        .success()
        .stderr(predicates::str::contains("built-in synthetic fixtures"))
        .stdout(predicates::str::contains("dosage_sensitive_tfs"));
}

#[test]
fn tasks_lists_every_task_with_data_status() {
    let dir = tempfile::tempdir().unwrap();
    bftkit()
        .args(["tasks", "--data"])
        .arg(dir.path())
        .assert()
        .success()
        .stdout(predicates::str::contains("ggi_gene2vec"))
        .stdout(predicates::str::contains("missing"));
}

#[test]
fn bad_inputs_fail_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let fx = fixtures();
    let bad = dir.path().join("bad.tsv");
    std::fs::write(&bad, "GENE0001\t1\t2\nGENE0002\t1\n").unwrap();
    bftkit()
        .args(["probe", "--task", "n1_network", "--data"])
        .arg(fx.join("data"))
        .arg("--embeddings")
        .arg(&bad)
        .assert()
        .failure()
        .stderr(predicates::str::contains("bad.tsv:2"));
    bftkit()
        .args(["probe", "--task", "no_such_task", "--data"])
        .arg(fx.join("data"))
        .arg("--embeddings")
        .arg(fx.join("embeddings.tsv"))
        .assert()
        .failure()
        .stderr(predicates::str::contains("known tasks"));
    // A named task whose data is absent is an error (with `all` it is skipped and listed).
    bftkit()
        .args(["probe", "--task", "n1_network", "--data"])
        .arg(dir.path())
        .arg("--embeddings")
        .arg(fx.join("embeddings.tsv"))
        .assert()
        .failure()
        .stderr(predicates::str::contains("data not found"));
    // Labels outside the task's classes name the line.
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("geneformer_gene_labels")).unwrap();
    std::fs::write(
        data.join("geneformer_gene_labels/41467_2020_16106_MOESM4_ESM.csv"),
        ",assignment\nGENE0001,long-range TF\nGENE0002,medium-range TF\n",
    )
    .unwrap();
    bftkit()
        .args(["probe", "--task", "tf_range_chen2020", "--data"])
        .arg(&data)
        .arg("--embeddings")
        .arg(fx.join("embeddings.tsv"))
        .assert()
        .failure()
        .stderr(predicates::str::contains(
            "41467_2020_16106_MOESM4_ESM.csv:3",
        ))
        .stderr(predicates::str::contains("'medium-range TF'"));
}

#[test]
fn tasks_with_too_few_matched_genes_are_skipped_under_all() {
    let dir = tempfile::tempdir().unwrap();
    let fx = fixtures();
    // Keep only 30 genes: the gene tasks lose most examples.
    let text = std::fs::read_to_string(fx.join("embeddings.tsv")).unwrap();
    let few: String = text.lines().take(31).map(|l| format!("{l}\n")).collect();
    let emb = dir.path().join("few.tsv");
    std::fs::write(&emb, few).unwrap();
    let out = dir.path().join("r.json");
    bftkit()
        .args(["probe", "--task", "all", "--data"])
        .arg(fx.join("data"))
        .arg("--embeddings")
        .arg(&emb)
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stdout(predicates::str::contains("skipped"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap();
    let skipped = v["skipped"].as_array().unwrap();
    assert!(!skipped.is_empty());
    assert!(skipped[0]["reason"].as_str().unwrap().contains("examples"));
    bftkit()
        .args([
            "probe",
            "--task",
            skipped[0]["task"].as_str().unwrap(),
            "--data",
        ])
        .arg(fx.join("data"))
        .arg("--embeddings")
        .arg(&emb)
        .assert()
        .failure();
}
