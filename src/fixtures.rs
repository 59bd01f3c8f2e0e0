//! The built-in synthetic dataset: a small data folder with the same layout and file formats as
//! the real one (so every task in `tasks/` runs on it), and gene embeddings with planted signal.
//!
//! Each gene has a latent vector; every task's labels are a seeded linear rule of the latent
//! vectors (for pairs, of their sum), so a probe on the planted embeddings scores well above
//! chance and the random baseline near 0.5. The generator is deterministic: `fixtures/` in the
//! repository is its output, and a test checks that they agree.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::io::GeneEmbeddings;

const GENES: usize = 400;
const DIM: usize = 16;
/// Genes at the end of the list are in the id map but have no embedding (to exercise coverage).
const WITHOUT_EMBEDDING: usize = 20;
const SEED: u64 = 20261127;

fn symbol(i: usize) -> String {
    format!("GENE{i:04}")
}
fn entrez(i: usize) -> usize {
    900_000 + i
}
fn ensembl(i: usize) -> String {
    format!("ENSG99{i:09}")
}

/// Writes the data folder to `dir/data` and the planted embeddings to `dir/embeddings.tsv`.
pub fn write(dir: &Path) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let latent: Vec<Vec<f32>> = (0..GENES)
        .map(|_| (0..DIM).map(|_| StandardNormal.sample(&mut rng)).collect())
        .collect();
    let data = dir.join("data");
    let mut files: Vec<(String, String)> = Vec::new();

    // Gene id map (NCBI layout); every tenth gene has an alias, and the antibody targets of
    // the integration task are aliases of genes 300.. (the T-cell receptor ones of genes
    // without an embedding), so the real task file runs on the fixtures.
    let mut ids = String::from("entrez_id\tsymbol\tgene_type\tensembl_ids\tuniprot_ids\taliases\n");
    let targets = antibody_target_genes();
    for i in 0..GENES {
        let mut aliases: Vec<String> = Vec::new();
        if i % 10 == 0 {
            aliases.push(format!("ALIAS{i}"));
        }
        aliases.extend(
            targets
                .iter()
                .filter(|(_, g)| *g == i)
                .map(|(t, _)| t.to_string()),
        );
        let alias = aliases.join(";");
        writeln!(
            ids,
            "{}\t{}\tprotein-coding\t{}\t\t{alias}",
            entrez(i),
            symbol(i),
            ensembl(i)
        )?;
    }
    files.push(("gene_id_map/hs_gene_ids_orgHsEgDb_3.16.tsv".into(), ids));

    // A task's rule: a random direction in latent space and the genes' scores along it.
    let rule = |rng: &mut ChaCha8Rng| -> Vec<f32> {
        (0..DIM).map(|_| StandardNormal.sample(rng)).collect()
    };
    let score = |w: &[f32], v: &[f32]| -> f32 { w.iter().zip(v).map(|(a, b)| a * b).sum() };

    // Gene tasks: Geneformer's long table (Ensembl ids) and the Chen 2020 CSV (symbols).
    let mut long = String::from("task\tclass\tlabel\tensembl_id\tsymbol\n");
    let gene_tasks = [
        (
            "dosage_sensitivity_TFs",
            "Dosage-sensitive TFs",
            "Dosage-insensitive TFs",
        ),
        ("bivalent_vs_no_methyl", "bivalent", "no_methylation"),
        ("bivalent_vs_lys4_only", "bivalent", "lys4_only"),
        ("bivalent_vs_lys4_only_genomewide", "bivalent", "lys4_only"),
        ("tf_regulatory_range", "long_range", "short_range"),
        ("n1_network", "n1_central", "n1_peripheral"),
        ("n1_target", "n1_activated", "n1_nontarget"),
    ];
    for (task, pos, neg) in gene_tasks {
        let w = rule(&mut rng);
        let mut genes: Vec<usize> = (0..GENES).collect();
        genes.shuffle(&mut rng);
        genes.truncate(120);
        for &g in &genes {
            let positive = score(&w, &latent[g]) > 0.0;
            let (class, label) = if positive { (pos, 1) } else { (neg, 0) };
            writeln!(
                long,
                "{task}\t{class}\t{label}\t{}\t{}",
                ensembl(g),
                symbol(g)
            )?;
        }
        // One gene listed in both classes: must be dropped and counted.
        let g = genes[0];
        writeln!(long, "{task}\t{neg}\t0\t{}\t{}", ensembl(g), symbol(g))?;
        writeln!(long, "{task}\t{pos}\t1\t{}\t{}", ensembl(g), symbol(g))?;
    }
    files.push((
        "geneformer_gene_labels/geneformer_gene_labels_long.tsv".into(),
        long,
    ));

    let w = rule(&mut rng);
    let mut chen = String::from(",CCLE,std,assignment\n");
    for (g, v) in latent.iter().enumerate().take(60) {
        let class = if score(&w, v) > 0.0 {
            "long-range TF"
        } else {
            "short-range TF"
        };
        writeln!(
            chen,
            "{},{:.3},{:.3},{class}",
            symbol(g),
            rng.random::<f32>(),
            rng.random::<f32>()
        )?;
    }
    files.push((
        "geneformer_gene_labels/41467_2020_16106_MOESM4_ESM.csv".into(),
        chen,
    ));

    // Pair tasks: label = the rule applied to the sum of the two latent vectors.
    let pairs = |rng: &mut ChaCha8Rng, n: usize| -> Vec<(usize, usize, bool)> {
        let w = rule(rng);
        (0..n)
            .map(|_| {
                let (a, b) = (rng.random_range(0..GENES), rng.random_range(0..GENES));
                let s = score(&w, &latent[a]) + score(&w, &latent[b]);
                (a, b, s > 0.0)
            })
            .collect()
    };
    let all = pairs(&mut rng, 1500);
    for (split, range) in [("train", 0..1200), ("test", 1200..1500)] {
        let (mut text, mut labels) = (String::new(), String::new());
        for &(a, b, l) in &all[range] {
            writeln!(text, "{} {}", symbol(a), symbol(b))?;
            writeln!(labels, "{}", l as u8)?;
        }
        files.push((format!("gene2vec_ggi/{split}_text.txt"), text));
        files.push((format!("gene2vec_ggi/{split}_label.txt"), labels));
    }
    let mut ppi = String::from("protein1\tprotein2\tentrez1\tentrez2\tsymbol1\tsymbol2\tlabel\n");
    for (k, (a, b, l)) in pairs(&mut rng, 800).into_iter().enumerate() {
        // Every 50th pair has an unmapped protein (blank symbol), as in the real file.
        let sb = if k % 50 == 0 {
            String::new()
        } else {
            symbol(b)
        };
        writeln!(
            ppi,
            "NP_{a}\tNP_{b}\t{}\t{}\t{}\t{sb}\t{}",
            entrez(a),
            entrez(b),
            symbol(a),
            l as u8
        )?;
    }
    files.push((
        "ppi_pan_human/pan_human_ppi_orig_with_symbols.tsv".into(),
        ppi,
    ));
    for name in ["sl_pairs", "ng_pairs", "tf_pairs"] {
        let mut t = String::from("entrez1\tentrez2\tsymbol1\tsymbol2\tlabel\touter_test_fold\n");
        for (k, (a, b, l)) in pairs(&mut rng, 600).into_iter().enumerate() {
            // Every 20th pair is outside the published folds (blank fold).
            let fold = if k % 20 == 0 {
                String::new()
            } else {
                (k % 3).to_string()
            };
            writeln!(
                t,
                "{}\t{}\t{}\t{}\t{}\t{fold}",
                entrez(a),
                entrez(b),
                symbol(a),
                symbol(b),
                l as u8
            )?;
        }
        files.push((format!("gene_pairs_ylab/{name}.tsv"), t));
    }

    files.extend(cell_files(&latent)?);
    let (mtx_name, mtx_gz, perturb) = perturbation_files(&latent)?;
    files.extend(perturb);
    let (rna_name, rna_gz, citeseq) = integration_files(&latent)?;
    files.extend(citeseq);

    let binary = [
        (mtx_name.to_string(), mtx_gz),
        (rna_name.to_string(), rna_gz),
    ];
    for (rel, text) in files
        .into_iter()
        .map(|(r, t)| (r, t.into_bytes()))
        .chain(binary)
    {
        let path = data.join(&rel);
        std::fs::create_dir_all(path.parent().expect("file in a folder"))?;
        std::fs::write(&path, text).with_context(|| format!("{}: cannot write", path.display()))?;
    }

    // Embeddings: latent vector plus a little noise, keyed by symbol; the last genes have none.
    let n = GENES - WITHOUT_EMBEDDING;
    let mut values = Vec::with_capacity(n * DIM);
    for v in &latent[..n] {
        for x in v {
            let noise: f32 = StandardNormal.sample(&mut rng);
            values.push(((x + 0.1 * noise) * 1000.0).round() / 1000.0);
        }
    }
    let emb = GeneEmbeddings::new(
        (0..n).map(symbol).collect(),
        DIM,
        values,
        "bftkit synthetic fixture (planted signal)".into(),
    )?;
    emb.write(&dir.join("embeddings.tsv"))
}

