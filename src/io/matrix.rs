//! Expression matrices (cells × genes) as single-cell users have them: 10x-style MatrixMarket
//! (`.mtx` or `.mtx.gz`, with gene and cell name lists) and dense CSV/TSV (one row per cell, a
//! header of gene names). Stored sparse by cell (CSR). Truncated or inconsistent files are errors
//! naming the file and line.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{bail, Context, Result};

/// A cells × genes matrix in compressed sparse rows (one row per cell).
#[derive(Debug, Clone, PartialEq)]
pub struct ExprMatrix {
    pub cells: Vec<String>,
    pub genes: Vec<String>,
    /// Row `c` holds entries `indptr[c]..indptr[c + 1]` of `indices` (gene) and `values`.
    pub indptr: Vec<usize>,
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

impl ExprMatrix {
    pub fn n_cells(&self) -> usize {
        self.cells.len()
    }

    pub fn n_genes(&self) -> usize {
        self.genes.len()
    }

    /// (gene index, value) pairs of one cell.
    pub fn row(&self, c: usize) -> impl Iterator<Item = (usize, f32)> + '_ {
        let r = self.indptr[c]..self.indptr[c + 1];
        self.indices[r.clone()]
            .iter()
            .zip(&self.values[r])
            .map(|(&g, &v)| (g as usize, v))
    }

    /// Refuses a matrix that is not expression (counts or normalised counts): a negative or
    /// non-finite value is named by file, cell and gene. Library-size normalisation and the
    /// expression-weighted means of the cell tasks are meaningless (or NaN) on such values.
    pub fn check_expression(&self, file: &Path) -> Result<()> {
        for c in 0..self.n_cells() {
            if let Some((g, v)) = self.row(c).find(|&(_, v)| !(v.is_finite() && v >= 0.0)) {
                bail!(
                    "{}: cell '{}', gene '{}' has the value {v}; expression values must be \
                     counts or normalised counts (finite, >= 0), not scaled or centred data",
                    file.display(),
                    self.cells[c],
                    self.genes[g]
                );
            }
        }
        Ok(())
    }

    /// The matrix restricted to the given cells, in that order.
    pub fn select_cells(&self, keep: &[usize]) -> Self {
        let mut out = Self {
            cells: keep.iter().map(|&c| self.cells[c].clone()).collect(),
            genes: self.genes.clone(),
            indptr: vec![0],
            indices: Vec::new(),
            values: Vec::new(),
        };
        for &c in keep {
            let r = self.indptr[c]..self.indptr[c + 1];
            out.indices.extend_from_slice(&self.indices[r.clone()]);
            out.values.extend_from_slice(&self.values[r]);
            out.indptr.push(out.indices.len());
        }
        out
    }

    /// Builds the CSR form from (cell, gene, value) triplets; duplicates are summed.
    fn from_triplets(cells: Vec<String>, genes: Vec<String>, mut t: Vec<(u32, u32, f32)>) -> Self {
        t.sort_unstable_by_key(|&(c, g, _)| (c, g));
        let mut indptr = vec![0usize; cells.len() + 1];
        let (mut indices, mut values): (Vec<u32>, Vec<f32>) = (Vec::new(), Vec::new());
        let mut last: Option<(u32, u32)> = None;
        for (c, g, v) in t {
            if last == Some((c, g)) {
                *values.last_mut().expect("previous entry") += v;
                continue;
            }
            last = Some((c, g));
            indptr[c as usize + 1] += 1;
            indices.push(g);
            values.push(v);
        }
        for c in 0..cells.len() {
            indptr[c + 1] += indptr[c];
        }
        Self {
            cells,
            genes,
            indptr,
            indices,
            values,
        }
    }
}

fn open(path: &Path) -> Result<Box<dyn BufRead>> {
    let f =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let gz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    let inner: Box<dyn Read> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else {
        Box::new(f)
    };
    Ok(Box::new(BufReader::new(inner)))
}

