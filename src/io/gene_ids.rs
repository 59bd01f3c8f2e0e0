//! Gene identifiers: symbols, aliases, Ensembl and Entrez ids, and how task genes find their
//! embedding rows.
//!
//! Tasks name genes by Ensembl id, symbol or Entrez id; embeddings are usually keyed by symbol.
//! [`GeneIdMap`] (read from NCBI's gene table, `gene_id_map/hs_gene_ids_*.tsv`) maps every kind of
//! id to one canonical Entrez id; [`GeneResolver`] matches a task's gene to an embedding row first by
//! its exact (case-insensitive) name, then through the canonical id. Ambiguous aliases (shared by
//! several genes) are never used.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Result};

use super::embeddings::GeneEmbeddings;
use super::table::{ColumnRef, Table};

/// Where the gene id map of a data folder is, relative to it.
pub const GENE_MAP_FILE: &str = "gene_id_map/hs_gene_ids_orgHsEgDb_3.16.tsv";

/// Maps symbols, Ensembl ids, aliases and Entrez ids (case-insensitively) to Entrez ids.
#[derive(Debug, Default)]
pub struct GeneIdMap {
    symbol: HashMap<String, u64>,
    ensembl: HashMap<String, Vec<u64>>,
    alias: HashMap<String, Vec<u64>>,
    entrez: HashMap<u64, String>,
}

/// Ensembl ids may carry a version suffix (`ENSG00000141510.17`); the map ignores it.
fn normalise(id: &str) -> String {
    let id = id.trim().to_ascii_uppercase();
    if id.starts_with("ENS") {
        if let Some((stem, version)) = id.split_once('.') {
            if version.chars().all(|c| c.is_ascii_digit()) {
                return stem.to_string();
            }
        }
    }
    id
}

impl GeneIdMap {
    /// Reads an NCBI-style table with columns `entrez_id`, `symbol`, `ensembl_ids` and `aliases`
    /// (the last two `;`-separated).
    pub fn read(path: &Path) -> Result<Self> {
        let table = Table::read(path, true)?;
        let col = |n: &str| table.column(&ColumnRef::Name(n.to_string()));
        let (c_entrez, c_symbol) = (col("entrez_id")?, col("symbol")?);
        let (c_ensembl, c_alias) = (col("ensembl_ids")?, col("aliases")?);
        let mut map = GeneIdMap::default();
        for row in &table.rows {
            let text = table.field(row, c_entrez)?;
            let Ok(entrez) = text.parse::<u64>() else {
                bail!(
                    "{}:{}: entrez_id '{text}' is not a number",
                    path.display(),
                    row.0
                );
            };
            let symbol = table.field(row, c_symbol)?;
            map.symbol.entry(normalise(symbol)).or_insert(entrez);
            map.entrez.insert(entrez, symbol.to_string());
            for e in table
                .field(row, c_ensembl)?
                .split(';')
                .filter(|s| !s.is_empty())
            {
                map.ensembl.entry(normalise(e)).or_default().push(entrez);
            }
            for a in table
                .field(row, c_alias)?
                .split(';')
                .filter(|s| !s.is_empty())
            {
                map.alias.entry(normalise(a)).or_default().push(entrez);
            }
        }
        Ok(map)
    }

    /// Number of genes (Entrez records) in the map.
    pub fn len(&self) -> usize {
        self.entrez.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entrez.is_empty()
    }

    /// The canonical Entrez id of any identifier: official symbol first, then Ensembl id (when it
    /// names one gene), then a numeric Entrez id, then an unambiguous alias.
    pub fn canonical(&self, id: &str) -> Option<u64> {
        let key = normalise(id);
        if let Some(&e) = self.symbol.get(&key) {
            return Some(e);
        }
        if let Some([e]) = self.ensembl.get(&key).map(Vec::as_slice) {
            return Some(*e);
        }
        if let Ok(e) = key.parse::<u64>() {
            if self.entrez.contains_key(&e) {
                return Some(e);
            }
        }
        match self.alias.get(&key).map(Vec::as_slice) {
            Some([e]) => Some(*e),
            _ => None,
        }
    }