/// A small PBMC-like single-cell set in the pbmc68k_reduced layout: 4 planted cell types of 20
/// cells over 150 genes (10 of them without an embedding). A type expresses most the genes whose
/// latent vectors point along its own direction, so GenePT-w vectors of planted embeddings
/// separate the types. Its own generator, so the gene-level files do not change.
fn cell_files(latent: &[Vec<f32>]) -> Result<Vec<(String, String)>> {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED + 4);
    let types = ["B cell", "CD14+ Monocyte", "CD4+ T", "NK"];
    let genes: Vec<usize> = (0..140).chain(GENES - 10..GENES).collect();
    let dirs: Vec<Vec<f32>> = types
        .iter()
        .map(|_| (0..DIM).map(|_| StandardNormal.sample(&mut rng)).collect())
        .collect();
    let mut x = String::from("cell");
    for &g in &genes {
        write!(x, ",{}", symbol(g))?;
    }
    x.push('\n');
    let mut obs = String::from("cell,bulk_labels,n_genes\n");
    for (t, dir) in dirs.iter().enumerate() {
        let norm = dir.iter().map(|v| v * v).sum::<f32>().sqrt();
        for c in 0..20 {
            let cell = format!("CELL{t}{c:02}-1");
            write!(x, "{cell}")?;
            let mut expressed = 0;
            for &g in &genes {
                let s: f32 = latent[g].iter().zip(dir).map(|(a, b)| a * b).sum::<f32>() / norm;
                let v = if rng.random::<f32>() < 0.4 {
                    0.0
                } else {
                    (s.exp() * rng.random_range(0.5f32..1.5)).ln_1p()
                };
                expressed += (v > 0.0) as usize;
                write!(x, ",{:.3}", v)?;
            }
            x.push('\n');
            writeln!(obs, "{cell},{},{expressed}", types[t])?;
        }
    }
    Ok(vec![
        ("pbmc68k_reduced/pbmc68k_reduced_raw_lognorm.csv".into(), x),
        ("pbmc68k_reduced/pbmc68k_reduced_obs.csv".into(), obs),
    ])
}