/// Reads a MatrixMarket coordinate file. `genes_are_rows`: the file's rows are genes (10x
/// layout) rather than cells. `genes` and `cells` name the rows and columns in order.
pub fn read_mtx(
    path: &Path,
    genes: Vec<String>,
    cells: Vec<String>,
    genes_are_rows: bool,
) -> Result<ExprMatrix> {
    let file = path.display();
    let mut lines = open(path)?.lines().enumerate();
    let (_, header) = lines
        .next()
        .with_context(|| format!("{file}: empty file"))?;
    let header = header.with_context(|| format!("{file}:1: cannot read (corrupt gzip?)"))?;
    let h = header.to_ascii_lowercase();
    if !h.starts_with("%%matrixmarket matrix coordinate") {
        bail!("{file}:1: not a MatrixMarket coordinate file ('{header}')");
    }
    if h.contains("complex") || h.contains("pattern") {
        bail!("{file}:1: only integer or real matrices are supported");
    }
    let symmetric = h.contains("symmetric");
    let mut size: Option<(usize, usize, usize)> = None;
    let mut triplets = Vec::new();
    let mut entries = 0usize;
    let (n_rows, n_cols) = if genes_are_rows {
        (genes.len(), cells.len())
    } else {
        (cells.len(), genes.len())
    };
    for (i, line) in lines {
        let at = format!("{file}:{}", i + 1);
        let line = line.with_context(|| format!("{at}: cannot read (truncated or corrupt?)"))?;
        let t = line.trim();
        if t.is_empty() || t.starts_with('%') {
            continue;
        }
        let f: Vec<&str> = t.split_whitespace().collect();
        match size {
            None => {
                let nums: Vec<usize> = f
                    .iter()
                    .map(|x| x.parse())
                    .collect::<std::result::Result<_, _>>()
                    .with_context(|| format!("{at}: expected 'rows cols entries'"))?;
                let [r, c, n] = nums[..] else {
                    bail!("{at}: expected 'rows cols entries'");
                };
                if (r, c) != (n_rows, n_cols) {
                    bail!(
                        "{at}: the matrix is {r} x {c} but the name lists give {n_rows} x {n_cols}"
                    );
                }
                if r.checked_mul(c).is_none_or(|cells| n > cells) {
                    bail!("{at}: {n} entries cannot fit a {r} x {c} matrix");
                }
                if symmetric && r != c {
                    bail!("{at}: a symmetric matrix must be square, not {r} x {c}");
                }
                size = Some((r, c, n));
                // Grown as entries arrive beyond this: the header is not trusted with memory.
                triplets.reserve(n.min(1 << 20));
            }
            Some((r, c, _)) => {
                if f.len() != 3 {
                    bail!("{at}: expected 'row col value', got {} fields", f.len());
                }
                let (i, j): (usize, usize) = (
                    f[0].parse()
                        .with_context(|| format!("{at}: bad row '{}'", f[0]))?,
                    f[1].parse()
                        .with_context(|| format!("{at}: bad column '{}'", f[1]))?,
                );
                let v: f32 = f[2]
                    .parse()
                    .with_context(|| format!("{at}: bad value '{}'", f[2]))?;
                if i == 0 || j == 0 || i > r || j > c {
                    bail!("{at}: entry ({i}, {j}) outside the {r} x {c} matrix");
                }
                if !v.is_finite() {
                    bail!("{at}: value {v} is not finite");
                }
                entries += 1;
                let (row, col) = ((i - 1) as u32, (j - 1) as u32);
                let (cell, gene) = if genes_are_rows {
                    (col, row)
                } else {
                    (row, col)
                };
                triplets.push((cell, gene, v));
                if symmetric && i != j {
                    // Symmetric files list each off-diagonal entry once.
                    triplets.push((gene, cell, v));
                }
            }
        }
    }
    let Some((_, _, n)) = size else {
        bail!("{file}: no size line");
    };
    if entries != n {
        bail!("{file}: the header announces {n} entries but the file holds {entries} (truncated?)");
    }
    Ok(ExprMatrix::from_triplets(cells, genes, triplets))
}

