//! The report: one self-contained HTML file (inline CSS and base64 PNGs; no JavaScript, no
//! external references) beside `results.json`, which holds every number it shows.
//!
//! Summary table: one row per embedding set, one column per task grouped gene / pair / cell /
//! integration / perturbation, the best value per column marked, and the published reference
//! rows of the task files beside. Details: per result, examples, coverage, protocol and seed.
//! Figures: score bars per group, a scIB-style table, and a UMAP per embedding set.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::eval::arms::ExperimentReport;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::html::{esc, png_data_uri};
use super::plot;
use crate::eval::kinds::TaskGroup;
use crate::eval::result::{ProbeReport, TaskResult};

/// Where `bftkit report` writes a combined report unless told otherwise.
pub const COMBINED_DIR: &str = "reports/combined";

/// A 2-D UMAP of one embedding set, coloured by the classes of one task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UmapLayout {
    pub embedding_set: String,
    /// The task whose labels colour the points ("" when none had labels for this set).
    pub colour_task: String,
    pub class_names: Vec<String>,
    /// Point names: genes, or cells for cell-task layouts (see `points`).
    pub genes: Vec<String>,
    /// What the points are: "genes" or "cells".
    #[serde(default = "default_points")]
    pub points: String,
    pub xy: Vec<[f32; 2]>,
    pub classes: Vec<Option<usize>>,
    pub n_neighbors: usize,
    pub min_dist: f64,
    pub seed: u64,
    pub runtime_s: f64,
}

/// The largest layout coordinate a report draws: UMAP places points within tens of units; a
/// larger one is not a layout (and would overflow the plot's range arithmetic).
const MAX_COORDINATE: f32 = 1e12;

impl UmapLayout {
    /// Refuses a layout that cannot be drawn: coordinates that are not finite or are beyond
    /// any layout, or classes that name no class.
    pub fn check(&self) -> Result<()> {
        let what = format!("UMAP of {} ({})", self.embedding_set, self.points);
        if self.xy.len() != self.classes.len() || self.xy.len() != self.genes.len() {
            bail!(
                "{what}: {} points but {} classes and {} names",
                self.xy.len(),
                self.classes.len(),
                self.genes.len()
            );
        }
        if let Some(p) = self.xy.iter().position(|p| {
            p.iter()
                .any(|v| !(v.is_finite() && v.abs() <= MAX_COORDINATE))
        }) {
            bail!("{what}: point {} lies outside ±{MAX_COORDINATE:e}", p + 1);
        }
        if let Some(c) = self
            .classes
            .iter()
            .flatten()
            .find(|&&c| c >= self.class_names.len())
        {
            bail!("{what}: class {c} of {} classes", self.class_names.len());
        }
        Ok(())
    }
}

fn default_points() -> String {
    "genes".into()
}

/// Everything one `bftkit run` computed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResults {
    pub bftkit_version: String,
    pub name: String,
    /// True when the run used the built-in synthetic fixtures.
    pub fixtures: bool,
    pub probe: ProbeReport,
    pub umaps: Vec<UmapLayout>,
    /// Task groups not evaluated, with the reason.
    pub not_run: Vec<(String, String)>,
    /// The model arms of an experiment run (fine-tune → describe → embed), when it had any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<ExperimentReport>,
}

/// `results.json`: the runs a report shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportData {
    pub runs: Vec<RunResults>,
}

impl ReportData {
    /// Reads `results.json` files (each a [`ReportData`] or a single [`RunResults`]).
    pub fn read_all(paths: &[PathBuf]) -> Result<Self> {
        let mut runs: Vec<RunResults> = Vec::new();
        for p in paths {
            let before = runs.len();
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("{}: cannot read", p.display()))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not valid JSON", p.display()))?;
            if v.get("runs").is_some() {
                let d: ReportData = serde_json::from_value(v)
                    .with_context(|| format!("{}: not a bftkit results file", p.display()))?;
                runs.extend(d.runs);
            } else {
                runs.push(
                    serde_json::from_value(v)
                        .with_context(|| format!("{}: not a bftkit results file", p.display()))?,
                );
            }
            for u in runs[before..].iter().flat_map(|r| &r.umaps) {
                u.check()
                    .with_context(|| format!("{}: not a bftkit results file", p.display()))?;
            }
        }
        if runs.is_empty() {
            bail!("no results to report");
        }
        Ok(Self { runs })
    }
}

/// One column of the summary: a task and its scores per row.
struct Column<'a> {
    task: &'a str,
    title: &'a str,
    group: TaskGroup,
    metric: &'static str,
    higher_is_better: bool,
}