/// A Perturb-seq set in the perturb_papalexi2021_lowmoi layout: 8 knocked-out target genes and
/// non-targeting controls, 40 response genes, Poisson counts. A target shifts each response
/// gene by an amount that follows the similarity of their latent vectors, so targets with
/// similar (planted) embeddings have similar responses. Returns the gzip MatrixMarket file
/// separately (bytes).
#[allow(clippy::type_complexity)]
fn perturbation_files(
    latent: &[Vec<f32>],
) -> Result<(&'static str, Vec<u8>, Vec<(String, String)>)> {
    use rand_distr::Poisson;
    let mut rng = ChaCha8Rng::seed_from_u64(SEED + 5);
    let response: Vec<usize> = (100..140).collect();
    let dot = |a: &[f32], b: &[f32]| -> f32 { a.iter().zip(b).map(|(x, y)| x * y).sum() };
    // Two families: the 4 genes (of 150..380) most aligned with a direction, and the 4 most
    // opposed, so each target has close neighbours in latent space.
    let u: Vec<f32> = (0..DIM).map(|_| StandardNormal.sample(&mut rng)).collect();
    let mut by_u: Vec<usize> = (150..380).collect();
    by_u.sort_by(|&a, &b| dot(&latent[b], &u).total_cmp(&dot(&latent[a], &u)));
    let targets: Vec<usize> = by_u[..4]
        .iter()
        .chain(&by_u[by_u.len() - 4..])
        .copied()
        .collect();
    let mut genes = String::from("row\tgene\n");
    for (i, &g) in response.iter().enumerate() {
        writeln!(genes, "{}\t{}", i + 1, symbol(g))?;
    }
    let mut cells = String::from("col\tbio_rep\tassigned_target\n");
    let mut entries = Vec::new();
    let mut col = 0;
    let groups: Vec<(String, usize, Option<usize>)> =
        std::iter::once(("non-targeting".to_string(), 60, None))
            .chain(targets.iter().map(|&t| (symbol(t), 30, Some(t))))
            .collect();
    for (name, n, target) in &groups {
        for _ in 0..*n {
            col += 1;
            writeln!(cells, "{col}\trep_{}\t{name}", col % 3 + 1)?;
            for (i, &g) in response.iter().enumerate() {
                let base = 2.0 + (g % 7) as f64;
                let shift = target.map_or(0.0, |t| {
                    (0.6 * dot(&latent[t], &latent[g]) / DIM as f32).tanh() as f64
                });
                let lambda = base * (2.0 * shift).exp();
                let k: f64 = Poisson::new(lambda)
                    .expect("positive rate")
                    .sample(&mut rng);
                if k > 0.0 {
                    entries.push((i + 1, col, k as u64));
                }
            }
        }
    }
    Ok((
        "perturb_papalexi2021_lowmoi/response_counts.mtx.gz",
        gzip_mtx(response.len(), col, &entries)?,
        vec![
            ("perturb_papalexi2021_lowmoi/genes.tsv".into(), genes),
            ("perturb_papalexi2021_lowmoi/cells.tsv".into(), cells),
        ],
    ))
}

