//! Gene embedding files: a matrix of f32 vectors keyed by gene id.
//!
//! Two formats, chosen by file extension:
//! - delimited text (`.tsv`, `.txt` tab-separated; `.csv` comma-separated): first column the gene id,
//!   then one float per column; an optional header row (detected when no value column parses as a
//!   number, or when three or more value columns are the column numbers `0, 1, 2, …` or
//!   `1, 2, 3, …`); `#` starts a comment line;
//! - safetensors (`.safetensors`): tensor `embeddings` (f32 or f64, shape [n, d]) with metadata
//!   `gene_ids` (a JSON array of n strings) and optional `source`.
//!
//! Owns parsing, validation (ragged rows, non-numbers, NaN/inf, duplicate ids, empty files) and
//! writing. It does not resolve gene identifiers; see [`crate::io::gene_ids`].

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use sha2::{Digest, Sha256};

/// A set of gene vectors: row `i` of `values` (row-major, `dim` wide) belongs to `ids[i]`.
/// Built only through [`GeneEmbeddings::new`] (or a reader), which checks shape, finiteness and
/// unique ids; read through the accessors.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneEmbeddings {
    pub(crate) ids: Vec<String>,
    pub(crate) dim: usize,
    pub(crate) values: Vec<f32>,
    /// Free text saying where the vectors came from (model, texts); empty when unknown.
    pub(crate) source: String,
}

/// File formats the embedding reader and writer understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingFormat {
    Tsv,
    Csv,
    Safetensors,
}

impl EmbeddingFormat {
    /// Picks the format from the file extension.
    pub fn from_path(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase());
        match ext.as_deref() {
            Some("tsv") | Some("txt") => Ok(Self::Tsv),
            Some("csv") => Ok(Self::Csv),
            Some("safetensors") => Ok(Self::Safetensors),
            _ => bail!(
                "{}: unknown embedding file extension; use .tsv, .txt, .csv or .safetensors",
                path.display()
            ),
        }
    }
}

/// The largest magnitude an embedding value may have: sums of squared differences over 10^5
/// dimensions stay below f32's maximum (3.4·10^38), so distances, norms and the probes'
/// standardisation are computed without overflow.
pub const MAX_ABS_VALUE: f32 = 1e15;

impl GeneEmbeddings {
    /// Builds a set from parts, checking shape, finiteness and id uniqueness.
    pub fn new(ids: Vec<String>, dim: usize, values: Vec<f32>, source: String) -> Result<Self> {
        if ids.is_empty() {
            bail!("embedding set is empty");
        }
        if dim == 0 {
            bail!("embedding width is 0");
        }
        if values.len() != ids.len() * dim {
            bail!(
                "embedding matrix has {} values, expected {} genes x {} = {}",
                values.len(),
                ids.len(),
                dim,
                ids.len() * dim
            );
        }
        if let Some(pos) = values.iter().position(|v| !v.is_finite()) {
            bail!(
                "gene '{}' (row {}) has a non-finite value in column {}",
                ids[pos / dim],
                pos / dim + 1,
                pos % dim + 1
            );
        }
        if let Some(pos) = values.iter().position(|v| v.abs() > MAX_ABS_VALUE) {
            bail!(
                "gene '{}' (row {}) has the value {:e} in column {}: beyond ±{MAX_ABS_VALUE:e}, \
                 where squared distances overflow; rescale the embeddings",
                ids[pos / dim],
                pos / dim + 1,
                values[pos],
                pos % dim + 1
            );
        }
        // Task genes find their rows ignoring case, so ids differing only in case collide.
        let mut seen: HashMap<String, usize> = HashMap::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            if let Some(first) = seen.insert(id.to_ascii_uppercase(), i) {
                bail!(
                    "gene id '{id}' appears twice (rows {} and {}, as '{}'; ids are matched \
                     ignoring case)",
                    first + 1,
                    i + 1,
                    ids[first]
                );
            }
        }
        Ok(Self {
            ids,
            dim,
            values,
            source,
        })
    }

    /// The gene ids, one per row.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// The width of a vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Every vector, row-major.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// Where the vectors came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The set with its source described anew.
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The vector of row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }

    /// Reads a file in the format its extension names.
    pub fn read(path: &Path) -> Result<Self> {
        match EmbeddingFormat::from_path(path)? {
            EmbeddingFormat::Tsv => read_delimited(path, b'\t'),
            EmbeddingFormat::Csv => read_delimited(path, b','),
            EmbeddingFormat::Safetensors => read_safetensors(path),
        }
    }

    /// Writes the set in the format the extension names (text files get a header row).
    pub fn write(&self, path: &Path) -> Result<()> {
        let bytes = match EmbeddingFormat::from_path(path)? {
            EmbeddingFormat::Tsv => self.to_delimited('\t'),
            EmbeddingFormat::Csv => self.to_delimited(','),
            EmbeddingFormat::Safetensors => self.to_safetensors()?,
        };
        super::write::write_file(path, bytes)
    }

    fn to_delimited(&self, sep: char) -> Vec<u8> {
        use std::fmt::Write;
        let mut out = String::with_capacity(self.values.len() * 12);
        out.push_str("gene");
        for j in 0..self.dim {
            let _ = write!(out, "{sep}d{j}");
        }
        out.push('\n');
        for (i, id) in self.ids.iter().enumerate() {
            out.push_str(id);
            for v in self.row(i) {
                // `{}` on f32 prints the shortest text that reads back to the same bits.
                let _ = write!(out, "{sep}{v}");
            }
            out.push('\n');
        }
        out.into_bytes()
    }

    fn to_safetensors(&self) -> Result<Vec<u8>> {
        let bytes: Vec<u8> = self.values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = TensorView::new(Dtype::F32, vec![self.len(), self.dim], &bytes)?;
        let mut meta = HashMap::new();
        meta.insert("gene_ids".to_string(), serde_json::to_string(&self.ids)?);
        meta.insert("source".to_string(), self.source.clone());
        canonical_header(safetensors::serialize([("embeddings", view)], Some(meta))?)
    }
}

