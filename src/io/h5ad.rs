//! AnnData `.h5ad` files, read with the pure-Rust `hdf5-reader` crate (no libhdf5 to install;
//! hdf5-metno needs the C library, which this project's machines cannot install;
//! docs/dependencies.md):
//! the expression matrix (`X`, or `raw.X` with the raw gene names when present and asked for;
//! dense, CSR or CSC), the gene names (`var` index) and the cell annotations (`obs`: its index,
//! categorical and string columns; numeric columns as text). Both layouts are read: anndata ≥ 0.7
//! (groups with `encoding-type` attributes) and the older one of scanpy's bundled datasets
//! (compound `obs`/`var` tables, `raw.X` with `h5sparse_*` attributes, categories in
//! `uns/<column>_categories`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use hdf5_reader::{Datatype, Hdf5File};

use super::matrix::ExprMatrix;

/// What a `.h5ad` file holds that bftkit uses.
#[derive(Debug, Clone, PartialEq)]
pub struct AnnData {
    /// Cells × genes (cell names from the `obs` index, gene names from the `var` index).
    pub matrix: ExprMatrix,
    /// `obs` columns as text (categorical values by category name; missing values empty).
    pub obs: BTreeMap<String, Vec<String>>,
    /// Whether the matrix came from `raw`.
    pub used_raw: bool,
}

/// The `obs` column `column` of the file `file`; a missing one is an error listing the columns.
pub(crate) fn obs_column<'a>(
    obs: &'a BTreeMap<String, Vec<String>>,
    column: &str,
    file: &str,
) -> Result<&'a Vec<String>> {
    obs.get(column).with_context(|| {
        format!(
            "{file}: no obs column '{column}' (columns: {})",
            obs.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })
}

/// Reads `path`; with `prefer_raw`, the matrix is `raw.X` (and the raw gene names) when the
/// file has one.
pub fn read_h5ad(path: &Path, prefer_raw: bool) -> Result<AnnData> {
    read_h5ad_with(path, prefer_raw, None)
}

/// Reads `path` with the matrix of layer `layer` (`layers/<layer>`: same cells and genes as
/// `X`), e.g. the raw counts a file keeps beside its normalised `X`.
pub fn read_h5ad_layer(path: &Path, layer: &str) -> Result<AnnData> {
    read_h5ad_with(path, false, Some(layer))
}

fn read_h5ad_with(path: &Path, prefer_raw: bool, layer: Option<&str>) -> Result<AnnData> {
    let file = path.display().to_string();
    let h = Hdf5File::open(path)
        .map_err(|e| anyhow::anyhow!("{file}: not a readable HDF5 file: {e}"))?;
    let root = h
        .root_group()
        .map_err(|e| anyhow::anyhow!("{file}: cannot read the root group: {e}"))?;
    let (groups, datasets) = root
        .member_names()
        .map_err(|e| anyhow::anyhow!("{file}: cannot list the root group: {e}"))?;
    let has = |name: &str| groups.iter().chain(&datasets).any(|n| n == name);
    if !has("X") || !has("obs") || !has("var") {
        bail!("{file}: not an AnnData file (needs X, obs and var)");
    }
    let ctx = |what: &str| format!("{file}: {what}");
    let (obs_names, obs) = read_frame(&h, "obs", &file).with_context(|| ctx("obs"))?;
    // raw: `raw/X` + `raw/var` (anndata ≥ 0.7) or `raw.X` + `raw.var` (older).
    let raw = if !prefer_raw {
        None
    } else if groups.iter().any(|g| g == "raw") {
        Some(("raw/X", "raw/var"))
    } else if has("raw.X") && has("raw.var") {
        Some(("raw.X", "raw.var"))
    } else {
        None
    };
    let layer_path = match layer {
        Some(l) => {
            let layers: Vec<String> = if groups.iter().any(|g| g == "layers") {
                let g = h5(h.group("layers"), "layers")?;
                let (sub, ds) = h5(g.member_names(), "layers")?;
                sub.into_iter().chain(ds).collect()
            } else {
                Vec::new()
            };
            if !layers.iter().any(|x| x == l) {
                bail!(
                    "{file}: no layer '{l}' (layers: {})",
                    if layers.is_empty() {
                        "none".to_string()
                    } else {
                        layers.join(", ")
                    }
                );
            }
            Some(format!("layers/{l}"))
        }
        None => None,
    };
    let (x_path, var_path) = match &layer_path {
        Some(p) => (p.as_str(), "var"),
        None => raw.unwrap_or(("X", "var")),
    };
    let (var_names, _) = read_frame(&h, var_path, &file).with_context(|| ctx(var_path))?;
    let (n, m) = (obs_names.len(), var_names.len());
    let (indptr, indices, values) = read_matrix(&h, x_path, n, m).with_context(|| ctx(x_path))?;
    Ok(AnnData {
        matrix: ExprMatrix {
            cells: obs_names,
            genes: var_names,
            indptr,
            indices,
            values,
        },
        obs,
        used_raw: layer_path.is_none() && raw.is_some(),
    })
}