/// A genes × cells integer MatrixMarket file (1-based (row, column, count) entries), gzipped
/// with a zero timestamp so the bytes are reproducible.
fn gzip_mtx(rows: usize, cols: usize, entries: &[(usize, usize, u64)]) -> Result<Vec<u8>> {
    use std::io::Write as _;
    let mut mtx = format!(
        "%%MatrixMarket matrix coordinate integer general\n% synthetic: genes x cells\n{rows} {cols} {}\n",
        entries.len()
    );
    for (r, c, v) in entries {
        writeln!(mtx, "{r} {c} {v}")?;
    }
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    enc.write_all(mtx.as_bytes())?;
    Ok(enc.finish()?)
}

/// The ECCITE-seq panel's 49 antibodies, as the real ADT matrix names them.
const ANTIBODIES: [&str; 49] = [
    "B220 (CD45R)",
    "B7-H1 (PD-L1)",
    "C-kit (CD117)",
    "CCR7",
    "CD11b",
    "CD11c",
    "CD138",
    "CD14",
    "CD16",
    "CD19",
    "CD1a",
    "CD2",
    "CD223 (lag3)",
    "CD24",
    "CD26 (Adenosine)",
    "CD27",
    "CD28",
    "CD3",
    "CD34",
    "CD366 (tim3)",
    "CD4",
    "CD44",
    "CD45",
    "CD45RA",
    "CD45RO",
    "CD5",
    "CD56",
    "CD62L",
    "CD66b",
    "CD69",
    "CD7",
    "CD77",
    "CD8",
    "CTLA4",
    "EpCAM (CD326)",
    "HLA-A,B,C",
    "IL7Ralpha (CD127)",
    "IgG1",
    "IgG2a",
    "LAMP1",
    "MHCII (HLA-DR)",
    "Ox40 (CD134)",
    "PD-1 (CD279)",
    "PD-L1 (CD274)",
    "PD1 (CD279)",
    "PECAM (CD31)",
    "Siglec-8",
    "TCRb",
    "TCRg",
];