    /// The official symbol of an Entrez id.
    pub fn symbol_of(&self, entrez: u64) -> Option<&str> {
        self.entrez.get(&entrez).map(String::as_str)
    }
}

/// Finds the embedding row of a task gene.
pub struct GeneResolver<'a> {
    by_name: HashMap<String, usize>,
    by_entrez: HashMap<u64, usize>,
    map: Option<&'a GeneIdMap>,
}

impl<'a> GeneResolver<'a> {
    pub fn new(embeddings: &GeneEmbeddings, map: Option<&'a GeneIdMap>) -> Self {
        let mut by_name = HashMap::with_capacity(embeddings.len());
        let mut by_entrez = HashMap::new();
        for (i, id) in embeddings.ids.iter().enumerate() {
            by_name.entry(normalise(id)).or_insert(i);
        }
        if let Some(map) = map {
            // Rows whose id is an official symbol claim their gene before rows matched by alias.
            for exact in [true, false] {
                for (i, id) in embeddings.ids.iter().enumerate() {
                    let is_symbol = map.symbol.contains_key(&normalise(id));
                    if is_symbol != exact {
                        continue;
                    }
                    if let Some(e) = map.canonical(id) {
                        by_entrez.entry(e).or_insert(i);
                    }
                }
            }
        }
        Self {
            by_name,
            by_entrez,
            map,
        }
    }

    /// The embedding row for `id`, if any.
    pub fn resolve(&self, id: &str) -> Option<usize> {
        let key = normalise(id);
        if let Some(&i) = self.by_name.get(&key) {
            return Some(i);
        }
        let e = self.map?.canonical(&key)?;
        self.by_entrez.get(&e).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(dir: &tempfile::TempDir) -> GeneIdMap {
        let p = dir.path().join("ids.tsv");
        std::fs::write(
            &p,
            "entrez_id\tsymbol\tgene_type\tensembl_ids\tuniprot_ids\taliases\n\
             7157\tTP53\tprotein-coding\tENSG00000141510\tP04637\tP53;LFS1\n\
             672\tBRCA1\tprotein-coding\tENSG00000012048\t\tRNF53;SHARED\n\
             675\tBRCA2\tprotein-coding\tENSG00000139618\t\tFANCD1;SHARED\n",
        )
        .unwrap();
        GeneIdMap::read(&p).unwrap()
    }

    #[test]
    fn canonical_ids_from_every_kind() {
        let dir = tempfile::tempdir().unwrap();
        let m = map(&dir);
        assert_eq!(m.canonical("tp53"), Some(7157));
        assert_eq!(m.canonical("ENSG00000141510.17"), Some(7157));
        assert_eq!(m.canonical("7157"), Some(7157));
        assert_eq!(m.canonical("LFS1"), Some(7157));
        assert_eq!(
            m.canonical("SHARED"),
            None,
            "ambiguous alias must not resolve"
        );
        assert_eq!(m.canonical("NOPE"), None);
        assert_eq!(m.symbol_of(672), Some("BRCA1"));
    }

    #[test]
    fn resolver_matches_names_then_canonical_ids() {
        let dir = tempfile::tempdir().unwrap();
        let m = map(&dir);
        let emb = GeneEmbeddings::new(
            vec!["p53".into(), "TP53".into(), "FANCD1".into(), "OTHER".into()],
            1,
            vec![0.0, 1.0, 2.0, 3.0],
            String::new(),
        )
        .unwrap();
        let r = GeneResolver::new(&emb, Some(&m));
        assert_eq!(
            r.resolve("ENSG00000141510"),
            Some(1),
            "symbol row wins over alias row"
        );
        assert_eq!(
            r.resolve("brca2"),
            Some(2),
            "alias-keyed embedding found via Entrez"
        );
        assert_eq!(r.resolve("other"), Some(3), "names match without the map");
        assert_eq!(r.resolve("BRCA1"), None);
        let bare = GeneResolver::new(&emb, None);
        assert_eq!(bare.resolve("ENSG00000141510"), None);
    }
}