/// The summary grid: rows (embedding sets, unique names across runs), columns (tasks in group
/// order), and the main-metric result per cell.
pub struct Summary<'a> {
    pub rows: Vec<String>,
    columns: Vec<Column<'a>>,
    cells: BTreeMap<(usize, usize), &'a TaskResult>,
}

fn main_value(r: &TaskResult) -> (f64, f64) {
    let m = r.main_value();
    (m.mean, m.sd)
}

impl<'a> Summary<'a> {
    pub fn new(data: &'a ReportData) -> Self {
        let mut rows: Vec<String> = Vec::new();
        let mut columns: Vec<Column<'a>> = Vec::new();
        let mut cells = BTreeMap::new();
        for run in &data.runs {
            // Set names are made unique across runs by the run's name.
            let mut rename = BTreeMap::new();
            for s in &run.probe.embedding_sets {
                let mut name = s.name.clone();
                if rows.contains(&name) {
                    name = format!("{} ({})", s.name, run.name);
                }
                rows.push(name.clone());
                rename.insert(s.name.clone(), rows.len() - 1);
            }
            for r in &run.probe.results {
                let col = match columns.iter().position(|c| c.task == r.task) {
                    Some(c) => c,
                    None => {
                        columns.push(Column {
                            task: &r.task,
                            title: &r.title,
                            group: r.group(),
                            metric: r.main_metric(),
                            higher_is_better: r.higher_is_better(),
                        });
                        columns.len() - 1
                    }
                };
                if let Some(&row) = rename.get(&r.embedding_set) {
                    cells.insert((row, col), r);
                }
            }
        }
        // Stable sort of columns by group order; cells follow their column.
        let mut order: Vec<usize> = (0..columns.len()).collect();
        order.sort_by_key(|&c| TaskGroup::ALL.iter().position(|g| *g == columns[c].group));
        let mut new_cells = BTreeMap::new();
        for (new, &old) in order.iter().enumerate() {
            for row in 0..rows.len() {
                if let Some(r) = cells.get(&(row, old)) {
                    new_cells.insert((row, new), *r);
                }
            }
        }
        let mut slots: Vec<Option<Column<'a>>> = columns.into_iter().map(Some).collect();
        let columns = order
            .iter()
            .map(|&c| slots[c].take().expect("each column once"))
            .collect();
        Self {
            rows,
            columns,
            cells: new_cells,
        }
    }

    /// The row(s) holding the best (highest) main-metric mean of a column.
    pub fn best_rows(&self, col: usize) -> Vec<usize> {
        let sign = if self.columns[col].higher_is_better {
            1.0
        } else {
            -1.0
        };
        let vals: Vec<(usize, f64)> = (0..self.rows.len())
            .filter_map(|r| {
                self.cells
                    .get(&(r, col))
                    .map(|t| (r, sign * main_value(t).0))
            })
            .filter(|v| v.1.is_finite())
            .collect();
        let best = vals.iter().map(|v| v.1).fold(f64::NEG_INFINITY, f64::max);
        vals.iter().filter(|v| v.1 == best).map(|v| v.0).collect()
    }

    pub fn tasks(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.task.to_string()).collect()
    }

    /// Main-metric mean of a cell.
    pub fn value(&self, row: usize, col: usize) -> Option<f64> {
        self.cells.get(&(row, col)).map(|t| main_value(t).0)
    }
}

const CSS: &str = "body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:24px;color:#222}\
table{border-collapse:collapse;margin:8px 0 20px}th,td{border:1px solid #ccc;padding:4px 8px;\
text-align:right;font-size:13px}th{background:#f0f0f0}td.name,th.name{text-align:left}\
td{white-space:nowrap}.wide{overflow-x:auto}td.best{background:#dff0d8;font-weight:bold}tr.ref td{color:#555;font-style:italic;\
background:#fafafa}.note{color:#555;font-size:13px}img{max-width:100%;border:1px solid #ddd;\
margin:6px 0}h2{margin-top:28px}td.text{white-space:normal;text-align:left;vertical-align:top;\
min-width:220px;max-width:420px}";