/// (target symbol, fixture gene) for every target gene of the integration task's antibody
/// table: genes 300.. in sorted symbol order, the T-cell receptor genes on genes without an
/// embedding (as in the real data, where they are not protein-coding).
fn antibody_target_genes() -> Vec<(&'static str, usize)> {
    const TARGETS: [&str; 47] = [
        "CCR7", "CD14", "CD19", "CD1A", "CD2", "CD24", "CD27", "CD274", "CD28", "CD34", "CD3E",
        "CD4", "CD44", "CD5", "CD69", "CD7", "CD8A", "CEACAM8", "CTLA4", "DPP4", "EPCAM", "FCGR3A",
        "FCGR3B", "HAVCR2", "HLA-A", "HLA-B", "HLA-C", "HLA-DRA", "HLA-DRB1", "IL7R", "ITGAM",
        "ITGAX", "KIT", "LAG3", "LAMP1", "NCAM1", "PDCD1", "PECAM1", "PTPRC", "SDC1", "SELL",
        "SIGLEC8", "TNFRSF4", "TRBC1", "TRBC2", "TRGC1", "TRGC2",
    ];
    let (mut protein, mut tcr) = (300, GENES - WITHOUT_EMBEDDING);
    TARGETS
        .iter()
        .map(|&t| {
            let g = if t.starts_with("TR") {
                &mut tcr
            } else {
                &mut protein
            };
            *g += 1;
            (t, *g - 1)
        })
        .collect()
}

/// A CITE-seq set in the citeseq_eccite_pbmc layout: 5 planted types of 16 cells (the gating
/// rule's B, myeloid, CD4 T, CD8 T and NK) plus 4 cells of no type and 2 of two types. ADT:
/// Poisson(3) background and Poisson(300) on the type's markers. RNA over 140 genes and the
/// marker targets: Poisson counts rising with each gene's latent alignment to the mean latent
/// vector of the type's marker targets, so both modalities point the same way per type.
/// Returns the gzip MatrixMarket RNA file separately (bytes).
#[allow(clippy::type_complexity)]
fn integration_files(
    latent: &[Vec<f32>],
) -> Result<(&'static str, Vec<u8>, Vec<(String, String)>)> {
    use rand_distr::Poisson;
    let mut rng = ChaCha8Rng::seed_from_u64(SEED + 6);
    let gene_of: std::collections::HashMap<&str, usize> =
        antibody_target_genes().into_iter().collect();
    let marker_genes = |ab: &[&str]| -> Vec<usize> {
        ab.iter()
            .map(|a| match *a {
                "CD19" => gene_of["CD19"],
                "CD11b" => gene_of["ITGAM"],
                "CD11c" => gene_of["ITGAX"],
                "CD4" => gene_of["CD4"],
                "CD8" => gene_of["CD8A"],
                "CD5" => gene_of["CD5"],
                "CD2" => gene_of["CD2"],
                _ => gene_of["CD7"],
            })
            .collect()
    };
    // (markers, cells): the five types, then cells of no type and of two types.
    let groups: [(&[&str], usize); 7] = [
        (&["CD19"], 16),
        (&["CD11b", "CD11c"], 16),
        (&["CD4", "CD5", "CD2"], 16),
        (&["CD8", "CD5", "CD2"], 16),
        (&["CD7", "CD2"], 16),
        (&[], 4),
        (&["CD8", "CD5", "CD11b"], 2),
    ];
    let rna_genes: Vec<usize> = (0..140)
        .chain(
            gene_of
                .values()
                .copied()
                .filter(|&g| g < GENES - WITHOUT_EMBEDDING),
        )
        .collect::<std::collections::BTreeSet<usize>>()
        .into_iter()
        .collect();
    let mut adt = String::from("cell");
    for a in ANTIBODIES {
        if a.contains(',') {
            write!(adt, ",\"{a}\"")?;
        } else {
            write!(adt, ",{a}")?;
        }
    }
    adt.push('\n');
    let mut cells = String::from("col\tcell\trna_total_umi\n");
    let mut entries = Vec::new();
    let mut col = 0;
    for (t, (markers, n)) in groups.iter().enumerate() {
        let genes = marker_genes(markers);
        let mut dir = vec![0f32; DIM];
        for &g in &genes {
            dir.iter_mut().zip(&latent[g]).for_each(|(d, v)| *d += v);
        }
        let norm = dir.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-6);
        for c in 0..*n {
            col += 1;
            let cell = format!("FXCITE{t}{c:02}");
            write!(adt, "{cell}")?;
            for a in ANTIBODIES {
                let lambda = if markers.contains(&a) { 300.0 } else { 3.0 };
                let k: f64 = Poisson::new(lambda).expect("positive").sample(&mut rng);
                write!(adt, ",{k}")?;
            }
            adt.push('\n');
            let mut total = 0u64;
            for (i, &g) in rna_genes.iter().enumerate() {
                let gn = latent[g].iter().map(|v| v * v).sum::<f32>().sqrt();
                let cos = latent[g].iter().zip(&dir).map(|(a, b)| a * b).sum::<f32>() / (gn * norm);
                let lambda = 2.0 * (2.0 * cos as f64).exp();
                let k: f64 = Poisson::new(lambda).expect("positive").sample(&mut rng);
                if k > 0.0 {
                    entries.push((i + 1, col, k as u64));
                    total += k as u64;
                }
            }
            writeln!(cells, "{col}\t{cell}\t{total}")?;
        }
    }
    let mut genes = String::from("row\toriginal_name\tsymbol\n");
    for (i, &g) in rna_genes.iter().enumerate() {
        writeln!(genes, "{}\thg19_{}\t{}", i + 1, symbol(g), symbol(g))?;
    }
    Ok((
        "citeseq_eccite_pbmc/rna_counts.mtx.gz",
        gzip_mtx(rna_genes.len(), col, &entries)?,
        vec![
            ("citeseq_eccite_pbmc/rna_genes.tsv".into(), genes),
            ("citeseq_eccite_pbmc/cells.tsv".into(), cells),
            ("citeseq_eccite_pbmc/adt_counts.csv".into(), adt),
        ],
    ))
}