fn h5<T>(r: hdf5_reader::error::Result<T>, what: &str) -> Result<T> {
    r.map_err(|e| anyhow::anyhow!("{what}: {e}"))
}

/// A string attribute of a group or dataset, if present.
fn attr_string(attrs: &[hdf5_reader::Attribute], name: &str) -> Option<String> {
    let a = attrs.iter().find(|a| a.name == name)?;
    a.read_string()
        .ok()
        .or_else(|| a.read_strings().ok().and_then(|v| v.into_iter().next()))
}

/// An integer-array attribute (a matrix `shape`), if present.
fn attr_ints(attrs: &[hdf5_reader::Attribute], name: &str) -> Option<Vec<i64>> {
    let a = attrs.iter().find(|a| a.name == name)?;
    a.read_1d::<i64>()
        .ok()
        .or_else(|| {
            a.read_1d::<u64>()
                .ok()
                .map(|v| v.into_iter().map(|x| x as i64).collect())
        })
        .or_else(|| {
            a.read_1d::<i32>()
                .ok()
                .map(|v| v.into_iter().map(i64::from).collect())
        })
}

/// Every element of a numeric dataset as f64.
fn numbers(ds: &hdf5_reader::Dataset, what: &str) -> Result<Vec<f64>> {
    macro_rules! as_f64 {
        ($t:ty) => {
            h5(ds.read_array::<$t>(), what)?
                .iter()
                .map(|&v| v as f64)
                .collect()
        };
    }
    Ok(match ds.dtype() {
        Datatype::FloatingPoint { size: 4, .. } => as_f64!(f32),
        Datatype::FloatingPoint { size: 8, .. } => as_f64!(f64),
        Datatype::FixedPoint {
            size: 1,
            signed: true,
            ..
        } => as_f64!(i8),
        Datatype::FixedPoint {
            size: 1,
            signed: false,
            ..
        } => as_f64!(u8),
        Datatype::FixedPoint {
            size: 2,
            signed: true,
            ..
        } => as_f64!(i16),
        Datatype::FixedPoint {
            size: 2,
            signed: false,
            ..
        } => as_f64!(u16),
        Datatype::FixedPoint {
            size: 4,
            signed: true,
            ..
        } => as_f64!(i32),
        Datatype::FixedPoint {
            size: 4,
            signed: false,
            ..
        } => as_f64!(u32),
        Datatype::FixedPoint {
            size: 8,
            signed: true,
            ..
        } => as_f64!(i64),
        Datatype::FixedPoint {
            size: 8,
            signed: false,
            ..
        } => as_f64!(u64),
        Datatype::Enum { .. } => as_f64!(i8), // h5py's booleans
        other => bail!("{what}: not a numeric dataset ({other:?})"),
    })
}

