//! One function per command: convert the arguments (`args`), call the library, print
//! (`print`), with a progress bar where the work takes a while (`progress`).

use anyhow::Result;

use super::args::{
    DataArgs, DescribeArgs, EmbedArgs, FinetuneArgs, FixturesArgs, KnowledgeArgs, LossCmdArgs,
    ProbeArgs, ReportArgs, RunArgs, ScibArgs, SftDataArgs, UmapArgs, WeightsArgs,
};
use super::{print, progress};
use crate::io::texts::read_gene_list;
use crate::io::GeneEmbeddings;
use crate::pipeline::{self, Inputs};
use crate::viz::report::ReportData;

/// Writes `text` to `path`, naming the file when that fails.
fn write(path: &std::path::Path, text: String) -> Result<()> {
    crate::io::write_file(path, text)
}

pub(super) fn run(args: RunArgs) -> Result<()> {
    let prepared = args.request().prepare()?;
    print::input_notes(&prepared.inputs);
    let bar = progress::bar(0, "steps", "{elapsed}  {msg}");
    let out = pipeline::run(&prepared, |step, total, what| {
        bar.set_length(total as u64);
        bar.set_position(step as u64);
        bar.set_message(what.to_string());
    })?;
    bar.finish_and_clear();
    print::probe_table(&out.report.runs[0].probe);
    if let Some(e) = &out.report.runs[0].experiment {
        print::experiment(e);
    }
    println!(
        "report written to {} (every number in {})",
        out.index.display(),
        prepared.out.join("results.json").display()
    );
    Ok(())
}

pub(super) fn report(args: ReportArgs) -> Result<()> {
    let data = ReportData::read_all(&args.results)?;
    let index = crate::viz::report::render(&data, &args.out)?;
    println!("report written to {}", index.display());
    Ok(())
}