/// Words of the tiny BERT's WordPiece vocabulary (after the five special tokens).
const TINY_WORDS: &[&str] = &[
    "gene",
    "protein",
    "binding",
    "kinase",
    "cell",
    "cycle",
    "dna",
    "repair",
    "the",
    "of",
    "a",
    "is",
    "in",
    "and",
    "tumor",
    "suppressor",
    "transcription",
    "factor",
    "receptor",
    "membrane",
    "##s",
    "##ing",
    "##ase",
    "signal",
    "pathway",
    ".",
    ",",
    "(",
    ")",
];

/// Writes a tiny BERT model folder (config.json, model.safetensors with seeded random weights,
/// tokenizer.json with a WordPiece vocabulary) for tests. Like MiniLM's, its tokenizer pads every
/// input to a fixed length, which the encoder must override.
pub fn write_tiny_bert(dir: &Path) -> Result<()> {
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};
    use candle_transformers::models::bert::{BertModel, Config};
    std::fs::create_dir_all(dir)?;
    let vocab_size = 5 + TINY_WORDS.len();
    let config = serde_json::json!({
        "architectures": ["BertModel"], "model_type": "bert",
        "vocab_size": vocab_size, "hidden_size": 16, "num_hidden_layers": 2,
        "num_attention_heads": 2, "intermediate_size": 32, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": 64, "type_vocab_size": 2, "initializer_range": 0.02,
        "layer_norm_eps": 1e-12, "pad_token_id": 0
    });
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config)?,
    )?;
    let cfg: Config = serde_json::from_value(config)?;
    let varmap = VarMap::new();
    BertModel::load(
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        &cfg,
    )?;
    write_seeded_weights(&varmap, &dir.join("model.safetensors"), SEED + 1)?;
    write_tiny_tokenizer(dir)?;
    std::fs::write(
        dir.join("sentence_bert_config.json"),
        r#"{"max_seq_length": 32}"#,
    )?;
    Ok(())
}

