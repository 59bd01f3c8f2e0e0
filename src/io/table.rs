//! Delimited tables with a header row (TSV/CSV), read whole, with line numbers kept for errors.
//!
//! Task label files, pair lists and id maps all go through here, so every reader reports
//! problems the same way: `file:line: what is wrong`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// A column named by header text or by 0-based position (for files whose header cell is empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ColumnRef {
    Index(usize),
    Name(String),
}

impl std::fmt::Display for ColumnRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ColumnRef::Index(i) => write!(f, "column #{i}"),
            ColumnRef::Name(n) => write!(f, "column '{n}'"),
        }
    }
}

/// The parts of a field that joins several names with `sep` (e.g. `KLF1+MAP2K6`); `None` when a
/// part is empty.
pub(crate) fn split_joined<'a>(text: &'a str, sep: &str) -> Option<Vec<&'a str>> {
    let parts: Vec<&str> = text.split(sep).collect();
    (!parts.iter().any(|p| p.is_empty())).then_some(parts)
}

/// A whole delimited file: the header and every data row with its 1-based line number.
#[derive(Debug)]
pub(crate) struct Table {
    pub path: PathBuf,
    pub header: Vec<String>,
    pub rows: Vec<(u64, csv::StringRecord)>,
}

impl Table {
    /// Reads `path`; the delimiter is `,` for `.csv` files and a tab otherwise.
    /// `has_header = false` names columns by position only.
    pub(crate) fn read(path: &Path, has_header: bool) -> Result<Self> {
        let delimiter = match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => b',',
            _ => b'\t',
        };
        Self::read_with(path, has_header, delimiter)
    }

    pub(crate) fn read_with(path: &Path, has_header: bool, delimiter: u8) -> Result<Self> {
        let file = path.display();
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(false)
            .flexible(true)
            .quoting(delimiter == b',')
            .from_path(path)
            .with_context(|| format!("{file}: cannot open"))?;
        let mut header = Vec::new();
        let mut rows = Vec::new();
        let mut record = csv::StringRecord::new();
        let mut first = true;
        while reader
            .read_record(&mut record)
            .with_context(|| format!("{file}: not valid delimited text"))?
        {
            let line = record.position().map_or(0, |p| p.line());
            if first && has_header {
                header = record.iter().map(|s| s.trim().to_string()).collect();
                first = false;
                continue;
            }
            first = false;
            if record.len() == 1 && record[0].trim().is_empty() {
                continue;
            }
            if has_header && record.len() != header.len() {
                bail!(
                    "{file}:{line}: row has {} fields but the header has {}",
                    record.len(),
                    header.len()
                );
            }
            rows.push((line, record.clone()));
        }
        if rows.is_empty() {
            bail!("{file}: no data rows");
        }
        Ok(Self {
            path: path.to_path_buf(),
            header,
            rows,
        })
    }

    /// The header for an error message: its names when it looks like one (two or more short
    /// names), else only what is wrong — a file that is not a table of this kind (a single
    /// column: the delimiter never occurs) is never echoed.
    fn describe_header(&self) -> String {
        let plausible =
            self.header.len() >= 2 && self.header.iter().all(|h| h.chars().count() <= 64);
        if plausible {
            let shown: Vec<&str> = self.header.iter().take(30).map(String::as_str).collect();
            let more = if self.header.len() > 30 { ", ..." } else { "" };
            format!("header: {}{more}", shown.join(", "))
        } else if self.header.len() < 2 {
            "its first line has a single field: not a table with this delimiter".to_string()
        } else {
            format!(
                "its first line has {} fields, not a header of names",
                self.header.len()
            )
        }
    }

    /// Position of a column, with an error listing the header when it is absent.
    pub(crate) fn column(&self, col: &ColumnRef) -> Result<usize> {
        let width = self.header.len().max(self.rows[0].1.len());
        match col {
            ColumnRef::Index(i) if *i < width => Ok(*i),
            ColumnRef::Name(name) => match self.header.iter().position(|h| h == name) {
                Some(i) => Ok(i),
                None => bail!(
                    "{}: no column '{name}' ({})",
                    self.path.display(),
                    self.describe_header()
                ),
            },
            ColumnRef::Index(i) => bail!(
                "{}: column #{i} requested but rows have {width} columns",
                self.path.display()
            ),
        }
    }

    /// The trimmed field `col` of a row, or an error naming the line when the row is short.
    pub(crate) fn field<'r>(
        &self,
        row: &'r (u64, csv::StringRecord),
        col: usize,
    ) -> Result<&'r str> {
        match row.1.get(col) {
            Some(v) => Ok(v.trim()),
            None => bail!(
                "{}:{}: row has {} fields, column #{col} is missing",
                self.path.display(),
                row.0,
                row.1.len()
            ),
        }
    }
}
