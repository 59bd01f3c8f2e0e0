//! `bftkit scib`: scIB metrics of a cell embedding file against an annotation table.

mod common;

use predicates::str::contains;

#[test]
fn scib_reports_every_metric_and_counts_unmatched_cells() {
    let dir = tempfile::tempdir().unwrap();
    // 60 cells: two types far apart, two batches alternating (well mixed); one vector without
    // an annotation and one annotated cell without a vector.
    let (mut emb, mut pre, mut obs) = (
        String::new(),
        String::new(),
        String::from("cell\tlabel\tbatch\n"),
    );
    for i in 0..60 {
        let t = i % 2;
        let b = (i / 2) % 2;
        let jitter = (i as f32 * 0.37).sin();
        emb.push_str(&format!(
            "c{i}\t{}\t{}\n",
            10.0 * t as f32 + jitter,
            (i as f32 * 0.11).cos()
        ));
        pre.push_str(&format!(
            "c{i}\t{}\t{}\n",
            10.0 * t as f32 + jitter,
            20.0 * b as f32
        ));
        obs.push_str(&format!("c{i}\ttype{t}\tbatch{b}\n"));
    }
    emb.push_str("stray\t0\t0\n");
    obs.push_str("ghost\ttype0\tbatch0\n");
    std::fs::write(dir.path().join("x.tsv"), emb).unwrap();
    std::fs::write(dir.path().join("pre.tsv"), pre).unwrap();
    std::fs::write(dir.path().join("obs.tsv"), obs).unwrap();
    let scib = ["scib", "--embeddings", "x.tsv", "--obs", "obs.tsv"];
    let v = common::stdout_json(
        common::bftkit_in(dir.path())
            .args(scib)
            .args(["--pre", "pre.tsv"]),
    );
    assert_eq!(v["cells"], 60);
    assert_eq!(v["vectors_without_annotation"], 1);
    assert_eq!(v["annotated_without_vector"], 1);
    assert_eq!(v["labels"], serde_json::json!(["type0", "type1"]));
    let s = &v["scores"];
    assert_eq!(s.as_object().unwrap().len(), 14);
    assert!(s["pcr_comparison"].as_f64().unwrap() > 0.9, "{s}");
    assert!(s["ilisi"].as_f64().unwrap() > 0.8, "{s}");
    assert_eq!(s["kmeans_ari"], 1.0);
    // A missing column is an error naming it.
    common::bftkit_in(dir.path())
        .args(scib)
        .args(["--batch-col", "sample"])
        .assert()
        .failure()
        .stderr(contains("sample"));
}