/// Fills every variable a model created in `varmap` with seeded values (VarMap's own
/// initialisation is not seeded) and saves them as safetensors: norm weights near 1, the rest
/// N(0, 0.3²).
fn write_seeded_weights(varmap: &candle_nn::VarMap, path: &Path, seed: u64) -> Result<()> {
    let mut named: Vec<(String, Vec<usize>)> = varmap
        .data()
        .lock()
        .expect("varmap lock")
        .iter()
        .map(|(k, v)| (k.clone(), v.dims().to_vec()))
        .collect();
    named.sort();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let buffers: Vec<(String, Vec<usize>, Vec<u8>)> = named
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let is_norm = name.ends_with("LayerNorm.weight") || name.ends_with("norm.weight");
            let (base, scale) = if is_norm { (1.0, 0.1) } else { (0.0, 0.3) };
            let bytes = (0..n)
                .flat_map(|_| {
                    let z: f32 = StandardNormal.sample(&mut rng);
                    (base + scale * z).to_le_bytes()
                })
                .collect();
            (name, shape, bytes)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = buffers
        .iter()
        .map(|(name, shape, bytes)| {
            let view = safetensors::tensor::TensorView::new(
                safetensors::tensor::Dtype::F32,
                shape.clone(),
                bytes,
            )?;
            Ok((name.clone(), view))
        })
        .collect::<Result<_>>()?;
    std::fs::write(path, safetensors::serialize(views, None)?)?;
    Ok(())
}

/// A WordPiece tokenizer over [`TINY_WORDS`] that, like MiniLM's, pads every input to a fixed
/// length (the encoders must override that).
fn write_tiny_tokenizer(dir: &Path) -> Result<()> {
    use tokenizers::models::wordpiece::WordPiece;
    use tokenizers::normalizers::bert::BertNormalizer;
    use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
    use tokenizers::processors::bert::BertProcessing;
    use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer};
    let vocab: Vec<&str> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .chain(TINY_WORDS)
        .copied()
        .collect();
    let vocab_path = dir.join("vocab.txt");
    std::fs::write(&vocab_path, vocab.join("\n") + "\n")?;
    let model = WordPiece::from_file(&vocab_path.display().to_string())
        .unk_token("[UNK]".into())
        .build()
        .map_err(|e| anyhow::anyhow!("wordpiece: {e}"))?;
    let mut tok = Tokenizer::new(model);
    tok.with_normalizer(Some(BertNormalizer::default()));
    tok.with_pre_tokenizer(Some(BertPreTokenizer));
    tok.with_post_processor(Some(BertProcessing::new(
        ("[SEP]".into(), 3),
        ("[CLS]".into(), 2),
    )));
    tok.with_padding(Some(PaddingParams {
        strategy: PaddingStrategy::Fixed(48),
        ..Default::default()
    }));
    tok.save(dir.join("tokenizer.json"), true)
        .map_err(|e| anyhow::anyhow!("cannot save tokenizer: {e}"))?;
    Ok(())
}

/// Writes a tiny Llama (`model_type = "llama"`) or Qwen2 decoder folder with seeded weights and
/// the tiny tokenizer, for tests of decoder embeddings and fine-tuning.
pub fn write_tiny_decoder(dir: &Path, model_type: &str) -> Result<()> {
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};
    std::fs::create_dir_all(dir)?;
    let config = serde_json::json!({
        "model_type": model_type, "vocab_size": 5 + TINY_WORDS.len() + CHAT_TOKENS.len(),
        "hidden_size": 16,
        "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "max_position_embeddings": 64, "tie_word_embeddings": model_type == "qwen2"
    });
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config)?,
    )?;
    let cfg: crate::model::DecoderConfig = serde_json::from_value(config)?;
    let varmap = VarMap::new();
    crate::model::Decoder::load(
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        &cfg,
    )?;
    write_seeded_weights(&varmap, &dir.join("model.safetensors"), SEED + 2)?;
    write_tiny_tokenizer(dir)?;
    // Chat-template markers as single special tokens, as in real chat models.
    let path = dir.join("tokenizer.json");
    let mut tok = tokenizers::Tokenizer::from_file(&path)
        .map_err(|e| anyhow::anyhow!("cannot read tokenizer: {e}"))?;
    let added: Vec<tokenizers::AddedToken> = CHAT_TOKENS
        .iter()
        .map(|t| tokenizers::AddedToken::from(*t, true))
        .collect();
    tok.add_special_tokens(&added);
    tok.save(&path, true)
        .map_err(|e| anyhow::anyhow!("cannot save tokenizer: {e}"))?;
    Ok(())
}

/// ChatML's markers, added to the tiny decoder's tokenizer after the WordPiece vocabulary.
const CHAT_TOKENS: [&str; 3] = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"];

