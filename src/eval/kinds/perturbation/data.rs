//! A perturbation task's pseudobulk deltas: the cells are read (MatrixMarket + cell table, or
//! `.h5ad` + its obs), selected, grouped, and averaged per perturbation; each perturbation's delta
//! is its mean minus its group's controls' mean.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::source::{Combinations, PerturbSource};
use crate::error::Error;
use crate::io::matrix::{read_mtx, read_names, ExprMatrix};
use crate::io::table::{split_joined, ColumnRef, Table};

/// One perturbation in one group: its label, its target genes (two or more for a combination),
/// its group and how many cells it had.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Unit {
    pub label: String,
    pub genes: Vec<String>,
    pub group: usize,
    pub cells: usize,
}

/// Pseudobulk deltas per perturbation and group.
pub(crate) struct PerturbData {
    /// The measured genes (the delta's coordinates).
    pub genes: Vec<String>,
    pub units: Vec<Unit>,
    /// `deltas[u][g]`: the unit's mean minus its group's control mean.
    pub deltas: Vec<Vec<f64>>,
    /// Group names (one empty name without a group column) and control cells per group.
    pub groups: Vec<String>,
    pub control_cells: Vec<usize>,
    /// Perturbations left out for having fewer than `min_cells` cells (`label` or `label@group`).
    pub too_few_cells: Vec<String>,
    /// Combinations left out of a single-target task.
    pub combinations_left_out: Vec<String>,
    /// Cells kept by the selection, of those read.
    pub cells_selected: usize,
    pub cells_read: usize,
}

impl PerturbData {
    /// The units of single targets (one gene).
    pub fn is_single(&self, u: usize) -> bool {
        self.units[u].genes.len() == 1
    }