/// The matrix at `path` (dense dataset, or a CSR/CSC group) as CSR rows, checked against the
/// `n × m` of obs × var.
#[allow(clippy::type_complexity)]
fn read_matrix(
    h: &Hdf5File,
    path: &str,
    n: usize,
    m: usize,
) -> Result<(Vec<usize>, Vec<u32>, Vec<f32>)> {
    if let Ok(ds) = h.dataset(path) {
        let shape: Vec<usize> = ds.shape().iter().map(|&v| v as usize).collect();
        if shape != [n, m] {
            bail!("dense matrix of shape {shape:?}, but obs × var is {n} × {m}");
        }
        let v = numbers(&ds, path)?;
        let (mut indptr, mut indices, mut values) = (vec![0usize], Vec::new(), Vec::new());
        for r in 0..n {
            for (c, &x) in v[r * m..(r + 1) * m].iter().enumerate() {
                if x != 0.0 {
                    indices.push(c as u32);
                    values.push(x as f32);
                }
            }
            indptr.push(indices.len());
        }
        return Ok((indptr, indices, values));
    }
    let g = h5(h.group(path), path)?;
    let attrs = h5(g.attributes(), path)?;
    let kind = attr_string(&attrs, "encoding-type")
        .or_else(|| attr_string(&attrs, "h5sparse_format").map(|f| format!("{f}_matrix")))
        .with_context(|| "neither a dense dataset nor a sparse matrix group".to_string())?;
    let shape = attr_ints(&attrs, "shape")
        .or_else(|| attr_ints(&attrs, "h5sparse_shape"))
        .or_else(|| {
            attr_string(&attrs, "h5sparse_shape").map(|s| {
                s.trim_matches(|c| c == '[' || c == ']' || c == '(' || c == ')')
                    .split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|t| !t.is_empty())
                    .filter_map(|t| t.parse().ok())
                    .collect()
            })
        })
        .context("sparse matrix without a shape attribute")?;
    if shape != [n as i64, m as i64] {
        bail!("sparse matrix of shape {shape:?}, but obs × var is {n} × {m}");
    }
    let part = |name: &str| -> Result<hdf5_reader::Dataset> {
        h5(g.dataset(name), &format!("{path}/{name}"))
    };
    let data: Vec<f32> = numbers(&part("data")?, "data")?
        .into_iter()
        .map(|v| v as f32)
        .collect();
    let idx: Vec<usize> = numbers(&part("indices")?, "indices")?
        .into_iter()
        .map(|v| v as usize)
        .collect();
    let ptr: Vec<usize> = numbers(&part("indptr")?, "indptr")?
        .into_iter()
        .map(|v| v as usize)
        .collect();
    let (major, minor) = match kind.as_str() {
        "csr_matrix" => (n, m),
        "csc_matrix" => (m, n),
        other => bail!("unsupported matrix encoding '{other}' (dense, csr_matrix or csc_matrix)"),
    };
    if ptr.len() != major + 1 || data.len() != idx.len() || ptr.last() != Some(&data.len()) {
        bail!(
            "inconsistent {kind}: indptr has {} entries for {major} rows, {} values, {} indices",
            ptr.len(),
            data.len(),
            idx.len()
        );
    }
    if ptr.windows(2).any(|w| w[0] > w[1]) || idx.iter().any(|&i| i >= minor) {
        bail!("inconsistent {kind}: indptr not increasing or an index out of range");
    }
    if kind == "csr_matrix" {
        return Ok((ptr, idx.into_iter().map(|i| i as u32).collect(), data));
    }
    // CSC → CSR (a counting transpose; row order within a row follows the column order).
    let mut count = vec![0usize; n + 1];
    idx.iter().for_each(|&r| count[r + 1] += 1);
    (0..n).for_each(|r| count[r + 1] += count[r]);
    let indptr = count.clone();
    let mut next = count;
    let (mut indices, mut values) = (vec![0u32; data.len()], vec![0f32; data.len()]);
    for c in 0..m {
        for e in ptr[c]..ptr[c + 1] {
            let r = idx[e];
            indices[next[r]] = c as u32;
            values[next[r]] = data[e];
            next[r] += 1;
        }
    }
    Ok((indptr, indices, values))
}

