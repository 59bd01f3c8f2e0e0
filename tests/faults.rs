//! Regression tests for faults an adversarial run found: each bad input gets a clear error that
//! names the file, flag or value, and never a panic, abort, hang or a write outside the folder
//! asked for.

mod common;

use predicates::prelude::*;
use predicates::str::contains;

fn fixtures(dir: &std::path::Path) -> std::path::PathBuf {
    common::bftkit_in(dir)
        .args(["fixtures", "--out", "fx"])
        .assert()
        .success();
    dir.join("fx")
}

/// A copy of a built-in task file, edited, in its own task folder.
fn task_folder(dir: &std::path::Path, task: &str, edit: impl Fn(&str) -> String) -> String {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tasks/{task}.toml")),
    )
    .unwrap();
    let tasks = dir.join("tasks");
    std::fs::create_dir_all(&tasks).unwrap();
    std::fs::write(tasks.join(format!("{task}.toml")), edit(&text)).unwrap();
    tasks.display().to_string()
}

#[test]
fn one_fold_is_refused_for_every_task_kind() {
    let dir = tempfile::tempdir().unwrap();
    for task in ["cell_type_pbmc68k", "dosage_sensitive_tfs"] {
        common::bftkit_in(dir.path())
            .args(["probe", "--task", task, "--folds", "1"])
            .assert()
            .failure()
            .stderr(contains("--folds must be at least 2"));
    }
}

#[test]
fn matrix_headers_cannot_claim_what_the_file_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    let fx = fixtures(dir.path());
    let mtx = fx.join("data/citeseq_eccite_pbmc/rna_counts.mtx.gz");
    let write = |body: &str| {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(body.as_bytes()).unwrap();
        std::fs::write(&mtx, gz.finish().unwrap()).unwrap();
    };
    let genes = std::fs::read_to_string(fx.join("data/citeseq_eccite_pbmc/rna_genes.tsv"))
        .unwrap()
        .lines()
        .count()
        - 1;
    let cells = std::fs::read_to_string(fx.join("data/citeseq_eccite_pbmc/cells.tsv"))
        .unwrap()
        .lines()
        .count()
        - 1;
    let probe = || {
        common::bftkit_in(dir.path())
            .args([
                "probe",
                "--task",
                "integration_citeseq_eccite",
                "--data",
                "fx/data",
            ])
            .args(["--embeddings", "fx/embeddings.tsv"])
            .assert()
            .failure()
    };
    for n in ["99999999999999", "18446744073709551615"] {
        write(&format!(
            "%%MatrixMarket matrix coordinate integer general\n{genes} {cells} {n}\n1 1 1\n"
        ));
        probe().stderr(contains("rna_counts.mtx.gz:2").and(contains("cannot fit")));
    }
    write(&format!(
        "%%MatrixMarket matrix coordinate integer symmetric\n{genes} {cells} 1\n1 1 1\n"
    ));
    probe().stderr(contains("must be square"));
    // A negative count (scaled data given as counts) would make NaN metrics.
    write(&format!(
        "%%MatrixMarket matrix coordinate real general\n{genes} {cells} 2\n1 1 2\n2 1 -3\n"
    ));
    probe().stderr(
        contains("rna_counts.mtx.gz")
            .and(contains("has the value -3"))
            .and(contains(">= 0")),
    );
    // Under `--task all` a corrupt file is an error too, not a task "skipped" with exit 0.
    common::bftkit_in(dir.path())
        .args(["probe", "--task", "all", "--data", "fx/data"])
        .args(["--embeddings", "fx/embeddings.tsv"])
        .assert()
        .failure()
        .stderr(contains("rna_counts.mtx.gz"));
}

#[test]
fn impossible_model_configurations_are_refused_before_loading() {
    let dir = tempfile::tempdir().unwrap();
    common::tiny_model(dir.path(), "llama");
    std::fs::write(dir.path().join("t.tsv"), "symbol\tprofile\nTP53\tgene\n").unwrap();
    let config = dir.path().join("model/config.json");
    let original = std::fs::read_to_string(&config).unwrap();
    for (from, to, says) in [
        (
            "\"num_attention_heads\": 4",
            "\"num_attention_heads\": 0",
            "num_attention_heads is 0",
        ),
        (
            "\"num_hidden_layers\": 2",
            "\"num_hidden_layers\": 1000000000",
            "beyond any model",
        ),
    ] {
        assert!(original.contains(from), "{original}");
        std::fs::write(&config, original.replace(from, to)).unwrap();
        common::bftkit_in(dir.path())
            .args([
                "embed", "--texts", "t.tsv", "--model", "model", "--out", "e.tsv",
            ])
            .assert()
            .failure()
            .stderr(contains("config.json").and(contains(says)));
    }
}

#[test]
fn tables_are_sized_to_the_run_and_token_budgets_cannot_overflow() {
    let dir = tempfile::tempdir().unwrap();
    common::tiny_model(dir.path(), "llama");
    std::fs::write(dir.path().join("t.tsv"), "symbol\tprofile\nTP53\tgene\n").unwrap();
    std::fs::write(dir.path().join("genes.txt"), "TP53\n").unwrap();
    let config = dir.path().join("model/config.json");
    let original = std::fs::read_to_string(&config).unwrap();
    let from = "\"max_position_embeddings\": 64";
    assert!(original.contains(from), "{original}");
    // A context of 4·10^9 positions: a rotary table for all of them would need half a terabyte.
    std::fs::write(
        &config,
        original.replace(from, "\"max_position_embeddings\": 4000000000"),
    )
    .unwrap();
    common::bftkit_in(dir.path())
        .args([
            "embed", "--texts", "t.tsv", "--model", "model", "--out", "e.tsv",
        ])
        .assert()
        .success();
    std::fs::write(&config, &original).unwrap();
    common::bftkit_in(dir.path())
        .args([
            "describe",
            "genes.txt",
            "--model",
            "model",
            "--out",
            "p.tsv",
        ])
        .args(["--max-new-tokens", &usize::MAX.to_string()])
        .assert()
        .failure()
        .stderr(contains("exceeds the model's 64 positions"));
}