/// A safetensors file with its JSON header's keys sorted: the crate writes the metadata in hash
/// map order, which changes from run to run, so the same embeddings would get different bytes
/// (and a different SHA-256 in the results). The data offsets are relative to the header's end,
/// so only the header (padded to 8 bytes, as the format asks) is rewritten.
fn canonical_header(bytes: Vec<u8>) -> Result<Vec<u8>> {
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8-byte length")) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n])?;
    // serde_json's map is ordered by key (no `preserve_order` feature).
    let mut text = serde_json::to_string(&header)?.into_bytes();
    text.resize(text.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    Ok(out)
}

/// SHA-256 of a file's bytes, hex-encoded: identifies exactly which embeddings a result used.
pub fn file_sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

/// Whether the first row of a delimited file is a header: no value column is a number (`gene,
/// dim_0, dim_1`), or three or more value columns are the column numbers `0, 1, 2, …` or
/// `1, 2, 3, …` (what data frame libraries write; no embedding is exactly that sequence).
fn is_header(record: &csv::StringRecord) -> bool {
    if record.len() < 2 {
        return false;
    }
    // Three values at least before a row of column numbers counts as a header.
    let values: Vec<Option<f64>> = (1..record.len())
        .map(|j| record[j].trim().parse::<f64>().ok())
        .collect();
    if values.iter().all(|v| v.is_none()) {
        return true;
    }
    values.len() >= 3
        && [0.0, 1.0].iter().any(|&start| {
            values
                .iter()
                .enumerate()
                .all(|(j, v)| *v == Some(start + j as f64))
        })
}

fn read_delimited(path: &Path, delimiter: u8) -> Result<GeneEmbeddings> {
    let file = path.display();
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .quoting(delimiter == b',')
        .from_path(path)
        .with_context(|| format!("{file}: cannot open"))?;
    let mut ids = Vec::new();
    let mut values = Vec::new();
    let mut first_line: HashMap<String, (u64, String)> = HashMap::new();
    let mut dim: Option<(usize, u64)> = None;
    let mut record = csv::StringRecord::new();
    let mut first = true;
    loop {
        let more = reader
            .read_record(&mut record)
            .with_context(|| format!("{file}: not valid delimited text"))?;
        if !more {
            break;
        }
        let line = record.position().map_or(0, |p| p.line());
        if record.len() == 1 && record[0].trim().is_empty() {
            continue;
        }
        if first {
            first = false;
            if is_header(&record) {
                continue;
            }
        }
        let width = record.len().saturating_sub(1);
        if width == 0 {
            bail!("{file}:{line}: row has a gene id but no values");
        }
        match dim {
            None => dim = Some((width, line)),
            Some((d, l)) if d != width => {
                bail!("{file}:{line}: row has {width} values, but line {l} has {d} (ragged rows)")
            }
            _ => {}
        }
        let id = record[0].trim().to_string();
        if id.is_empty() {
            bail!("{file}:{line}: empty gene id");
        }
        for j in 1..record.len() {
            let text = record[j].trim();
            let v: f32 = text.parse().map_err(|_| {
                // A short value is shown (a typo); a long one is not echoed.
                let shown = if text.chars().count() <= 32 {
                    format!("value '{text}'")
                } else {
                    "a long text".to_string()
                };
                anyhow::anyhow!("{file}:{line}: column {} {shown} is not a number", j + 1)
            })?;
            if !v.is_finite() {
                bail!(
                    "{file}:{line}: column {} value '{text}' is not finite",
                    j + 1
                );
            }
            if v.abs() > MAX_ABS_VALUE {
                bail!(
                    "{file}:{line}: column {} value '{text}' is beyond ±{MAX_ABS_VALUE:e}, where \
                     squared distances overflow; rescale the embeddings",
                    j + 1
                );
            }
            values.push(v);
        }
        if let Some((prev, as_)) = first_line.insert(id.to_ascii_uppercase(), (line, id.clone())) {
            bail!(
                "{file}:{line}: duplicate gene id '{id}' (first on line {prev} as '{as_}'; ids \
                 are matched ignoring case)"
            );
        }
        ids.push(id);
    }
    let Some((dim, _)) = dim else {
        bail!("{file}: no embedding rows (empty file)");
    };
    GeneEmbeddings::new(ids, dim, values, String::new()).with_context(|| file.to_string())
}

fn read_safetensors(path: &Path) -> Result<GeneEmbeddings> {
    let file = path.display();
    let bytes = std::fs::read(path).with_context(|| format!("{file}: cannot read"))?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| anyhow::anyhow!("{file}: not a safetensors file ({e})"))?;
    let tensors = SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow::anyhow!("{file}: not a safetensors file ({e})"))?;
    let view = tensors.tensor("embeddings").map_err(|_| {
        anyhow::anyhow!(
            "{file}: no tensor named 'embeddings' (found: {:?})",
            tensors.names()
        )
    })?;
    let shape = view.shape();
    if shape.len() != 2 {
        bail!("{file}: 'embeddings' has shape {shape:?}; expected [genes, dim]");
    }
    let (n, dim) = (shape[0], shape[1]);
    let data = view.data();
    let values: Vec<f32> = match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8-byte chunk")) as f32)
            .collect(),
        other => bail!("{file}: 'embeddings' has dtype {other:?}; expected F32 or F64"),
    };
    let meta = header.metadata().clone().unwrap_or_default();
    let ids_json = meta.get("gene_ids").ok_or_else(|| {
        anyhow::anyhow!("{file}: metadata has no 'gene_ids' (a JSON array of gene ids)")
    })?;
    let ids: Vec<String> = serde_json::from_str(ids_json)
        .with_context(|| format!("{file}: metadata 'gene_ids' is not a JSON array of strings"))?;
    if ids.len() != n {
        bail!(
            "{file}: metadata lists {} gene ids but 'embeddings' has {n} rows",
            ids.len()
        );
    }
    let source = meta.get("source").cloned().unwrap_or_default();
    GeneEmbeddings::new(ids, dim, values, source).with_context(|| file.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn err(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
        let p = write(dir, name, text);
        format!("{:#}", GeneEmbeddings::read(&p).unwrap_err())
    }

    #[test]
    fn reads_tsv_with_and_without_header() {
        let dir = tempfile::tempdir().unwrap();
        let a = GeneEmbeddings::read(&write(
            &dir,
            "a.tsv",
            "gene\tx\ty\nTP53\t1\t2\nBRCA1\t3\t4.5\n",
        ))
        .unwrap();
        let b = GeneEmbeddings::read(&write(&dir, "b.tsv", "TP53\t1\t2\nBRCA1\t3\t4.5\n")).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.ids, vec!["TP53", "BRCA1"]);
        assert_eq!(a.row(1), &[3.0, 4.5]);
        // A header of column numbers (as data frame libraries write it) is a header, not a gene.
        for header in ["gene,0,1,2\n", ",0,1,2\n", "id,1,2,3\n"] {
            let c = GeneEmbeddings::read(&write(
                &dir,
                "c.csv",
                &format!("{header}TP53,1,2,3\nBRCA1,3,4.5,6\n"),
            ))
            .unwrap();
            assert_eq!(c.ids, vec!["TP53", "BRCA1"], "{header}");
        }
        // A first row of ordinary numbers is data.
        let d = GeneEmbeddings::read(&write(&dir, "d.csv", "TP53,0,1,3\nBRCA1,0,1\n,"));
        assert!(format!("{:#}", d.unwrap_err()).contains("d.csv:2"));
        let d = GeneEmbeddings::read(&write(&dir, "d.tsv", "TP53\t0\nBRCA1\t1\n")).unwrap();
        assert_eq!(d.ids, vec!["TP53", "BRCA1"]);
    }

    #[test]
    fn round_trips_every_format() {
        let dir = tempfile::tempdir().unwrap();
        let e = GeneEmbeddings::new(
            vec!["A".into(), "B".into()],
            3,
            vec![0.1, -2.5e-7, 3.0, 1.0 / 3.0, 5.0, -6.0],
            "test".into(),
        )
        .unwrap();
        for name in ["x.tsv", "x.csv", "x.safetensors"] {
            let p = dir.path().join(name);
            e.write(&p).unwrap();
            let back = GeneEmbeddings::read(&p).unwrap();
            assert_eq!(back.ids, e.ids, "{name}");
            assert_eq!(back.values, e.values, "{name}");
        }
        let back = GeneEmbeddings::read(&dir.path().join("x.safetensors")).unwrap();
        assert_eq!(back.source, "test");
        // The same set gives the same bytes, whatever the order of the metadata's hash map.
        let bytes = e.to_safetensors().unwrap();
        assert!((0..20).all(|_| e.to_safetensors().unwrap() == bytes));
    }

    #[test]
    fn bad_inputs_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let e = err(&dir, "ragged.tsv", "A\t1\t2\nB\t1\n");
        assert!(e.contains("ragged.tsv:2") && e.contains("ragged"), "{e}");
        let e = err(&dir, "nan.tsv", "A\t1\t2\nB\t1\tNaN\n");
        assert!(e.contains("nan.tsv:2") && e.contains("not finite"), "{e}");
        let e = err(&dir, "inf.csv", "A,1,2\nB,inf,1\n");
        assert!(e.contains("inf.csv:2") && e.contains("not finite"), "{e}");
        let e = err(&dir, "huge.tsv", "A\t1\t2\nB\t1e37\t1\n");
        assert!(e.contains("huge.tsv:2") && e.contains("rescale"), "{e}");
        let e = err(&dir, "word.tsv", "A\t1\t2\nB\t1\tabc\n");
        assert!(
            e.contains("word.tsv:2") && e.contains("'abc' is not a number"),
            "{e}"
        );
        let e = err(&dir, "dup.tsv", "A\t1\t2\nB\t1\t2\nA\t0\t0\n");
        assert!(
            e.contains("dup.tsv:3") && e.contains("first on line 1"),
            "{e}"
        );
        let e = err(&dir, "case.tsv", "GENE1\t1\t2\ngene1\t0\t0\n");
        assert!(
            e.contains("case.tsv:2") && e.contains("'GENE1'") && e.contains("ignoring case"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            GeneEmbeddings::new(
                vec!["Tp53".into(), "TP53".into()],
                1,
                vec![1.0, 2.0],
                "".into()
            )
            .unwrap_err()
        );
        assert!(e.contains("rows 1 and 2"), "{e}");
        let e = err(&dir, "empty.tsv", "");
        assert!(e.contains("empty.tsv") && e.contains("empty file"), "{e}");
        let e = err(&dir, "header_only.tsv", "gene\tx\ty\n");
        assert!(e.contains("empty file"), "{e}");
        let e = err(&dir, "noval.tsv", "A\nB\n");
        assert!(e.contains("noval.tsv:1") && e.contains("no values"), "{e}");
        let e = err(&dir, "x.npy", "A\t1\n");
        assert!(e.contains("unknown embedding file extension"), "{e}");
        let e = err(&dir, "bad.safetensors", "not really");
        assert!(
            e.contains("bad.safetensors") && e.contains("not a safetensors"),
            "{e}"
        );
    }

    #[test]
    fn safetensors_id_count_must_match_rows() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = [1f32, 2., 3., 4.]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let view = TensorView::new(Dtype::F32, vec![2, 2], &bytes).unwrap();
        let meta = HashMap::from([("gene_ids".to_string(), "[\"A\"]".to_string())]);
        let data = safetensors::serialize([("embeddings", view)], Some(meta)).unwrap();
        let p = dir.path().join("m.safetensors");
        std::fs::write(&p, data).unwrap();
        let e = format!("{:#}", GeneEmbeddings::read(&p).unwrap_err());
        assert!(
            e.contains("lists 1 gene ids but 'embeddings' has 2 rows"),
            "{e}"
        );
    }
}