    /// "A172 (9 perturbations, 100 controls), ..." for protocols.
    pub fn describe_groups(&self) -> String {
        self.groups
            .iter()
            .enumerate()
            .map(|(g, name)| {
                let n = self.units.iter().filter(|u| u.group == g).count();
                format!(
                    "{name} ({n} perturbations, {} controls)",
                    self.control_cells[g]
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The cells as read: the matrix, and per cell its perturbation label, its group and whether the
/// selection keeps it.
struct Cells {
    matrix: ExprMatrix,
    labels: Vec<String>,
    groups: Vec<String>,
    keep: Vec<bool>,
    file: String,
}

/// Reads the cells and forms the deltas.
pub(crate) fn load(src: &PerturbSource, data_dir: &Path) -> Result<PerturbData> {
    let cells = match (&src.counts, &src.h5ad) {
        (Some(counts), None) => read_mtx_cells(src, counts, data_dir)?,
        (None, Some(h5ad)) => read_h5ad_cells(src, h5ad, data_dir)?,
        _ => bail!("give the cells either as counts (MatrixMarket) or as h5ad"),
    };
    pseudobulk(src, cells)
}

/// Columns of the cell table by name, with the file's own error for a missing one.
fn table_column(table: &Table, name: &str) -> Result<Vec<String>> {
    let c = table.column(&ColumnRef::Name(name.to_string()))?;
    table
        .rows
        .iter()
        .map(|r| table.field(r, c).map(str::to_string))
        .collect()
}

/// Each cell's perturbation label, its group (empty without a group column) and whether the
/// selection keeps it, from the columns of the cell annotations (`column` reads one by name).
fn annotate(
    src: &PerturbSource,
    column: impl Fn(&str) -> Result<Vec<String>>,
) -> Result<(Vec<String>, Vec<String>, Vec<bool>)> {
    let labels = column(&src.target_column)?;
    let groups = match &src.group_column {
        Some(g) => column(g)?,
        None => vec![String::new(); labels.len()],
    };
    let mut keep = vec![true; labels.len()];
    for (name, values) in &src.select {
        let v = column(name)?;
        keep.iter_mut()
            .zip(&v)
            .for_each(|(k, x)| *k &= values.contains(x));
    }
    Ok((labels, groups, keep))
}

fn read_mtx_cells(src: &PerturbSource, counts: &str, data_dir: &Path) -> Result<Cells> {
    let (Some(genes_file), Some(cells_file)) = (&src.genes_file, &src.cells_file) else {
        bail!("MatrixMarket counts need genes_file and cells_file");
    };
    let genes = read_names(&data_dir.join(genes_file), src.genes_column, true)?;
    let table = Table::read(&data_dir.join(cells_file), true)?;
    let (labels, groups, keep) = annotate(src, |name| table_column(&table, name))?;
    let cell_ids: Vec<String> = (0..labels.len()).map(|i| i.to_string()).collect();
    let path = data_dir.join(counts);
    let matrix = read_mtx(&path, genes, cell_ids, src.genes_are_rows)
        .with_context(|| format!("with cells from {cells_file}"))?;
    matrix.check_expression(&path)?;
    Ok(Cells {
        matrix,
        labels,
        groups,
        keep,
        file: data_dir.join(cells_file).display().to_string(),
    })
}

fn read_h5ad_cells(src: &PerturbSource, h5ad: &str, data_dir: &Path) -> Result<Cells> {
    let path = data_dir.join(h5ad);
    let a = crate::io::h5ad::read_h5ad(&path, false)?;
    a.matrix.check_expression(&path)?;
    let file = path.display().to_string();
    let (labels, groups, keep) = annotate(src, |name| {
        crate::io::h5ad::obs_column(&a.obs, name, &file).cloned()
    })?;
    Ok(Cells {
        matrix: a.matrix,
        labels,
        groups,
        keep,
        file,
    })
}

/// Per-group control means and per-unit deltas of the selected cells.
fn pseudobulk(src: &PerturbSource, cells: Cells) -> Result<PerturbData> {
    let m = &cells.matrix;
    let g = m.n_genes();
    let cells_read = cells.labels.len();
    // (group, label) -> (sum of transformed rows, cells)
    let mut sums: BTreeMap<(&str, &str), (Vec<f64>, usize)> = BTreeMap::new();
    let mut cells_selected = 0;
    for c in 0..cells_read {
        let label = cells.labels[c].as_str();
        if !cells.keep[c] || label.is_empty() {
            continue;
        }
        cells_selected += 1;
        let total: f64 = m.row(c).map(|(_, v)| v as f64).sum();
        if !src.log_normalised && total <= 0.0 {
            continue;
        }
        let e = sums
            .entry((cells.groups[c].as_str(), label))
            .or_insert_with(|| (vec![0.0; g], 0));
        for (gi, v) in m.row(c) {
            e.0[gi] += match src.log_normalised {
                true => v as f64,
                false => (v as f64 * 1e4 / total).ln_1p(),
            };
        }
        e.1 += 1;
    }
    if cells_selected == 0 {
        bail!("{}: no cell is selected by {:?}", cells.file, src.select);
    }
    let mut groups: Vec<String> = sums.keys().map(|(gr, _)| gr.to_string()).collect();
    groups.dedup();
    let mut control = Vec::with_capacity(groups.len());
    let mut control_cells = Vec::with_capacity(groups.len());
    for gr in &groups {
        let Some((sum, n)) = sums.remove(&(gr.as_str(), src.control.as_str())) else {
            bail!(
                "{}: no cell has the control label '{}' in column '{}'{}",
                cells.file,
                src.control,
                src.target_column,
                match &src.group_column {
                    Some(c) => format!(" in group {c} = '{gr}'"),
                    None => String::new(),
                }
            );
        };
        control.push(sum.iter().map(|s| s / n as f64).collect::<Vec<f64>>());
        control_cells.push(n);
    }
    let (mut units, mut deltas, mut too_few, mut combos) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((gr, label), (sum, n)) in sums {
        let group = groups.iter().position(|x| x == gr).expect("listed");
        let Some(genes) = split_joined(label, &src.separator) else {
            bail!(
                "{}: perturbation '{label}' has an empty target around '{}'",
                cells.file,
                src.separator
            );
        };
        let genes: Vec<String> = genes.into_iter().map(str::to_string).collect();
        let named = match &src.group_column {
            Some(_) => format!("{label}@{gr}"),
            None => label.to_string(),
        };
        if genes.len() > 1 && src.combinations == Combinations::LeaveOut {
            combos.push(named);
            continue;
        }
        if n < src.min_cells {
            too_few.push(named);
            continue;
        }
        deltas.push(
            sum.iter()
                .zip(&control[group])
                .map(|(s, c)| s / n as f64 - c)
                .collect(),
        );
        units.push(Unit {
            label: label.to_string(),
            genes,
            group,
            cells: n,
        });
    }
    combos.sort();
    combos.dedup();
    if units.len() < 3 {
        return Err(Error::too_few(format!(
            "{}: fewer than 3 perturbations with enough cells",
            cells.file
        )));
    }
    Ok(PerturbData {
        genes: m.genes.clone(),
        units,
        deltas,
        groups,
        control_cells,
        too_few_cells: too_few,
        combinations_left_out: combos,
        cells_selected,
        cells_read,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_source(text: &str) -> PerturbSource {
        let s: PerturbSource = toml::from_str(text).unwrap();
        s.check().unwrap();
        s
    }

    fn data_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/data")
    }

    /// The h5ad fixture (scripts/make_h5ad_fixtures.py): Norman 13 singles (GENE0212 has 10
    /// cells), 9 doubles, 40 controls; McFaline 8 targets in each of 3 lines, 40 controls each.
    #[test]
    fn h5ad_cells_are_selected_grouped_and_split_into_singles_and_combinations() {
        let norman = r#"
            h5ad = "perturbench_devel/devel.h5ad"
            log_normalised = true
            target_column = "condition"
            control = "control"
            select = { dataset = ["norman19"] }
        "#;
        let d = load(&fixture_source(norman), &data_dir()).unwrap();
        assert_eq!(d.units.len(), 13);
        assert!(d.units.iter().all(|u| u.genes.len() == 1 && u.cells == 24));
        assert_eq!(d.too_few_cells, ["GENE0212"]);
        assert_eq!(d.combinations_left_out.len(), 9);
        assert!(d
            .combinations_left_out
            .contains(&"GENE0200+GENE0201".to_string()));
        assert_eq!((d.control_cells.as_slice(), d.groups.len()), (&[40][..], 1));
        assert_eq!(d.cells_selected, 40 + 13 * 24 + 10 + 9 * 24);
        assert_eq!(d.genes.len(), 30);
        // log-normalised: the delta is the plain difference of means, so it matches a direct
        // computation from the same cells within float error (checked on the first gene below).
        let a = crate::io::h5ad::read_h5ad(&data_dir().join("perturbench_devel/devel.h5ad"), false)
            .unwrap();
        let mean = |label: &str| {
            let cells: Vec<usize> = (0..a.obs["condition"].len())
                .filter(|&c| a.obs["condition"][c] == label && a.obs["dataset"][c] == "norman19")
                .collect();
            let sum: f64 = cells
                .iter()
                .map(|&c| {
                    a.matrix
                        .row(c)
                        .find(|(g, _)| *g == 0)
                        .map_or(0.0, |(_, v)| v as f64)
                })
                .sum();
            sum / cells.len() as f64
        };
        let u = d.units.iter().position(|u| u.label == "GENE0203").unwrap();
        assert!((d.deltas[u][0] - (mean("GENE0203") - mean("control"))).abs() < 1e-9);

        let doubles = format!("{norman}\ncombinations = \"predict\"");
        let d = load(&fixture_source(&doubles), &data_dir()).unwrap();
        assert_eq!(d.units.len(), 13 + 9);
        assert!(d.combinations_left_out.is_empty());
        let pair = d
            .units
            .iter()
            .find(|u| u.label == "GENE0390+GENE0201")
            .unwrap();
        assert_eq!(pair.genes, ["GENE0390", "GENE0201"]);

        let lines = r#"
            h5ad = "perturbench_devel/devel.h5ad"
            log_normalised = true
            target_column = "condition"
            control = "control"
            select = { dataset = ["mcfaline23"] }
            group_column = "cell_type"
        "#;
        let d = load(&fixture_source(lines), &data_dir()).unwrap();
        assert_eq!(d.groups, ["A172", "T98G", "U87MG"]);
        assert_eq!(d.control_cells, [40, 40, 40]);
        assert_eq!(d.units.len(), 24);
        assert!(d
            .describe_groups()
            .starts_with("A172 (8 perturbations, 40 controls)"));
    }

    #[test]
    fn bad_selections_and_columns_are_clear_errors() {
        let base = r#"
            h5ad = "perturbench_devel/devel.h5ad"
            log_normalised = true
            target_column = "condition"
            control = "control"
        "#;
        let err = |extra: &str| {
            let s = fixture_source(&format!("{base}\n{extra}"));
            format!("{:#}", load(&s, &data_dir()).err().unwrap())
        };
        let e = err("select = { dataset = [\"replogle22\"] }");
        assert!(e.contains("no cell is selected"), "{e}");
        let e = err("select = { screen = [\"norman19\"] }");
        assert!(
            e.contains(
                "devel.h5ad: no obs column 'screen' (columns: cell_type, condition, dataset)"
            ),
            "{e}"
        );
        // A control label no cell has is named with its column.
        let s: PerturbSource = toml::from_str(&base.replace("\"control\"", "\"x\"")).unwrap();
        let e = format!("{:#}", load(&s, &data_dir()).err().unwrap());
        assert!(
            e.contains("no cell has the control label 'x' in column 'condition'"),
            "{e}"
        );
        // Sources that contradict themselves are refused when the task is read.
        for bad in [
            "counts = \"a.mtx\"",
            "combinations = \"predict\"\ngroup_column = \"cell_type\"",
            "separator = \"\"",
            "k = 0",
        ] {
            let s: PerturbSource = toml::from_str(&format!("{base}\n{bad}")).unwrap();
            assert!(s.check().is_err(), "{bad}");
        }
    }
}
