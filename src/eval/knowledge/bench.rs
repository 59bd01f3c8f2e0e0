//! The four benchmarks' files, read into one question type. Each reader checks every row and
//! names the file and line (or, in PubMedQA's JSON objects, the PubMed id) of a malformed one.
//!
//! Layout under the data folder (`mcq/`): MMLU `mmlu_test/<subject>_test.csv` (no header:
//! question, A, B, C, D, answer letter) and `mmlu_dev/<subject>_dev.csv` (header; answer 0–3),
//! MedQA `medqa_usmle/phrases_no_exclude_test.jsonl` (question, options A–D, answer_idx
//! letter), MedMCQA `medmcqa/dev.json` (one object per line: question, opa–opd, cop 1–4),
//! PubMedQA `pubmedqa/ori_pqal.json` (PubMed id → QUESTION, CONTEXTS, final_decision) with the
//! test ids of `pubmedqa/test_ground_truth.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// A multiple-choice benchmark.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Benchmark {
    /// MMLU test, 57 subjects (4 options).
    Mmlu,
    /// MedQA-USMLE, 4 options.
    Medqa,
    /// MedMCQA dev (4 options).
    Medmcqa,
    /// PubMedQA PQA-L test ids (yes / no / maybe, the abstract as context).
    Pubmedqa,
}

impl Benchmark {
    pub const ALL: [Benchmark; 4] = [
        Benchmark::Mmlu,
        Benchmark::Medqa,
        Benchmark::Medmcqa,
        Benchmark::Pubmedqa,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Benchmark::Mmlu => "mmlu",
            Benchmark::Medqa => "medqa",
            Benchmark::Medmcqa => "medmcqa",
            Benchmark::Pubmedqa => "pubmedqa",
        }
    }

    /// The answer labels the model chooses among (the continuations scored).
    pub fn labels(self) -> &'static [&'static str] {
        match self {
            Benchmark::Pubmedqa => &["yes", "no", "maybe"],
            _ => &["A", "B", "C", "D"],
        }
    }

    /// Where its questions are, under the data folder.
    pub fn path(self, data: &Path) -> PathBuf {
        let mcq = data.join("mcq");
        match self {
            Benchmark::Mmlu => mcq.join("mmlu_test"),
            Benchmark::Medqa => mcq.join("medqa_usmle/phrases_no_exclude_test.jsonl"),
            Benchmark::Medmcqa => mcq.join("medmcqa/dev.json"),
            Benchmark::Pubmedqa => mcq.join("pubmedqa"),
        }
    }

    /// Its questions, in a fixed order (MMLU by subject file name, then row).
    pub fn read(self, data: &Path) -> Result<Vec<Question>> {
        let path = self.path(data);
        if !path.exists() {
            bail!(
                "{}: not found (the {} benchmark's files)",
                path.display(),
                self.name()
            );
        }
        match self {
            Benchmark::Mmlu => read_mmlu(&path, "_test.csv", false),
            Benchmark::Medqa => read_medqa(&path),
            Benchmark::Medmcqa => read_medmcqa(&path),
            Benchmark::Pubmedqa => read_pubmedqa(&path),
        }
    }
}

/// One question of any benchmark.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    /// Stable within its benchmark: `subject:row` (MMLU), the line, or the PubMed id.
    pub id: String,
    /// MMLU's subject (file name stem), MedMCQA's subject, else the benchmark's name.
    pub subject: String,
    pub question: String,
    /// The option texts (MCQ benchmarks); empty for PubMedQA, whose labels are the options.
    pub options: Vec<String>,
    /// PubMedQA's abstract (its context paragraphs, joined by newlines).
    pub context: Option<String>,
    /// Index of the right label.
    pub answer: usize,
}

fn letter_index(s: &str) -> Option<usize> {
    match s.trim() {
        "A" => Some(0),
        "B" => Some(1),
        "C" => Some(2),
        "D" => Some(3),
        _ => None,
    }
}

/// MMLU CSV files of a folder ending in `suffix` (`_test.csv` or `_dev.csv`): one subject each.
/// Test files have no header and an answer letter; dev files a header and an answer 0–3.
pub(crate) fn read_mmlu(dir: &Path, suffix: &str, dev: bool) -> Result<Vec<Question>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot read", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: no *{suffix} files", dir.display());
    }
    let mut out = Vec::new();
    for file in &files {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
        let subject = name
            .as_deref()
            .and_then(|n| n.strip_suffix(suffix))
            .unwrap_or_default()
            .to_string();
        let shown = file.display();
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(dev)
            .flexible(true)
            .from_path(file)
            .with_context(|| format!("{shown}: cannot open"))?;
        for (i, record) in reader.records().enumerate() {
            let record = record.with_context(|| format!("{shown}: not valid CSV"))?;
            let line = record.position().map_or(i as u64 + 1, |p| p.line());
            if record.len() != 6 {
                bail!(
                    "{shown}:{line}: {} fields; a question has 6 (question, four options, answer)",
                    record.len()
                );
            }
            let answer = if dev {
                record[5].trim().parse::<usize>().ok().filter(|&a| a < 4)
            } else {
                letter_index(&record[5])
            };
            let Some(answer) = answer else {
                bail!(
                    "{shown}:{line}: answer '{}' is not {}",
                    record[5].trim(),
                    if dev { "0, 1, 2 or 3" } else { "A, B, C or D" }
                );
            };
            out.push(Question {
                id: format!("{subject}:{}", i + 1),
                subject: subject.clone(),
                question: record[0].to_string(),
                options: (1..5).map(|j| record[j].to_string()).collect(),
                context: None,
                answer,
            });
        }
    }
    Ok(out)
}