/// A data frame (`obs` or `var`): its index and its columns as text.
#[allow(clippy::type_complexity)]
fn read_frame(
    h: &Hdf5File,
    path: &str,
    file: &str,
) -> Result<(Vec<String>, BTreeMap<String, Vec<String>>)> {
    if let Ok(ds) = h.dataset(path) {
        return read_compound_frame(h, &ds, path);
    }
    let g = h5(h.group(path), path)?;
    let attrs = h5(g.attributes(), path)?;
    let index_col = attr_string(&attrs, "_index").unwrap_or_else(|| "_index".into());
    let index = h5(
        h5(g.dataset(&index_col), &format!("{path}/{index_col}"))?.read_strings(),
        &index_col,
    )?;
    let (subgroups, datasets) = h5(g.member_names(), path)?;
    let mut cols = BTreeMap::new();
    // anndata 0.7–0.7.x: a categorical column is a dataset of codes, its categories in
    // `__categories/<column>` (a group member lookup takes one name, not a path).
    let categories_dir = match subgroups.iter().any(|s| s == "__categories") {
        true => Some(h5(g.group("__categories"), "__categories")?),
        false => None,
    };
    for name in &subgroups {
        if name == "__categories" {
            continue;
        }
        let sub = h5(g.group(name), name)?;
        let sattrs = h5(sub.attributes(), name)?;
        if attr_string(&sattrs, "encoding-type").as_deref() != Some("categorical") {
            continue; // nullable arrays and other encodings are not label columns
        }
        let cats = h5(
            h5(sub.dataset("categories"), "categories")?.read_strings(),
            name,
        )?;
        let codes = numbers(&h5(sub.dataset("codes"), "codes")?, name)?;
        cols.insert(name.clone(), decode(&codes, &cats, file, path, name)?);
    }
    for name in datasets.iter().filter(|d| **d != index_col) {
        let ds = h5(g.dataset(name), name)?;
        let cats = categories_dir.as_ref().and_then(|c| c.dataset(name).ok());
        let v = if let Some(cats) = cats {
            let cats = h5(cats.read_strings(), name)?;
            decode(&numbers(&ds, name)?, &cats, file, path, name)?
        } else if let Ok(s) = ds.read_strings() {
            s
        } else if let Ok(v) = numbers(&ds, name) {
            v.iter().map(|x| x.to_string()).collect()
        } else {
            continue;
        };
        cols.insert(name.clone(), v);
    }
    for (name, v) in &cols {
        if v.len() != index.len() {
            bail!(
                "{path}: column '{name}' has {} values for {} rows",
                v.len(),
                index.len()
            );
        }
    }
    Ok((index, cols))
}

/// Category names of `codes` (−1: missing, empty); a code past the categories is an error.
fn decode(
    codes: &[f64],
    cats: &[String],
    file: &str,
    path: &str,
    col: &str,
) -> Result<Vec<String>> {
    codes
        .iter()
        .map(|&c| {
            if c < 0.0 {
                Ok(String::new())
            } else {
                cats.get(c as usize).cloned().with_context(|| {
                    format!(
                        "{file}: {path}/{col}: code {c} but only {} categories",
                        cats.len()
                    )
                })
            }
        })
        .collect()
}