/// Reads one name per line from column `col` (0-based) of a TSV, skipping a header line when
/// `header`; e.g. 10x `features.tsv` (col 1 = symbol) or `barcodes.tsv` (col 0).
pub fn read_names(path: &Path, col: usize, header: bool) -> Result<Vec<String>> {
    let file = path.display();
    let mut out = Vec::new();
    for (i, line) in open(path)?.lines().enumerate() {
        let line = line.with_context(|| format!("{file}:{}: cannot read", i + 1))?;
        if (header && i == 0) || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let Some(name) = f.get(col) else {
            bail!("{file}:{}: no column {}", i + 1, col + 1);
        };
        out.push(name.trim().to_string());
    }
    Ok(out)
}

/// Where a MatrixMarket file's gene and cell names are (files relative to `dir`; 0-based
/// columns; `header`: skip each file's first line) and how it is laid out.
pub struct MtxNames<'a> {
    pub dir: &'a Path,
    pub genes: Option<&'a str>,
    pub genes_column: usize,
    pub cells: Option<&'a str>,
    pub cells_column: usize,
    pub header: bool,
    pub genes_are_rows: bool,
}

/// A MatrixMarket `.mtx[.gz]` file with its name files, or else a dense CSV/TSV.
pub fn read_mtx_or_dense(path: &Path, names: &MtxNames<'_>) -> Result<ExprMatrix> {
    let name = path.to_string_lossy();
    if !(name.ends_with(".mtx") || name.ends_with(".mtx.gz")) {
        return read_dense(path);
    }
    let list = |f: Option<&str>, col: usize| -> Result<Vec<String>> {
        let f = f.with_context(|| {
            format!(
                "{}: a MatrixMarket matrix needs its gene and cell name files",
                path.display()
            )
        })?;
        read_names(&names.dir.join(f), col, names.header)
    };
    read_mtx(
        path,
        list(names.genes, names.genes_column)?,
        list(names.cells, names.cells_column)?,
        names.genes_are_rows,
    )
}