#[test]
fn a_report_of_layouts_that_cannot_be_drawn_is_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    common::bftkit_in(dir.path())
        .args(["run", "--out", "r"])
        .assert()
        .success();
    let path = dir.path().join("r/fixtures/results.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for p in v["runs"][0]["umaps"][0]["xy"].as_array_mut().unwrap() {
        *p = serde_json::json!([3e38, -3e38]);
    }
    std::fs::write(dir.path().join("huge.json"), v.to_string()).unwrap();
    common::bftkit_in(dir.path())
        .args(["report", "huge.json", "--out", "again"])
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .failure()
        .stderr(contains("huge.json").and(contains("outside")));
    assert!(!dir.path().join("again").exists(), "nothing is written");
}

#[test]
fn names_and_paths_cannot_leave_their_folders() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = task_folder(dir.path(), "n1_network", |t| {
        t.replace("name = \"n1_network\"", "name = \"../../escaped\"")
    });
    common::bftkit_in(dir.path())
        .args([
            "probe",
            "--task",
            "all",
            "--tasks",
            &tasks,
            "--export-folds",
            "out/folds",
        ])
        .assert()
        .failure()
        .stderr(contains("task name '../../escaped'"));
    let tasks = task_folder(dir.path(), "n1_network", |t| {
        t.replace(
            "geneformer_gene_labels/geneformer_gene_labels_long.tsv",
            "/etc/passwd",
        )
    });
    common::bftkit_in(dir.path())
        .args(["tasks", "--tasks", &tasks])
        .assert()
        .failure()
        .stderr(contains(
            "'/etc/passwd' must be a path inside the data folder",
        ))
        .stderr(contains("root:").not());
    common::bftkit_in(dir.path())
        .args(["run", "--name", "../../escaped", "--no-umap"])
        .assert()
        .failure()
        .stderr(contains("report name '../../escaped'"));
    assert!(!dir.path().parent().unwrap().join("escaped").exists());
}

#[test]
fn values_outside_their_range_are_refused_and_empty_texts_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    fixtures(dir.path());
    for min_dist in ["nan", "-0.5", "2"] {
        common::bftkit_in(dir.path())
            .args([
                "umap",
                "--embeddings",
                "fx/embeddings.tsv",
                "--out",
                "u.tsv",
            ])
            .arg(format!("--min-dist={min_dist}"))
            .assert()
            .failure()
            .stderr(contains("min_dist must be in [0, spread = 1]"));
    }
    assert!(!dir.path().join("u.tsv").exists());
    // Embeddings so large that squared distances overflow f32 give chance-level scores.
    let mut lines: Vec<String> = std::fs::read_to_string(dir.path().join("fx/embeddings.tsv"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let mut cols: Vec<&str> = lines[5].split('\t').collect();
    cols[1] = "1e37";
    lines[5] = cols.join("\t");
    std::fs::write(dir.path().join("big.tsv"), lines.join("\n") + "\n").unwrap();
    common::bftkit_in(dir.path())
        .args([
            "probe",
            "--task",
            "dosage_sensitive_tfs",
            "--data",
            "fx/data",
        ])
        .args(["--embeddings", "big.tsv"])
        .assert()
        .failure()
        .stderr(contains("big.tsv:6").and(contains("rescale")));
    // A gene whose text is empty is reported as missing, not silently dropped.
    common::tiny_model(dir.path(), "bert");
    std::fs::write(
        dir.path().join("t.tsv"),
        "symbol\tprofile\nTP53\ta tumour suppressor\nEMPTY\t \n",
    )
    .unwrap();
    common::bftkit_in(dir.path())
        .args([
            "embed", "--texts", "t.tsv", "--model", "model", "--out", "e.tsv",
        ])
        .assert()
        .success()
        .stdout(contains("embedded 1 of 2 genes").and(contains("EMPTY")));
}

#[test]
fn files_that_are_not_tables_are_not_echoed_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "root:$6$c2VjcmV0IGhhc2g=:19000:0:99999:7:::";
    std::fs::write(
        dir.path().join("shadow"),
        format!("{secret}\nbin:*:19000::::::\n"),
    )
    .unwrap();
    common::tiny_model(dir.path(), "bert");
    // Read as a text table (tab-separated, a header naming `symbol` and `profile`).
    common::bftkit_in(dir.path())
        .args([
            "embed", "--texts", "shadow", "--model", "model", "--out", "e.tsv",
        ])
        .assert()
        .failure()
        .stderr(
            contains("shadow")
                .and(contains("not a table"))
                .and(contains("root:").not()),
        );
    // Read as an embedding table: a long field is not repeated either.
    let long = "x".repeat(200);
    std::fs::write(
        dir.path().join("e.tsv"),
        format!("TP53\t1\t2\nBRCA1\t{long}\t2\n"),
    )
    .unwrap();
    common::bftkit_in(dir.path())
        .args(["umap", "--embeddings", "e.tsv", "--out", "u.tsv"])
        .assert()
        .failure()
        .stderr(contains("e.tsv:2").and(contains(&long).not()));
}
