//! End-to-end tests of `bftkit embed` with a tiny BERT the test writes itself.

mod common;

use assert_cmd::Command;
use predicates::str::contains;

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    common::tiny_model(dir.path(), "bert");
    std::fs::write(
        dir.path().join("texts.tsv"),
        "symbol\tprofile\nTP53\tthe tumor suppressor gene\nCDK1\tcell cycle kinase\n\
         BRCA1\tdna repair and transcription factor binding\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("genes.txt"),
        "# wanted\nTP53\nBRCA1\nNOTEXT\n",
    )
    .unwrap();
    dir
}

fn embed(dir: &tempfile::TempDir) -> Command {
    let mut c = common::bftkit_in(dir.path());
    c.args([
        "embed",
        "genes.txt",
        "--texts",
        "texts.tsv",
        "--model",
        "model",
    ]);
    c
}

#[test]
fn embeds_listed_genes_and_reports_missing_ones() {
    let dir = setup();
    embed(&dir)
        .args(["--out", "e.safetensors"])
        .assert()
        .success()
        .stdout(contains("embedded 2 of 3 genes"))
        .stdout(contains("NOTEXT"));
    let e = bftkit::io::GeneEmbeddings::read(&dir.path().join("e.safetensors")).unwrap();
    assert_eq!(e.ids(), vec!["TP53", "BRCA1"]);
    assert_eq!(e.dim(), 16);
    assert!(e.source().contains("mean pooling"), "{}", e.source());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("e.embed.json")).unwrap())
            .unwrap();
    assert_eq!(report["missing"], serde_json::json!(["NOTEXT"]));
    assert_eq!(report["genes_embedded"], 2);
    // The output feeds `bftkit probe` directly (same reader).
    embed(&dir)
        .args(["--out", "e.tsv", "--pool", "cls"])
        .assert()
        .success();
    let t = bftkit::io::GeneEmbeddings::read(&dir.path().join("e.tsv")).unwrap();
    assert_ne!(
        t.values(),
        e.values(),
        "cls pooling differs from mean pooling"
    );
}

#[test]
fn strict_mode_and_bad_inputs_fail_clearly() {
    let dir = setup();
    embed(&dir)
        .args(["--out", "e.tsv", "--strict"])
        .assert()
        .failure()
        .stderr(contains("1 of 3 genes have no text"))
        .stderr(contains("NOTEXT"));
    embed(&dir)
        .args(["--out", "e.npy"])
        .assert()
        .failure()
        .stderr(contains("unknown embedding file extension"));
    std::fs::remove_file(dir.path().join("model/tokenizer.json")).unwrap();
    embed(&dir)
        .args(["--out", "e.tsv"])
        .assert()
        .failure()
        .stderr(contains("missing tokenizer.json"));
}

#[test]
fn decoder_models_embed_with_last_token_pooling() {
    let dir = setup();
    common::tiny_model(dir.path(), "qwen2");
    embed(&dir)
        .args(["--out", "d.tsv", "--pool", "last"])
        .assert()
        .success()
        .stdout(contains("embedded 2 of 3 genes (16 dims)"));
    let e = bftkit::io::GeneEmbeddings::read(&dir.path().join("d.tsv")).unwrap();
    assert_eq!(e.ids(), vec!["TP53", "BRCA1"]);
    embed(&dir)
        .args(["--out", "d.tsv", "--pool", "cls"])
        .assert()
        .failure()
        .stderr(contains("CLS pooling is for BERT"));
}
