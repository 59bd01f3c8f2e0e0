//! Gene lists and per-gene texts.
//!
//! A gene list has one gene per line (`#` starts a comment; blank lines are skipped). A text source
//! is a JSON object `{gene: text}` or a delimited table with a header (`--id-col`, `--text-col`).
//! Genes match texts case-insensitively; genes without a text are reported, never dropped silently.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::io::table::{ColumnRef, Table};

/// The gene id column a text table is read by unless told otherwise.
pub const ID_COLUMN: &str = "symbol";
/// The text column a text table is read by unless told otherwise.
pub const TEXT_COLUMN: &str = "profile";

/// Reads a gene list; duplicate genes are an error naming both lines.
pub fn read_gene_list(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read gene list", path.display()))?;
    let mut genes = Vec::new();
    let mut first: HashMap<String, usize> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let gene = line.split('#').next().unwrap_or("").trim();
        if gene.is_empty() {
            continue;
        }
        if gene.contains(char::is_whitespace) {
            bail!(
                "{}:{}: '{gene}' is not one gene id (one gene per line)",
                path.display(),
                i + 1
            );
        }
        if let Some(prev) = first.insert(gene.to_ascii_uppercase(), i + 1) {
            bail!(
                "{}:{}: gene '{gene}' already listed on line {prev}",
                path.display(),
                i + 1
            );
        }
        genes.push(gene.to_string());
    }
    if genes.is_empty() {
        bail!("{}: no genes listed", path.display());
    }
    Ok(genes)
}

/// Per-gene texts keyed by upper-cased gene id.
#[derive(Debug, Default)]
pub struct GeneTexts {
    texts: HashMap<String, String>,
    /// Gene ids as written in the source, in source order.
    order: Vec<String>,
}

impl GeneTexts {
    /// Reads `.json` as an object of strings, anything else as a delimited table.
    pub fn read(path: &Path, id_col: &str, text_col: &str) -> Result<Self> {
        let file = path.display();
        let mut texts = HashMap::new();
        let mut order = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut insert = |id: &str, text: &str, at: String| -> Result<()> {
            if !seen.insert(id.trim().to_ascii_uppercase()) {
                bail!("{at}: gene '{id}' has a second text");
            }
            order.push(id.trim().to_string());
            // An empty text is no text: the gene stays listed, and is reported as missing.
            if !text.trim().is_empty() {
                texts.insert(id.trim().to_ascii_uppercase(), text.to_string());
            }
            Ok(())
        };
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            let raw =
                std::fs::read_to_string(path).with_context(|| format!("{file}: cannot read"))?;
            let value: serde_json::Value =
                serde_json::from_str(&raw).with_context(|| format!("{file}: not valid JSON"))?;
            let Some(obj) = value.as_object() else {
                bail!("{file}: expected a JSON object {{gene: text}}");
            };
            for (gene, text) in obj {
                let Some(text) = text.as_str() else {
                    bail!("{file}: the value for gene '{gene}' is not a string");
                };
                insert(gene, text, format!("{file}"))?;
            }
        } else {
            let table = Table::read(path, true)?;
            let c_id = table.column(&ColumnRef::Name(id_col.to_string()))?;
            let c_text = table.column(&ColumnRef::Name(text_col.to_string()))?;
            for row in &table.rows {
                insert(
                    table.field(row, c_id)?,
                    table.field(row, c_text)?,
                    format!("{file}:{}", row.0),
                )?;
            }
        }
        if texts.is_empty() {
            bail!("{file}: no texts");
        }
        Ok(Self { texts, order })
    }

    /// Every gene of the source, in source order; those with an empty text have none
    /// ([`GeneTexts::get`] is `None`), so they are counted as missing, not dropped.
    pub fn genes(&self) -> &[String] {
        &self.order
    }

    pub fn get(&self, gene: &str) -> Option<&str> {
        self.texts
            .get(&gene.to_ascii_uppercase())
            .map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gene_lists_skip_comments_and_reject_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.txt");
        std::fs::write(&p, "# genes\nTP53\n\nBRCA1  # comment\n").unwrap();
        assert_eq!(read_gene_list(&p).unwrap(), vec!["TP53", "BRCA1"]);
        std::fs::write(&p, "TP53\ntp53\n").unwrap();
        let e = read_gene_list(&p).unwrap_err().to_string();
        assert!(e.contains("g.txt:2") && e.contains("line 1"), "{e}");
        std::fs::write(&p, "TP53 BRCA1\n").unwrap();
        assert!(read_gene_list(&p)
            .unwrap_err()
            .to_string()
            .contains("g.txt:1"));
    }

    #[test]
    fn texts_from_json_and_tables() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("t.json");
        std::fs::write(&j, r#"{"TP53": "tumour suppressor", "EMPTY": ""}"#).unwrap();
        let t = GeneTexts::read(&j, "", "").unwrap();
        assert_eq!(t.get("tp53"), Some("tumour suppressor"));
        assert_eq!(t.get("EMPTY"), None);
        // Listed (so that it is counted as missing), without a text.
        assert_eq!(t.genes().len(), 2);
        assert!(t.genes().contains(&"EMPTY".to_string()));
        assert_eq!(t.len(), 1);
        let p = dir.path().join("t.tsv");
        std::fs::write(&p, "symbol\tprofile\nTP53\tA\nTP53\tB\n").unwrap();
        let e = format!(
            "{:#}",
            GeneTexts::read(&p, "symbol", "profile").unwrap_err()
        );
        assert!(e.contains("t.tsv:3") && e.contains("second text"), "{e}");
        let e = format!("{:#}", GeneTexts::read(&p, "gene", "profile").unwrap_err());
        assert!(e.contains("no column 'gene'"), "{e}");
        std::fs::write(&j, "[1, 2]").unwrap();
        assert!(GeneTexts::read(&j, "", "").is_err());
    }
}