/// Writes `index.html`, the PNG figures and `results.json` into `out`; returns the HTML path.
pub fn render(data: &ReportData, out: &Path) -> Result<PathBuf> {
    for u in data.runs.iter().flat_map(|r| &r.umaps) {
        u.check()?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let s = Summary::new(data);
    let mut figures: Vec<(String, PathBuf)> = Vec::new();
    // Score bars, one figure per group present.
    for group in TaskGroup::ALL {
        let g = group.name();
        let cols: Vec<usize> = (0..s.columns.len())
            .filter(|&c| s.columns[c].group == group)
            .collect();
        if cols.is_empty() {
            continue;
        }
        let tasks: Vec<String> = cols
            .iter()
            .map(|&c| s.columns[c].task.to_string())
            .collect();
        let values: Vec<Vec<Option<(f64, f64)>>> = (0..s.rows.len())
            .map(|r| {
                cols.iter()
                    .map(|&c| s.cells.get(&(r, c)).map(|t| main_value(t)))
                    .collect()
            })
            .collect();
        let path = out.join(format!("scores_{g}.png"));
        let width = (220 + 160 * tasks.len() as u32).max(700);
        crate::io::write_with(&path, |tmp| {
            plot::bars_png(
                tmp,
                &format!("{g}-level tasks: main metric, mean ± sd over folds"),
                "score",
                &tasks,
                &s.rows,
                &values,
                (width, 520),
            )
        })?;
        figures.push((format!("Scores, {g}-level tasks"), path));
    }
    if !s.columns.is_empty() {
        let path = out.join("table.png");
        let values: Vec<Vec<Option<f64>>> = (0..s.rows.len())
            .map(|r| (0..s.columns.len()).map(|c| s.value(r, c)).collect())
            .collect();
        crate::io::write_with(&path, |tmp| {
            plot::table_png(tmp, "Main metric per task", &s.tasks(), &s.rows, &values)
        })?;
        figures.push(("Results table".into(), path));
    }
    for (k, run) in data.runs.iter().enumerate() {
        // Per run and set, the n-th layout of that kind of point gets suffix n (from 2 on).
        let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
        for u in &run.umaps {
            let nth = seen
                .entry((u.points.clone(), u.embedding_set.clone()))
                .and_modify(|c| *c += 1)
                .or_insert(1);
            let safe: String = u
                .embedding_set
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            let suffix = if *nth > 1 {
                format!("_{nth}")
            } else {
                String::new()
            };
            let path = out.join(format!("umap_{k}_{}_{safe}{suffix}.png", u.points));
            let what = format!("{} {}", u.genes.len(), u.points);
            let title = if u.colour_task.is_empty() {
                format!("UMAP of {} ({what})", u.embedding_set)
            } else {
                format!(
                    "UMAP of {} ({what}), coloured by {}",
                    u.embedding_set, u.colour_task
                )
            };
            crate::io::write_with(&path, |tmp| {
                plot::scatter_png(tmp, &title, &u.xy, &u.classes, &u.class_names, (900, 700))
            })?;
            figures.push((
                format!(
                    "UMAP of {}, {} (n_neighbors {}, min_dist {}, seed {}, {:.1} s)",
                    u.points, u.embedding_set, u.n_neighbors, u.min_dist, u.seed, u.runtime_s
                ),
                path,
            ));
        }
    }
    let mut arm_figures: Vec<Vec<String>> = Vec::new();
    for (k, run) in data.runs.iter().enumerate() {
        let mut uris = Vec::new();
        if let Some(exp) = &run.experiment {
            for (_, path) in super::experiment::figures(exp, k, out)? {
                uris.push(png_data_uri(&path)?);
            }
        }
        arm_figures.push(uris);
    }
    let html = html(data, &s, &figures, &arm_figures)?;
    let index = out.join("index.html");
    crate::io::write_file(&index, html)?;
    // Last: a complete results.json means the report beside it is complete too.
    crate::io::write_file(
        &out.join("results.json"),
        serde_json::to_string_pretty(data)?,
    )?;
    Ok(index)
}

fn html(
    data: &ReportData,
    s: &Summary,
    figures: &[(String, PathBuf)],
    arm_figures: &[Vec<String>],
) -> Result<String> {
    let mut h = String::new();
    header(&mut h, data)?;
    let groups = summary_table(&mut h, s)?;
    not_evaluated(&mut h, data, &groups)?;
    for (run, uris) in data.runs.iter().zip(arm_figures) {
        if let Some(exp) = &run.experiment {
            super::experiment::section(&mut h, &run.name, exp, uris)?;
        }
    }
    details_table(&mut h, data)?;
    embedding_sets_table(&mut h, data)?;
    figures_section(&mut h, figures)?;
    writeln!(h, "</body></html>")?;
    Ok(h)
}

/// The page head, the title and a line per run (data, seed, classifier).
fn header(h: &mut String, data: &ReportData) -> Result<()> {
    let title = data
        .runs
        .iter()
        .map(|r| r.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    writeln!(
        h,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>bftkit report: {}</title>\
         <style>{CSS}</style></head><body>",
        esc(&title)
    )?;
    writeln!(h, "<h1>bftkit report: {}</h1>", esc(&title))?;
    for run in &data.runs {
        let p = &run.probe;
        writeln!(
            h,
            "<p class=\"note\">Run <b>{}</b>: bftkit {}, data {}{}, seed {}, classifier {} (C = {}, \
             standardised), {:.1} s. Every number is in <a href=\"results.json\">results.json</a>.</p>",
            esc(&run.name),
            esc(&run.bftkit_version),
            esc(&p.data_dir),
            if run.fixtures {
                " (<b>built-in synthetic fixtures</b>, planted signal: not real biology)"
            } else {
                ""
            },
            p.seed,
            esc(&p.classifier.model),
            p.classifier.c,
            p.runtime_s
        )?;
    }
    Ok(())
}

/// The summary: a row per embedding set, a column per task under its group, the best value
/// of each column marked, the published reference rows below. Returns the groups shown.
fn summary_table(h: &mut String, s: &Summary) -> Result<Vec<String>> {
    // Summary table with group header row.
    writeln!(
        h,
        "<h2>Summary</h2><div class=\"wide\"><table><tr><th class=\"name\" rowspan=\"2\">embedding set</th>"
    )?;
    let mut spans: Vec<(String, usize)> = Vec::new();
    for c in &s.columns {
        match spans.last_mut() {
            Some((g, n)) if *g == c.group.name() => *n += 1,
            _ => spans.push((c.group.name().to_string(), 1)),
        }
    }
    for (g, n) in &spans {
        write!(h, "<th colspan=\"{n}\">{}</th>", esc(g))?;
    }
    writeln!(h, "</tr><tr>")?;
    for c in &s.columns {
        write!(
            h,
            "<th title=\"{}\">{}<br><span class=\"note\">{}</span></th>",
            esc(c.title),
            esc(c.task).replace('_', "_<wbr>"),
            esc(c.metric)
        )?;
    }
    writeln!(h, "</tr>")?;
    let best: Vec<Vec<usize>> = (0..s.columns.len()).map(|c| s.best_rows(c)).collect();
    for (r, name) in s.rows.iter().enumerate() {
        write!(h, "<tr><td class=\"name\">{}</td>", esc(name))?;
        for (c, b) in best.iter().enumerate() {
            match s.cells.get(&(r, c)) {
                Some(t) => {
                    let (m, sd) = main_value(t);
                    let mark = b.contains(&r);
                    write!(
                        h,
                        "<td{}>{m:.3} ± {sd:.3}{}</td>",
                        if mark { " class=\"best\"" } else { "" },
                        if mark { " ★" } else { "" }
                    )?;
                }
                None => write!(h, "<td>–</td>")?,
            }
        }
        writeln!(h, "</tr>")?;
    }
    reference_rows(h, s)?;
    writeln!(h, "</table></div>")?;
    writeln!(
        h,
        "<p class=\"note\">★ best value of the column among the embedding sets (reference rows \
         excluded). Values: mean ± population sd over folds. A set that covers few of a task's genes is \
         scored on that subset only: read each value with its coverage (Details).</p>"
    )?;
    Ok(spans.into_iter().map(|(g, _)| g).collect())
}

/// Published reference rows, from the task files.
fn reference_rows(h: &mut String, s: &Summary) -> Result<()> {
    let mut refs: Vec<String> = Vec::new();
    for c in 0..s.columns.len() {
        if let Some(t) = (0..s.rows.len()).find_map(|r| s.cells.get(&(r, c))) {
            for x in &t.references {
                if !refs.contains(&x.name) {
                    refs.push(x.name.clone());
                }
            }
        }
    }
    for name in &refs {
        write!(
            h,
            "<tr class=\"ref\"><td class=\"name\">{} (published)</td>",
            esc(name)
        )?;
        for (c, col) in s.columns.iter().enumerate() {
            let found = (0..s.rows.len())
                .find_map(|r| s.cells.get(&(r, c)))
                .and_then(|t| {
                    t.references
                        .iter()
                        .find(|x| &x.name == name && x.metric == col.metric)
                });
            match found {
                Some(x) => match x.sd {
                    Some(sd) => write!(
                        h,
                        "<td title=\"{}\">{:.3} ± {sd:.3}</td>",
                        esc(&x.source),
                        x.value
                    )?,
                    None => write!(h, "<td title=\"{}\">{:.3}</td>", esc(&x.source), x.value)?,
                },
                None => write!(h, "<td>–</td>")?,
            }
        }
        writeln!(h, "</tr>")?;
    }
    Ok(())
}

/// Task groups and tasks that were not evaluated, with the reason.
fn not_evaluated(h: &mut String, data: &ReportData, groups: &[String]) -> Result<()> {
    let present: Vec<&str> = groups.iter().map(String::as_str).collect();
    let mut missing: Vec<String> = Vec::new();
    for run in &data.runs {
        for (g, why) in &run.not_run {
            if !present.contains(&g.as_str()) {
                missing.push(format!("{}: {}", esc(g), esc(why)));
            }
        }
        for t in &run.probe.skipped {
            missing.push(format!("task {}: {}", esc(&t.task), esc(&t.reason)));
        }
    }
    if !missing.is_empty() {
        writeln!(h, "<h3>Not evaluated</h3><ul class=\"note\">")?;
        for m in missing {
            writeln!(h, "<li>{m}</li>")?;
        }
        writeln!(h, "</ul>")?;
    }
    Ok(())
}

/// Per result: examples, coverage, every score and the protocol with its seed.
fn details_table(h: &mut String, data: &ReportData) -> Result<()> {
    writeln!(
        h,
        "<h2>Details</h2><div class=\"wide\"><table><tr><th class=\"name\">task</th><th class=\"name\">embedding set\
         </th><th>n (+/−)</th><th>coverage</th><th>genes matched</th><th>ROC-AUC</th><th>AP</th>\
         <th>accuracy</th><th>F1</th><th class=\"name\">other metrics</th>\
         <th class=\"name\">protocol (seed)</th></tr>"
    )?;
    for run in &data.runs {
        for t in &run.probe.results {
            let classifier = match t.outcome.probe_scores() {
                Some(sc) => format!(
                    "<td>{:.3} ± {:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td>",
                    sc.roc_auc.mean,
                    sc.roc_auc.sd,
                    sc.average_precision.mean,
                    sc.accuracy.mean,
                    sc.f1.mean
                ),
                None => "<td>–</td><td>–</td><td>–</td><td>–</td>".to_string(),
            };
            writeln!(
                h,
                "<tr><td class=\"name\">{}</td><td class=\"name\">{}</td><td>{}/{}</td>\
                 <td>{:.1}%</td><td>{}/{}</td>{classifier}<td class=\"name\">{}</td>\
                 <td class=\"name\">{}</td></tr>",
                esc(&t.task),
                esc(&t.embedding_set),
                t.outcome.counts().0,
                t.outcome.counts().1,
                100.0 * t.outcome.coverage().fraction(),
                t.outcome.coverage().genes_matched,
                t.outcome.coverage().genes_total,
                esc(&t
                    .outcome
                    .other_metrics()
                    .iter()
                    .map(|(k, v)| format!("{k} {:.3}", v.mean))
                    .collect::<Vec<_>>()
                    .join(", ")),
                esc(&t.protocol)
            )?;
        }
    }
    write!(h, "</table></div>")?;
    Ok(())
}

/// Where each embedding set came from.
fn embedding_sets_table(h: &mut String, data: &ReportData) -> Result<()> {
    writeln!(h, "<h2>Embedding sets</h2><table><tr><th class=\"name\">name</th>\
               <th>genes</th><th>dims</th><th class=\"name\">source</th><th class=\"name\">SHA-256</th></tr>")?;
    for run in &data.runs {
        for e in &run.probe.embedding_sets {
            writeln!(
                h,
                "<tr><td class=\"name\">{}</td><td>{}</td><td>{}</td><td class=\"name\">{}</td>\
                 <td class=\"name\">{}</td></tr>",
                esc(&e.name),
                e.genes,
                e.dim,
                esc(&e.source),
                esc(if e.sha256.is_empty() {
                    "generated"
                } else {
                    &e.sha256
                })
            )?;
        }
    }
    write!(h, "</table>")?;
    Ok(())
}

/// The figures, inline.
fn figures_section(h: &mut String, figures: &[(String, PathBuf)]) -> Result<()> {
    writeln!(h, "<h2>Figures</h2>")?;
    for (caption, path) in figures {
        writeln!(
            h,
            "<figure><img alt=\"{0}\" src=\"{1}\"><figcaption class=\"note\">{0}</figcaption></figure>",
            esc(caption),
            png_data_uri(path)?
        )?;
    }
    Ok(())
}