pub(super) fn umap(args: UmapArgs) -> Result<()> {
    let start = std::time::Instant::now();
    let e = GeneEmbeddings::read(&args.embeddings)?;
    let xy = crate::viz::umap::umap(&e.values, e.len(), e.dim, &args.options())?;
    let mut text = String::from("gene\tx\ty\n");
    for (g, p) in e.ids.iter().zip(xy.chunks(2)) {
        text.push_str(&format!("{g}\t{}\t{}\n", p[0], p[1]));
    }
    write(&args.out, text)?;
    println!(
        "UMAP of {} points x {} dims (seed {}) in {:.2} s; wrote {}",
        e.len(),
        e.dim,
        args.seed,
        start.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}

pub(super) fn scib(args: ScibArgs) -> Result<()> {
    let report = crate::eval::scib_files::scib_files(&args.files(), args.seed)?;
    let json = serde_json::to_string_pretty(&report)?;
    match &args.out {
        Some(p) => {
            write(p, json + "\n")?;
            eprintln!("wrote {}", p.display());
        }
        None => println!("{json}"),
    }
    Ok(())
}

pub(super) fn tasks(args: DataArgs) -> Result<()> {
    let inputs = Inputs::resolve(&args.options())?;
    print::input_notes(&inputs);
    print::tasks(&inputs.tasks, &inputs.data.path);
    Ok(())
}

pub(super) fn probe(args: ProbeArgs) -> Result<()> {
    let request = args.request();
    let inputs = Inputs::resolve(&request.data)?;
    print::input_notes(&inputs);
    let bar = progress::bar(request.selected(&inputs)?.len(), "tasks", "{msg}");
    let report = pipeline::probe(&request, &inputs, |t| {
        bar.set_message(t.name.clone());
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    print::probe_table(&report);
    if let Some(out) = &request.out {
        println!("results written to {}", out.display());
    }
    Ok(())
}

pub(super) fn embed(args: EmbedArgs) -> Result<()> {
    let job = args.job();
    let bar = progress::bar(0, "texts", "{per_sec}  eta {eta}");
    let report = job.run(|n, total| {
        bar.set_length(total as u64);
        bar.inc(n as u64);
    })?;
    bar.finish_and_clear();
    print::embedded(&report, &job.out, &crate::embed::report_path(&job.out));
    Ok(())
}

pub(super) fn finetune(args: FinetuneArgs) -> Result<()> {
    use crate::train::finetune::Progress;
    let opts = args.options();
    let bar = progress::bar(0, "steps", "{msg}");
    let report = crate::train::finetune::finetune(&opts, |p| match p {
        Progress::Loaded {
            parameters,
            bytes,
            seconds,
        } => progress::line(
            &bar,
            format!(
                "loaded {}: {:.2} B parameters, {:.2} GB, in {seconds:.1} s",
                opts.model.display(),
                parameters as f64 / 1e9,
                bytes as f64 / 1e9
            ),
        ),
        Progress::Step { log: s, total } => {
            bar.set_length(total as u64);
            bar.set_position(s.step as u64);
            bar.set_message(format!(
                "loss {:.4}  lr {:.2e}  {:.0} tok/s",
                s.loss, s.lr, s.tokens_per_s
            ));
        }
    })?;
    bar.finish_and_clear();
    print::finetuned(&report, &opts.out);
    Ok(())
}

pub(super) fn describe(args: DescribeArgs) -> Result<()> {
    use crate::model::generate;
    let genes = read_gene_list(&args.genes)?;
    let bar = progress::bar(genes.len(), "genes", "{elapsed}  {msg}");
    let start = std::time::Instant::now();
    let report =
        generate::describe_to_file(&genes, &args.options(), &args.out, |done, _, tokens| {
            bar.set_position(done as u64);
            let rate = tokens as f64 / start.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("{rate:.0} tokens/s"));
        })?;
    bar.finish_and_clear();
    print::described(&report, &args.out, &generate::report_path(&args.out));
    Ok(())
}

pub(super) fn knowledge(args: KnowledgeArgs) -> Result<()> {
    use crate::eval::knowledge;
    let data = crate::pipeline::DataFolder::resolve(args.data.as_deref())?;
    if data.fixtures {
        eprintln!(
            "note: no data folder (--data, $BFTKIT_DATA or ./data): using the built-in synthetic \
             benchmark files (made-up questions; only the formats are real)"
        );
    }
    let bar = progress::bar(0, "rows", "{elapsed}");
    let report = knowledge::knowledge(&args.options(&data.path), |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    knowledge::write_report(&report, &args.out)?;
    print::knowledge(&report, &args.out);
    Ok(())
}

pub(super) fn sft_data(args: SftDataArgs) -> Result<()> {
    let source = args.texts.source();
    let texts = source.read()?;
    let origin = source.path.display().to_string();
    let split =
        crate::train::data::write_profile_data(&texts, &origin, &args.out, &args.options())?;
    println!(
        "{} train and {} test genes (seed {}) in {}",
        split.train.len(),
        split.test.len(),
        args.seed,
        args.out.display()
    );
    Ok(())
}

pub(super) fn weights(args: WeightsArgs) -> Result<()> {
    let report = crate::train::dataset_weights(&args.options())?;
    print::weights(&report, args.top);
    if let Some(out) = &args.out {
        write(out, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

pub(super) fn loss(args: LossCmdArgs) -> Result<()> {
    let samples = crate::train::read_token_probs(&args.probs)?;
    let report = crate::train::loss_report(&args.loss.config(), &samples)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

pub(super) fn fixtures(args: FixturesArgs) -> Result<()> {
    let out = &args.out;
    crate::fixtures::write(out)?;
    println!(
        "wrote {}/data and {}/embeddings.tsv",
        out.display(),
        out.display()
    );
    if args.models {
        let dir = out.join("models");
        crate::fixtures::write_tiny_models(&dir)?;
        println!("wrote tiny seeded models to {}", dir.display());
    }
    Ok(())
}