/// Reads a dense CSV/TSV: a header (first field the cell-id column's name, then gene names) and
/// one row per cell.
pub fn read_dense(path: &Path) -> Result<ExprMatrix> {
    let file = path.display();
    let delimiter = if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    {
        b','
    } else {
        b'\t'
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(open(path)?);
    let mut records = reader.records();
    let header = records
        .next()
        .with_context(|| format!("{file}: empty file"))?
        .with_context(|| format!("{file}:1: cannot read"))?;
    let genes: Vec<String> = header
        .iter()
        .skip(1)
        .map(|s| s.trim().to_string())
        .collect();
    if genes.is_empty() {
        bail!("{file}:1: expected a header of gene names after the cell-id column");
    }
    let (mut cells, mut t) = (Vec::new(), Vec::new());
    for (i, rec) in records.enumerate() {
        let at = format!("{file}:{}", i + 2);
        let rec = rec.with_context(|| format!("{at}: cannot read"))?;
        if rec.len() != genes.len() + 1 {
            bail!(
                "{at}: {} fields, the header has {}",
                rec.len(),
                genes.len() + 1
            );
        }
        let c = cells.len() as u32;
        cells.push(rec[0].trim().to_string());
        for (g, x) in rec.iter().skip(1).enumerate() {
            let v: f32 = x
                .trim()
                .parse()
                .with_context(|| format!("{at}: '{x}' (gene {}) is not a number", genes[g]))?;
            if !v.is_finite() {
                bail!("{at}: value for gene {} is not finite", genes[g]);
            }
            if v != 0.0 {
                t.push((c, g as u32, v));
            }
        }
    }
    if cells.is_empty() {
        bail!("{file}: no cells");
    }
    Ok(ExprMatrix::from_triplets(cells, genes, t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn names(p: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{p}{i}")).collect()
    }

    #[test]
    fn mtx_plain_and_gzip_read_the_same_and_genes_may_be_rows() {
        let dir = tempfile::tempdir().unwrap();
        let text = "%%MatrixMarket matrix coordinate integer general\n% genes x cells\n3 2 4\n\
                    1 1 5\n3 1 2\n2 2 7\n3 1 1\n";
        let p = dir.path().join("m.mtx");
        std::fs::write(&p, text).unwrap();
        let gz = dir.path().join("m.mtx.gz");
        let mut enc = flate2::write::GzEncoder::new(
            std::fs::File::create(&gz).unwrap(),
            flate2::Compression::default(),
        );
        enc.write_all(text.as_bytes()).unwrap();
        enc.finish().unwrap();
        let a = read_mtx(&p, names("g", 3), names("c", 2), true).unwrap();
        let b = read_mtx(&gz, names("g", 3), names("c", 2), true).unwrap();
        assert_eq!(a, b);
        assert_eq!((a.n_cells(), a.n_genes()), (2, 3));
        // Cell 0: gene 0 = 5, gene 2 = 2 + 1 (duplicates summed); cell 1: gene 1 = 7.
        assert_eq!(a.row(0).collect::<Vec<_>>(), vec![(0, 5.0), (2, 3.0)]);
        assert_eq!(a.row(1).collect::<Vec<_>>(), vec![(1, 7.0)]);
    }

    #[test]
    fn bad_matrix_market_files_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.mtx");
        let check = |text: &str, want: &str| {
            std::fs::write(&p, text).unwrap();
            let err = read_mtx(&p, names("g", 3), names("c", 2), true).unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains(want) && msg.contains("m.mtx"), "{msg}");
        };
        let head = "%%MatrixMarket matrix coordinate integer general\n";
        check(&format!("{head}3 2 3\n1 1 5\n"), "truncated");
        check(&format!("{head}3 2 1\n4 1 5\n"), "outside");
        check(&format!("{head}3 3 1\n1 1 5\n"), "name lists give 3 x 2");
        check(&format!("{head}3 2 1\n1 1 x\n"), "m.mtx:3: bad value");
        check("hello\n", "not a MatrixMarket");
        // A gzip file cut in the middle.
        let gz = dir.path().join("cut.mtx.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let body: String = (0..2000)
            .map(|i| format!("{} 1 {i}\n", i % 3 + 1))
            .collect();
        enc.write_all(format!("{head}3 2 2000\n{body}").as_bytes())
            .unwrap();
        let bytes = enc.finish().unwrap();
        std::fs::write(&gz, &bytes[..bytes.len() / 2]).unwrap();
        let err = read_mtx(&gz, names("g", 3), names("c", 2), true).unwrap_err();
        assert!(format!("{err:#}").contains("cut.mtx.gz"), "{err:#}");
    }

    #[test]
    fn dense_tables_read_with_errors_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        std::fs::write(&p, "cell,A,B,C\nc1,0,1.5,0\nc2,2,0,3\n").unwrap();
        let m = read_dense(&p).unwrap();
        assert_eq!(m.genes, vec!["A", "B", "C"]);
        assert_eq!(m.row(1).collect::<Vec<_>>(), vec![(0, 2.0), (2, 3.0)]);
        std::fs::write(&p, "cell,A,B\nc1,0,1\nc2,2\n").unwrap();
        assert!(format!("{:#}", read_dense(&p).unwrap_err()).contains("x.csv:3"));
        std::fs::write(&p, "cell,A,B\nc1,0,nan\n").unwrap();
        assert!(format!("{:#}", read_dense(&p).unwrap_err()).contains("not finite"));
        std::fs::write(&p, "cell,A,B\nc1,0,abc\n").unwrap();
        assert!(format!("{:#}", read_dense(&p).unwrap_err()).contains("'abc' (gene B)"));
    }
}