/// The MMLU dev questions (the few-shot examples) of each subject, in file order.
pub fn read_mmlu_dev(data: &Path) -> Result<BTreeMap<String, Vec<Question>>> {
    let dir = data.join("mcq/mmlu_dev");
    let mut by_subject: BTreeMap<String, Vec<Question>> = BTreeMap::new();
    for q in read_mmlu(&dir, "_dev.csv", true)? {
        by_subject.entry(q.subject.clone()).or_default().push(q);
    }
    Ok(by_subject)
}

/// The non-empty lines of a JSON-lines file, parsed, with their line numbers.
fn json_lines(path: &Path) -> Result<Vec<(usize, serde_json::Value)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not valid JSON", path.display(), i + 1))?;
        out.push((i + 1, v));
    }
    if out.is_empty() {
        bail!("{}: no questions", path.display());
    }
    Ok(out)
}

/// A string field of a JSON object, or an error naming `at` and the field.
fn text_field(v: &serde_json::Value, key: &str, at: &str) -> Result<String> {
    match v.get(key).and_then(|x| x.as_str()) {
        Some(s) => Ok(s.to_string()),
        None => bail!("{at}: no text field '{key}'"),
    }
}

fn read_medqa(path: &Path) -> Result<Vec<Question>> {
    let mut out = Vec::new();
    for (line, v) in json_lines(path)? {
        let at = format!("{}:{line}", path.display());
        let question = text_field(&v, "question", &at)?;
        let Some(given) = v.get("options").filter(|o| o.is_object()) else {
            bail!("{at}: no 'options' object (options A to D)");
        };
        let options = ["A", "B", "C", "D"]
            .iter()
            .map(|k| {
                given
                    .get(k)
                    .and_then(|x| x.as_str())
                    .map(str::to_string)
                    .with_context(|| format!("{at}: no option '{k}' (options A to D)"))
            })
            .collect::<Result<Vec<_>>>()?;
        let idx = text_field(&v, "answer_idx", &at)?;
        let Some(answer) = letter_index(&idx) else {
            bail!("{at}: answer_idx '{idx}' is not A, B, C or D");
        };
        out.push(Question {
            id: line.to_string(),
            subject: "medqa".into(),
            question,
            options,
            context: None,
            answer,
        });
    }
    Ok(out)
}

fn read_medmcqa(path: &Path) -> Result<Vec<Question>> {
    let mut out = Vec::new();
    for (line, v) in json_lines(path)? {
        let at = format!("{}:{line}", path.display());
        let question = text_field(&v, "question", &at)?;
        let options = ["opa", "opb", "opc", "opd"]
            .iter()
            .map(|k| text_field(&v, k, &at))
            .collect::<Result<Vec<_>>>()?;
        let cop = v.get("cop").and_then(|c| c.as_u64());
        let Some(answer) = cop.filter(|c| (1..=4).contains(c)).map(|c| c as usize - 1) else {
            bail!("{at}: cop must be 1, 2, 3 or 4 (1 = opa)");
        };
        let subject = v
            .get("subject_name")
            .and_then(|s| s.as_str())
            .unwrap_or("medmcqa")
            .to_string();
        out.push(Question {
            id: v
                .get("id")
                .and_then(|s| s.as_str())
                .map_or_else(|| line.to_string(), str::to_string),
            subject,
            question,
            options,
            context: None,
            answer,
        });
    }
    Ok(out)
}