/// The older layout: a compound dataset with an `index` field; integer fields with
/// `uns/<field>_categories` are categorical.
#[allow(clippy::type_complexity)]
fn read_compound_frame(
    h: &Hdf5File,
    ds: &hdf5_reader::Dataset,
    path: &str,
) -> Result<(Vec<String>, BTreeMap<String, Vec<String>>)> {
    let Datatype::Compound { size, fields } = ds.dtype().clone() else {
        bail!("{path}: a data frame dataset must be a compound table");
    };
    let bytes = h5(ds.read_raw_bytes(), path)?;
    let size = size as usize;
    let n = bytes.len() / size.max(1);
    let mut cols: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in &fields {
        let at = |r: usize, w: usize| &bytes[r * size + f.byte_offset as usize..][..w];
        let col: Option<Vec<String>> = match &f.datatype {
            Datatype::String {
                size: hdf5_reader::StringSize::Fixed(w),
                ..
            } => Some(
                (0..n)
                    .map(|r| {
                        let raw = at(r, *w as usize);
                        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
                        String::from_utf8_lossy(&raw[..end]).trim_end().to_string()
                    })
                    .collect(),
            ),
            Datatype::FixedPoint {
                size: w,
                signed,
                byte_order,
            } => {
                let little = matches!(byte_order, hdf5_reader::ByteOrder::LittleEndian);
                Some(
                    (0..n)
                        .map(|r| {
                            let mut b = at(r, *w as usize).to_vec();
                            if !little {
                                b.reverse();
                            }
                            let mut v: i64 = 0;
                            for (k, &x) in b.iter().enumerate() {
                                v |= (x as i64) << (8 * k);
                            }
                            if *signed && *w < 8 && (v >> (8 * *w as i64 - 1)) & 1 == 1 {
                                v -= 1i64 << (8 * *w as i64);
                            }
                            v.to_string()
                        })
                        .collect(),
                )
            }
            Datatype::FloatingPoint { size: w, .. } => Some(
                (0..n)
                    .map(|r| {
                        let b = at(r, *w as usize);
                        if *w == 4 {
                            f32::from_le_bytes(b.try_into().expect("4 bytes")).to_string()
                        } else {
                            f64::from_le_bytes(b.try_into().expect("8 bytes")).to_string()
                        }
                    })
                    .collect(),
            ),
            _ => None,
        };
        let Some(mut col) = col else { continue };
        if let Ok(cats) = h.dataset(&format!("uns/{}_categories", f.name)) {
            let cats = h5(cats.read_strings(), &f.name)?;
            let codes: Vec<f64> = col.iter().map(|c| c.parse().unwrap_or(-1.0)).collect();
            col = decode(&codes, &cats, "", path, &f.name)?;
        }
        cols.insert(f.name.clone(), col);
    }
    let index = cols
        .remove("index")
        .with_context(|| format!("{path}: the table has no 'index' field"))?;
    Ok((index, cols))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/h5ad")
    }

    /// Every fixture file reads as anndata itself read it (scripts/make_h5ad_fixtures.py).
    #[test]
    fn files_read_as_anndata_reads_them() {
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir().join("expected.json")).unwrap())
                .unwrap();
        let files = expected["files"].as_object().unwrap();
        assert_eq!(files.len(), 6);
        for (name, want) in files {
            let a = match want.get("layer").and_then(|l| l.as_str()) {
                Some(layer) => read_h5ad_layer(&dir().join(name), layer),
                None => read_h5ad(&dir().join(name), true),
            }
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
            let strings = |v: &serde_json::Value| -> Vec<String> {
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().to_string())
                    .collect()
            };
            assert_eq!(a.matrix.cells, strings(&want["cells"]), "{name}");
            assert_eq!(a.matrix.genes, strings(&want["genes"]), "{name}");
            assert_eq!(a.used_raw, want["used_raw"].as_bool().unwrap(), "{name}");
            let rows = want["X"].as_array().unwrap();
            for (c, row) in rows.iter().enumerate() {
                let mut dense = vec![0f64; a.matrix.n_genes()];
                a.matrix.row(c).for_each(|(g, v)| dense[g] = v as f64);
                let want: Vec<f64> = row
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect();
                let close = dense
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| (a - b).abs() <= 1e-6 * b.abs().max(1.0));
                assert!(
                    close && dense.len() == want.len(),
                    "{name} row {c}: {dense:?} vs {want:?}"
                );
            }
            for (col, values) in want["obs"].as_object().unwrap() {
                assert_eq!(a.obs.get(col), Some(&strings(values)), "{name} obs {col}");
            }
        }
        // Without raw, csr_raw.h5ad gives X and its 5 genes.
        let x = read_h5ad(&dir().join("csr_raw.h5ad"), false).unwrap();
        assert!(!x.used_raw);
        assert_eq!(x.matrix.n_genes(), 5);
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let e = format!(
            "{:#}",
            read_h5ad(&dir().join("bad_shape.h5ad"), true).unwrap_err()
        );
        assert!(e.contains("bad_shape.h5ad") && e.contains("7 × 5"), "{e}");
        let e = format!(
            "{:#}",
            read_h5ad_layer(&dir().join("layers.h5ad"), "spliced").unwrap_err()
        );
        assert!(e.contains("no layer 'spliced' (layers: counts)"), "{e}");
        let e = format!(
            "{:#}",
            read_h5ad_layer(&dir().join("dense.h5ad"), "counts").unwrap_err()
        );
        assert!(e.contains("no layer 'counts' (layers: none)"), "{e}");
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x.h5ad");
        std::fs::write(&p, b"not hdf5 at all").unwrap();
        let e = format!("{:#}", read_h5ad(&p, true).unwrap_err());
        assert!(e.contains("x.h5ad") && e.contains("HDF5"), "{e}");
        // Truncated: the first half of a real file.
        let bytes = std::fs::read(dir().join("dense.h5ad")).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        assert!(read_h5ad(&p, true).is_err());
    }
}
