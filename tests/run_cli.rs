//! `bftkit run` on the built-in fixtures and `bftkit report` re-rendering its results.

mod common;

use bftkit::eval::kinds::Outcome;
use bftkit::viz::report::{render, ReportData, Summary};
use predicates::str::contains;

fn png_size(path: &std::path::Path) -> (u32, u32) {
    let dec = png::Decoder::new(std::fs::File::open(path).unwrap());
    let reader = dec.read_info().unwrap();
    let info = reader.info();
    (info.width, info.height)
}

#[test]
fn run_on_fixtures_writes_a_self_contained_report_and_report_rerenders_it() {
    let dir = tempfile::tempdir().unwrap();
    common::bftkit_in(dir.path())
        .args(["run", "--out", "reports"])
        .assert()
        .success()
        .stderr(contains("built-in synthetic fixtures"))
        .stdout(contains("reports/fixtures/index.html"));
    let out = dir.path().join("reports/fixtures");
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    let data = ReportData::read_all(&[out.join("results.json")]).unwrap();
    let run = &data.runs[0];
    assert!(run.fixtures);
    // Every task (21 built-in) and both embedding sets are in the report; nothing is left
    // out as not implemented.
    assert_eq!(run.probe.results.len(), 21 * 2);
    assert!(run.not_run.is_empty());
    for r in &run.probe.results {
        assert!(
            html.contains(&format!(">{}<", r.task)),
            "{} missing",
            r.task
        );
    }
    for set in ["fixture_planted", "random"] {
        assert!(html.contains(&format!(">{set}<")), "{set} missing");
    }
    assert!(html.contains("built-in synthetic fixtures"));
    // Self-contained: no scripts, no external resources; images are inline.
    for bad in ["<script", "http://", "https://", "url(", "@import", "<link"] {
        assert!(!html.contains(bad), "found {bad}");
    }
    let srcs: Vec<&str> = html.split("src=\"").skip(1).collect();
    assert_eq!(
        srcs.len(),
        5 + 1 + 2 + 2 + 8,
        "5 score figures, the table, 2 gene UMAPs, 2 cell-type UMAPs and, for each of the 2 \
         integration tasks, 2 UMAPs (by modality and by type) per set"
    );
    assert!(srcs.iter().all(|s| s.starts_with("data:image/png;base64,")));
    assert!(html.contains("href=\"results.json\""));
    // The figures decode, with the sizes asked for.
    assert_eq!(
        png_size(&out.join("umap_0_genes_fixture_planted.png")),
        (900, 700)
    );
    assert_eq!(png_size(&out.join("umap_0_cells_random.png")), (900, 700));
    assert_eq!(png_size(&out.join("umap_0_cells_random_3.png")), (900, 700));
    let integ: Vec<_> = run
        .umaps
        .iter()
        .filter(|u| u.colour_task.starts_with("integration"))
        .collect();
    assert_eq!(integ.len(), 8, "2 tasks x 2 sets x 2 colourings");
    let eccite: Vec<_> = integ
        .iter()
        .filter(|u| u.colour_task.starts_with("integration_citeseq_eccite"))
        .collect();
    assert_eq!(eccite[0].xy.len(), 160, "80 gated cells, RNA and ADT");
    assert_eq!(eccite[0].class_names, ["RNA", "ADT"]);
    assert_eq!(eccite[1].class_names.len(), 5);
    let bmmc: Vec<_> = integ
        .iter()
        .filter(|u| u.colour_task.starts_with("integration_citeseq_bmmc"))
        .collect();
    assert_eq!(bmmc.len(), 4);
    assert_eq!(bmmc[1].class_names.len(), 4, "the published cell types");
    let cells = run.umaps.iter().find(|u| u.points == "cells").unwrap();
    assert_eq!(cells.xy.len(), 80);
    assert_eq!(cells.class_names.len(), 4);
    assert_eq!(png_size(&out.join("scores_pair.png")).1, 520);
    assert_eq!(run.umaps[0].xy.len(), run.umaps[0].genes.len());
    // The planted set wins every column; the star marks it.
    let s = Summary::new(&data);
    let planted = s.rows.iter().position(|r| r == "fixture_planted").unwrap();
    for c in 0..s.tasks().len() {
        assert_eq!(s.best_rows(c), vec![planted], "column {}", s.tasks()[c]);
    }
    assert_eq!(
        html.matches("★").count(),
        21 + 1,
        "one per column (21 tasks), one in the legend"
    );
    // Make the random set best on one task: the mark moves.
    let mut changed = data.clone();
    let first = changed.runs[0].probe.results[0].task.clone();
    for r in &mut changed.runs[0].probe.results {
        if r.task == first && r.embedding_set == "random" {
            let Outcome::Gene(p) = &mut r.outcome else {
                panic!("the first task is a gene task")
            };
            p.scores.roc_auc.mean = 0.999;
        }
    }
    let s2 = Summary::new(&changed);
    let col = s2.tasks().iter().position(|t| *t == first).unwrap();
    let random = s2.rows.iter().position(|r| r == "random").unwrap();
    assert_eq!(s2.best_rows(col), vec![random]);
    let html2 =
        std::fs::read_to_string(render(&changed, &dir.path().join("changed")).unwrap()).unwrap();
    assert!(html2.contains("<td class=\"best\">0.999 ± "));
    // `bftkit report` re-renders the saved results without recomputing: the same page.
    common::bftkit_in(dir.path())
        .args(["report", "reports/fixtures/results.json", "--out", "again"])
        .assert()
        .success();
    let again = std::fs::read_to_string(dir.path().join("again/index.html")).unwrap();
    assert_eq!(again, html);
    // A file that is not a results file is refused with its name.
    std::fs::write(dir.path().join("bad.json"), "{\"x\": 1}").unwrap();
    common::bftkit_in(dir.path())
        .args(["report", "bad.json"])
        .assert()
        .failure()
        .stderr(contains("bad.json"));
}
