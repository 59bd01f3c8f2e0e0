//! Embeds gene texts, probes the vectors on the benchmark tasks and reads the results, all
//! through the library. Runs on the built-in synthetic fixtures and a tiny seeded encoder, so it
//! needs no data or model download:
//!
//! ```sh
//! cargo run --release --example embed_and_probe
//! ```
//!
//! With real data, point `DataFolder::resolve` at it and `TextSource`/`EmbedJob` at real texts
//! and a real model folder (e.g. models/all-MiniLM-L6-v2).

use anyhow::Result;
use bftkit::{
    run_probe, DataFolder, EmbedJob, EmbeddingSet, Error, GeneEmbeddings, GeneIdMap, Metric,
    ProbeInput, ProbeOptions, TaskSet, TextSource,
};

fn main() -> Result<()> {
    let work = tempfile::tempdir()?;

    // Inputs: no data folder given, so the built-in fixtures (written to a temporary folder),
    // the task files compiled into bftkit, and the fixtures' gene id map.
    let data = DataFolder::resolve(None)?;
    let tasks = TaskSet::embedded()?;
    let map_path = data.path.join(bftkit::pipeline::GENE_MAP_FILE);
    let gene_map = GeneIdMap::read(&map_path)?;

    // 1. Embed one text per gene with an encoder (here a tiny seeded BERT; any BERT-family or
    //    Llama/Qwen2 folder works the same way).
    bftkit::fixtures::write_tiny_models(&work.path().join("models"))?;
    let texts = work.path().join("texts.tsv");
    let genes: Vec<String> = GeneEmbeddings::read(&data.fixture_embeddings().unwrap())?
        .ids()
        .to_vec();
    let mut table = String::from("symbol\tprofile\n");
    for (i, g) in genes.iter().enumerate() {
        let words = [
            "kinase activity",
            "dna repair",
            "cell cycle",
            "membrane receptor",
        ];
        table.push_str(&format!("{g}\t{g} {}\n", words[i % words.len()]));
    }
    std::fs::write(&texts, table)?;
    let job = EmbedJob::new(
        TextSource::new(&texts),
        work.path().join("models/tiny-bert"),
        work.path().join("texts.safetensors"),
    );
    let embedded = job.run(|_, _| {})?;
    println!(
        "embedded {} genes into {} dimensions",
        embedded.genes_embedded, embedded.dim
    );

    // 2. Probe the new vectors beside the fixtures' planted ones on every gene-level task.
    let sets = [
        EmbeddingSet::from_file(&job.out)?,
        EmbeddingSet::from_file(&data.fixture_embeddings().unwrap())?,
    ];
    let selected: Vec<_> = tasks
        .tasks
        .iter()
        .filter(|t| t.group() == bftkit::TaskGroup::Gene)
        .collect();
    let input = ProbeInput {
        tasks: &selected,
        sets: &sets,
        gene_map: Some((&gene_map, &map_path)),
        tasks_origin: &tasks.origin,
    };
    let options = ProbeOptions {
        seed: 7,
        ..ProbeOptions::new(&data.path)
    };
    let report = match run_probe(&input, &options, |t| eprintln!("probing {}", t.name)) {
        Ok(r) => r,
        // A task that cannot be scored on these sets is a fact about the data, not a fault.
        Err(e) if Error::of(&e).is_some() => {
            eprintln!("not evaluated: {e:#}");
            return Ok(());
        }
        Err(e) => return Err(e),
    };

    // 3. Read the typed results: each task's main metric, and which set wins it.
    for task in &selected {
        let rows: Vec<_> = report
            .results
            .iter()
            .filter(|r| r.task == task.name)
            .collect();
        let best = rows.iter().max_by(|a, b| {
            let (x, y) = (a.main_value().mean, b.main_value().mean);
            if a.higher_is_better() {
                x.total_cmp(&y)
            } else {
                y.total_cmp(&x)
            }
        });
        for r in &rows {
            let v = r.main_value();
            let coverage = 100.0 * r.outcome.coverage().fraction();
            println!(
                "{:<34} {:<12} {} {:.3} ± {:.3} ({coverage:.0}% of the task's genes){}",
                r.task,
                r.embedding_set,
                task.main_metric().name(),
                v.mean,
                v.sd,
                if best.is_some_and(|b| std::ptr::eq(*b, *r)) {
                    "  best"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}