/// Converts the tiny decoder in `dir` (see [`write_tiny_decoder`]) to a GGUF file as llama.cpp
/// would: llama.cpp tensor names, Llama q/k rows permuted, f32 tensors, and a small byte-level
/// BPE vocabulary (tokens `<|endoftext|> a b c Ġ ab Ġa abc Ġab 1 2`, four merges) in metadata.
pub fn write_tiny_gguf(dir: &Path, out: &Path) -> Result<()> {
    use candle_core::quantized::gguf_file::{self, Value};
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::Device;
    let cfg: crate::model::DecoderConfig =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json"))?)?;
    let tensors =
        crate::model::weights::load_tensors(&[dir.join("model.safetensors")], &Device::Cpu)?;
    let arch = cfg.model_type.as_str();
    let mut qtensors: Vec<(String, QTensor)> = Vec::new();
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    for name in names {
        let gname = crate::model::gguf::gguf_name(name)
            .ok_or_else(|| anyhow::anyhow!("no GGUF name for {name}"))?;
        let mut t = tensors[name].clone();
        if arch == "llama" && gname.contains(".attn_q.") {
            t = crate::model::gguf::permute_rows(&t, cfg.num_attention_heads, false)?;
        } else if arch == "llama" && gname.contains(".attn_k.") {
            t = crate::model::gguf::permute_rows(&t, cfg.kv_heads(), false)?;
        }
        qtensors.push((gname, QTensor::quantize(&t, GgmlDType::F32)?));
    }
    let s = |v: &str| Value::String(v.to_string());
    let u = |v: usize| Value::U32(v as u32);
    let tokens = [
        "<|endoftext|>",
        "a",
        "b",
        "c",
        "Ġ",
        "ab",
        "Ġa",
        "abc",
        "Ġab",
        "1",
        "2",
    ];
    let metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), s(arch)),
        (format!("{arch}.embedding_length"), u(cfg.hidden_size)),
        (format!("{arch}.block_count"), u(cfg.num_hidden_layers)),
        (
            format!("{arch}.feed_forward_length"),
            u(cfg.intermediate_size),
        ),
        (
            format!("{arch}.attention.head_count"),
            u(cfg.num_attention_heads),
        ),
        (format!("{arch}.attention.head_count_kv"), u(cfg.kv_heads())),
        (
            format!("{arch}.attention.layer_norm_rms_epsilon"),
            Value::F32(cfg.rms_norm_eps as f32),
        ),
        (
            format!("{arch}.rope.freq_base"),
            Value::F32(cfg.rope_theta as f32),
        ),
        (
            format!("{arch}.context_length"),
            u(cfg.max_position_embeddings),
        ),
        (format!("{arch}.vocab_size"), u(cfg.vocab_size)),
        ("tokenizer.ggml.model".into(), s("gpt2")),
        ("tokenizer.ggml.pre".into(), s("smollm")),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(tokens.iter().map(|t| s(t)).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(
                (0..tokens.len())
                    .map(|i| Value::I32(if i == 0 { 3 } else { 1 }))
                    .collect(),
            ),
        ),
        (
            "tokenizer.ggml.merges".into(),
            Value::Array(
                ["a b", "Ġ a", "ab c", "Ġa b"]
                    .iter()
                    .map(|m| s(m))
                    .collect(),
            ),
        ),
        ("tokenizer.ggml.bos_token_id".into(), u(0)),
        ("tokenizer.ggml.eos_token_id".into(), u(0)),
    ];
    let meta_refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> =
        qtensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut file = std::fs::File::create(out)?;
    gguf_file::write(&mut file, &meta_refs, &tensor_refs)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed `fixtures/` folder is exactly what the generator writes.
    #[test]
    fn committed_fixtures_match_the_generator() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path()).unwrap();
        let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let mut stack = vec![tmp.path().to_path_buf()];
        let mut n = 0;
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                let rel = p.strip_prefix(tmp.path()).unwrap();
                let want = std::fs::read(committed.join(rel)).unwrap_or_else(|_| {
                    panic!(
                        "fixtures/{} missing: run `bftkit fixtures --out fixtures`",
                        rel.display()
                    )
                });
                assert!(
                    std::fs::read(&p).unwrap() == want,
                    "fixtures/{} is stale",
                    rel.display()
                );
                n += 1;
            }
        }
        assert!(n >= 12);
    }
}