fn read_pubmedqa(dir: &Path) -> Result<Vec<Question>> {
    let read = |name: &str| -> Result<(PathBuf, serde_json::Map<String, serde_json::Value>)> {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not valid JSON", path.display()))?;
        match v {
            serde_json::Value::Object(m) => Ok((path, m)),
            _ => bail!("{}: expected an object keyed by PubMed id", path.display()),
        }
    };
    let (all_path, all) = read("ori_pqal.json")?;
    let (test_path, test) = read("test_ground_truth.json")?;
    let labels = Benchmark::Pubmedqa.labels();
    let mut out = Vec::new();
    for (pmid, truth) in &test {
        let at = format!("{} (PubMed id {pmid})", all_path.display());
        let Some(entry) = all.get(pmid) else {
            bail!(
                "{}: test id {pmid} is not in {}",
                test_path.display(),
                all_path.display()
            );
        };
        let decision = text_field(entry, "final_decision", &at)?;
        let Some(answer) = labels.iter().position(|l| *l == decision) else {
            bail!("{at}: final_decision '{decision}' is not yes, no or maybe");
        };
        if truth.as_str() != Some(decision.as_str()) {
            bail!(
                "{}: PubMed id {pmid} is {truth} there but \"{decision}\" in {}",
                test_path.display(),
                all_path.display()
            );
        }
        let Some(contexts) = entry.get("CONTEXTS").and_then(|c| c.as_array()) else {
            bail!("{at}: no CONTEXTS list");
        };
        let paragraphs = contexts
            .iter()
            .map(|c| c.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .with_context(|| format!("{at}: CONTEXTS holds a non-text entry"))?;
        out.push(Question {
            id: pmid.clone(),
            subject: "pubmedqa".into(),
            question: text_field(entry, "QUESTION", &at)?,
            options: Vec::new(),
            context: Some(paragraphs.join("\n")),
            answer,
        });
    }
    if out.is_empty() {
        bail!("{}: no test ids", test_path.display());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (rel, text) in crate::fixtures::mcq_files_for_tests().unwrap() {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        dir
    }

    #[test]
    fn every_format_reads_with_its_answer_encoding() {
        let dir = data();
        let mmlu = Benchmark::Mmlu.read(dir.path()).unwrap();
        assert_eq!(mmlu.len(), 8);
        assert_eq!(mmlu[0].subject, "anatomy");
        assert_eq!(mmlu[0].question, "Which \"organ\" is number 0, in order?");
        assert_eq!(mmlu[0].options[1], "organ 1, option 1");
        assert_eq!(
            mmlu.iter().map(|q| q.answer).collect::<Vec<_>>()[..4],
            [0, 1, 2, 3]
        );
        let dev = read_mmlu_dev(dir.path()).unwrap();
        assert_eq!(dev["astronomy"].len(), 5);
        assert_eq!(dev["astronomy"][0].answer, 1);
        let medqa = Benchmark::Medqa.read(dir.path()).unwrap();
        assert_eq!(
            medqa.iter().map(|q| q.answer).collect::<Vec<_>>(),
            [2, 0, 3, 1]
        );
        let medmcqa = Benchmark::Medmcqa.read(dir.path()).unwrap();
        assert_eq!(
            medmcqa.iter().map(|q| q.answer).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
        let pubmed = Benchmark::Pubmedqa.read(dir.path()).unwrap();
        assert_eq!(pubmed.len(), 4, "the test ids only");
        assert_eq!(pubmed[2].answer, 2);
        assert_eq!(
            pubmed[0].context.as_deref(),
            Some("Background 0.\nResults 0: it was yes.")
        );
    }

    #[test]
    fn malformed_rows_name_file_and_line() {
        let dir = data();
        let mcq = dir.path().join("mcq");
        let err = |b: Benchmark| format!("{:#}", b.read(dir.path()).unwrap_err());
        let anatomy = mcq.join("mmlu_test/anatomy_test.csv");
        let good = std::fs::read_to_string(&anatomy).unwrap();
        std::fs::write(&anatomy, good.replacen(",A\n", ",E\n", 1)).unwrap();
        let e = err(Benchmark::Mmlu);
        assert!(e.contains("anatomy_test.csv:1") && e.contains("'E'"), "{e}");
        std::fs::write(&anatomy, good + "only,three,fields\n").unwrap();
        let e = err(Benchmark::Mmlu);
        assert!(
            e.contains("anatomy_test.csv:5") && e.contains("3 fields"),
            "{e}"
        );
        let medqa = mcq.join("medqa_usmle/phrases_no_exclude_test.jsonl");
        let good = std::fs::read_to_string(&medqa).unwrap();
        let mut lines: Vec<String> = good.lines().map(str::to_string).collect();
        lines[1] = lines[1].replace("\"answer_idx\":\"A\"", "\"answer_idx\":\"F\"");
        std::fs::write(&medqa, lines.join("\n")).unwrap();
        let e = err(Benchmark::Medqa);
        assert!(e.contains("jsonl:2") && e.contains("answer_idx 'F'"), "{e}");
        let medmcqa = mcq.join("medmcqa/dev.json");
        std::fs::write(&medmcqa, "{\"question\": \"q\", \"opa\": \"a\"}\n").unwrap();
        let e = err(Benchmark::Medmcqa);
        assert!(e.contains("dev.json:1") && e.contains("'opb'"), "{e}");
        std::fs::write(&medmcqa, "{not json\n").unwrap();
        assert!(err(Benchmark::Medmcqa).contains("dev.json:1: not valid JSON"));
        let truth = mcq.join("pubmedqa/test_ground_truth.json");
        std::fs::write(&truth, "{\"1000\": \"no\"}").unwrap();
        let e = err(Benchmark::Pubmedqa);
        assert!(e.contains("1000") && e.contains("\"no\""), "{e}");
        std::fs::write(&truth, "{\"999\": \"yes\"}").unwrap();
        assert!(err(Benchmark::Pubmedqa).contains("test id 999"));
        std::fs::remove_dir_all(mcq.join("mmlu_test")).unwrap();
        assert!(err(Benchmark::Mmlu).contains("not found"));
    }
}
