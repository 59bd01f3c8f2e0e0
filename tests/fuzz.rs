//! Fuzzed parsers: every file format bftkit reads gets generated and mutated inputs (seeded, so
//! a failure is reproducible), and must answer each with a value or an error that names the
//! file — never a panic, and never an allocation beyond a bound (this binary's allocator aborts
//! on one, naming its size).
//!
//! `BFTKIT_FUZZ_CASES` sets the cases per format (default 3,000; the whole set then takes well
//! under a minute on two cores in a debug build); `BFTKIT_FUZZ_SEED` the seed (default 0). The
//! input of a failing case is kept under the test's temporary folder, and the panic message
//! names it.
//!
//! Memory is bounded by this binary's allocator: it refuses (returns null for) one allocation
//! above 1 GiB or more than 4 GiB live, as an exhausted machine would. A parser that reserves
//! fallibly gets an error to report; one that allocates what a header claims aborts, failing
//! the test with the format and case logged.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

// ---------------------------------------------------------------------------------------------
// Bounded memory (see the header).

const MAX_ALLOCATION: usize = 1 << 30;
const MAX_LIVE: usize = 4 << 30;

struct Bounded;

static LIVE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The format and case this thread is parsing, for the abort message.
    static CURRENT: std::cell::Cell<(&'static str, usize)> = const { std::cell::Cell::new(("", 0)) };
}

/// `n` in decimal, into `buf`, without allocating.
fn decimal(mut n: usize, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Whether an allocation of `size` bytes stays within the bound. One beyond it is refused (the
/// allocator returns null, as an exhausted system would): a fallible reservation
/// (`try_reserve`) turns that into an error, anything else aborts the binary, which fails the
/// test. Refusals are logged with the format and case.
fn within_bound(size: usize) -> bool {
    let live = LIVE.load(Ordering::Relaxed);
    if size <= MAX_ALLOCATION && live.saturating_add(size) <= MAX_LIVE {
        return true;
    }
    // No allocation here: fixed text and decimals, written raw to stderr.
    let (format, case) = CURRENT.with(|c| c.get());
    let mut buf = [0u8; 20];
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(b"fuzz: refused an allocation of ");
    let _ = err.write_all(decimal(size, &mut buf));
    let _ = err.write_all(b" bytes (bound: 1 GiB each, 4 GiB live) in format '");
    let _ = err.write_all(format.as_bytes());
    let _ = err.write_all(b"', case ");
    let _ = err.write_all(decimal(case, &mut buf));
    let _ = err.write_all(b"; an abort now means an infallible allocation\n");
    false
}

unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !within_bound(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !within_bound(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let ok = if new_size > MAX_ALLOCATION {
            within_bound(new_size)
        } else {
            within_bound(new_size.saturating_sub(layout.size()))
        };
        if !ok {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Bounded = Bounded;

// ---------------------------------------------------------------------------------------------
// Inputs: mutations of valid files, and text generated from each format's pieces.

fn cases() -> usize {
    std::env::var("BFTKIT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

fn rng_for(format: &str) -> ChaCha8Rng {
    let seed: u64 = std::env::var("BFTKIT_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let salt = format
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(0x100_0000_01b3) ^ u64::from(b));
    ChaCha8Rng::seed_from_u64(seed ^ salt)
}

/// Byte strings that break parsers: numbers at and beyond every limit, separators, quotes,
/// brackets, control and invalid UTF-8 bytes.
const TOKENS: &[&[u8]] = &[
    b"-1",
    b"0",
    b"-0",
    b"1e400",
    b"-3e38",
    b"1e-45",
    b"nan",
    b"NaN",
    b"inf",
    b"-inf",
    b"99999999999999999999",
    b"18446744073709551615",
    b"4294967296",
    b"2147483648",
    b"\n",
    b"\r\n",
    b"\t",
    b",",
    b" ",
    b"\"",
    b"'",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b"=",
    b"#",
    b"%",
    b"\x00",
    b"\xff\xfe",
    "\u{e9}".as_bytes(),
    b"[[",
    b"]]",
    b"null",
    b"true",
    b"..",
    b"../../x",
    b"/etc/passwd",
];

/// Integers written over binary length and offset fields.
const WORDS: &[u64] = &[
    0,
    1,
    2,
    7,
    255,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 32,
    1 << 40,
    u64::MAX,
    u64::MAX / 2,
];

fn range(rng: &mut ChaCha8Rng, len: usize) -> (usize, usize) {
    if len == 0 {
        return (0, 0);
    }
    let a = rng.random_range(0..len);
    let b = rng.random_range(a..=len.min(a + 64));
    (a, b)
}

/// One to four random edits of `input`.
fn mutate(rng: &mut ChaCha8Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let len = v.len();
        match rng.random_range(0..8) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                v[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                v[i] = [0u8, 0xff, b'\n', b'\t', b',', b'"', b'-', b'9', b'e', b' ']
                    [rng.random_range(0..10)];
            }
            2 => {
                let (a, b) = range(rng, len);
                v.drain(a..b);
            }
            3 => {
                let (a, b) = range(rng, len);
                let piece = v[a..b].to_vec();
                let at = rng.random_range(0..=v.len());
                v.splice(at..at, piece);
            }
            4 if len > 0 => v.truncate(rng.random_range(0..len)),
            5 => {
                let t = TOKENS[rng.random_range(0..TOKENS.len())];
                let at = rng.random_range(0..=len);
                if rng.random_bool(0.5) {
                    v.splice(at..at, t.iter().copied());
                } else {
                    let end = (at + t.len()).min(len);
                    v.splice(at..end, t.iter().copied());
                }
            }
            6 if len >= 8 => {
                let w = WORDS[rng.random_range(0..WORDS.len())];
                let at = rng.random_range(0..=len - 8);
                if rng.random_bool(0.5) {
                    v[at..at + 8].copy_from_slice(&w.to_le_bytes());
                } else {
                    v[at..at + 4].copy_from_slice(&(w as u32).to_le_bytes());
                }
            }
            _ => {
                // Swap two lines (text formats: rows out of place, headers in the middle).
                let lines: Vec<&[u8]> = v.split(|&b| b == b'\n').collect();
                if lines.len() > 2 {
                    let (i, j) = (
                        rng.random_range(0..lines.len()),
                        rng.random_range(0..lines.len()),
                    );
                    let mut lines: Vec<Vec<u8>> = lines.iter().map(|l| l.to_vec()).collect();
                    lines.swap(i, j);
                    v = lines.join(&b'\n');
                }
            }
        }
    }
    v
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn pick<'a>(rng: &mut ChaCha8Rng, options: &[&'a str]) -> &'a str {
    options[rng.random_range(0..options.len())]
}

/// A field of a generated table: mostly plausible, sometimes hostile.
fn number(rng: &mut ChaCha8Rng) -> String {
    match rng.random_range(0..10) {
        0 => String::from_utf8_lossy(TOKENS[rng.random_range(0..TOKENS.len())]).into_owned(),
        1 => format!("{}", rng.random_range(-5i64..5)),
        _ => format!("{:.4}", rng.random_range(-3.0f64..3.0)),
    }
}

fn gene(rng: &mut ChaCha8Rng) -> String {
    pick(
        rng,
        &[
            "TP53",
            "tp53",
            "BRCA1",
            "EGFR",
            "ENSG00000141510",
            "7157",
            "",
            "A B",
            "MYC",
        ],
    )
    .to_string()
}

// ---------------------------------------------------------------------------------------------
// The harness.

/// Makes an input of a format from scratch.
type Generator<'a> = dyn Fn(&mut ChaCha8Rng) -> Vec<u8> + 'a;

/// Runs `parse` on `cases()` inputs (generated by `make`, which may mutate a seed): asserts no
/// panic, and that every error names the file. Returns how many inputs were accepted.
fn fuzz(
    format: &'static str,
    file: &str,
    seeds: &[Vec<u8>],
    generate: Option<&Generator<'_>>,
    parse: &dyn Fn(&Path) -> anyhow::Result<()>,
) -> usize {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("fuzz")
        .join(format);
    std::fs::create_dir_all(&dir).unwrap();
    // The input goes to `file` (under the format's folder); errors must name it.
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    // The seeds themselves are valid: otherwise mutations exercise error paths only.
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(&path, seed).unwrap();
        if let Err(e) = parse(&path) {
            panic!("{format}: seed {i} is refused: {e:#}");
        }
    }
    let mut rng = rng_for(format);
    let mut accepted = 0;
    for case in 0..cases() {
        let bytes = match (generate, rng.random_range(0..3)) {
            (Some(g), 0) => g(&mut rng),
            (Some(g), 1) => {
                let base = g(&mut rng);
                mutate(&mut rng, &base)
            }
            _ => {
                let seed = &seeds[rng.random_range(0..seeds.len())];
                mutate(&mut rng, seed)
            }
        };
        std::fs::write(&path, &bytes).unwrap();
        CURRENT.with(|c| c.set((format, case)));
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| parse(&path)));
        let keep = |why: String| -> ! {
            let kept = dir.join(format!("failed-{case}-{name}"));
            std::fs::write(&kept, &bytes).unwrap();
            panic!(
                "{format}, case {case}: {why}; input kept in {}",
                kept.display()
            );
        };
        match outcome {
            Err(_) => keep("panicked".to_string()),
            Ok(Ok(())) => accepted += 1,
            Ok(Err(e)) => {
                let msg = format!("{e:#}");
                if !msg.contains(&name) {
                    keep(format!("the error does not name the file: {msg}"));
                }
            }
        }
    }
    accepted
}

fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn embedding_tables() {
    use bftkit::io::embeddings::GeneEmbeddings;
    let tsv = b"gene\td0\td1\td2\nTP53\t0.5\t-1\t2e-3\nBRCA1\t1\t2\t3\n# comment\nEGFR\t0\t0\t0\n";
    let csv = b"gene,0,1,2\nTP53,0.5,-1,2e-3\n\"BRCA1\",1,2,3\n";
    let generate = |rng: &mut ChaCha8Rng| -> Vec<u8> {
        let width = rng.random_range(1..5);
        let sep = pick(rng, &["\t", ","]);
        let mut out = String::new();
        if rng.random_bool(0.5) {
            out += &format!(
                "gene{sep}{}\n",
                (0..width)
                    .map(|j| j.to_string())
                    .collect::<Vec<_>>()
                    .join(sep)
            );
        }
        for _ in 0..rng.random_range(0..6) {
            let w = if rng.random_bool(0.9) {
                width
            } else {
                rng.random_range(0..6)
            };
            let vals: Vec<String> = (0..w).map(|_| number(rng)).collect();
            out += &format!("{}{sep}{}\n", gene(rng), vals.join(sep));
        }
        out.into_bytes()
    };
    let parse = |p: &Path| GeneEmbeddings::read(p).map(|_| ());
    let n = fuzz(
        "embeddings_tsv",
        "case.tsv",
        &[tsv.to_vec()],
        Some(&generate),
        &parse,
    );
    assert!(n > 0, "no generated table was accepted");
    fuzz(
        "embeddings_csv",
        "case.csv",
        &[csv.to_vec()],
        Some(&generate),
        &parse,
    );
}

#[test]
fn embedding_safetensors() {
    use bftkit::io::embeddings::GeneEmbeddings;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("e.safetensors");
    GeneEmbeddings::new(
        vec!["TP53".into(), "BRCA1".into(), "EGFR".into()],
        4,
        (0..12).map(|i| i as f32 * 0.25 - 1.0).collect(),
        "fuzz".into(),
    )
    .unwrap()
    .write(&p)
    .unwrap();
    let seed = std::fs::read(&p).unwrap();
    fuzz(
        "embeddings_safetensors",
        "case.safetensors",
        &[seed],
        None,
        &|p| GeneEmbeddings::read(p).map(|_| ()),
    );
}

#[test]
fn matrix_market() {
    use bftkit::io::matrix::read_mtx;
    let names = |n: usize, p: &str| (0..n).map(|i| format!("{p}{i}")).collect::<Vec<_>>();
    let seed = b"%%MatrixMarket matrix coordinate integer general\n% written by a test\n4 3 5\n1 1 3\n2 1 1\n4 2 7\n3 3 2\n1 3 1\n".to_vec();
    let generate = |rng: &mut ChaCha8Rng| -> Vec<u8> {
        let field = pick(rng, &["integer", "real", "pattern", "complex", "double"]);
        let symmetry = pick(
            rng,
            &["general", "symmetric", "skew-symmetric", "hermitian"],
        );
        let (r, c) = (rng.random_range(0..6), rng.random_range(0..6));
        let nnz = rng.random_range(0..8);
        let mut out =
            format!("%%MatrixMarket matrix coordinate {field} {symmetry}\n{r} {c} {nnz}\n");
        for _ in 0..rng.random_range(0..=nnz + 1) {
            out += &format!(
                "{} {} {}\n",
                rng.random_range(0..7),
                rng.random_range(0..7),
                number(rng)
            );
        }
        out.into_bytes()
    };
    // 10x layout: genes are the file's rows.
    let parse = |p: &Path| read_mtx(p, names(4, "g"), names(3, "c"), true).map(|_| ());
    fuzz(
        "mtx",
        "case.mtx",
        std::slice::from_ref(&seed),
        Some(&generate),
        &parse,
    );
    let gz_generate = |rng: &mut ChaCha8Rng| -> Vec<u8> {
        let text = generate(rng);
        let gz = gzip(&text);
        if rng.random_bool(0.5) {
            gz
        } else {
            mutate(rng, &gz)
        }
    };
    fuzz(
        "mtx_gz",
        "case.mtx.gz",
        &[gzip(&seed)],
        Some(&gz_generate),
        &parse,
    );
}

#[test]
fn dense_expression_tables() {
    use bftkit::io::matrix::read_dense;
    let seed = b"cell,TP53,BRCA1,EGFR\nc1,0,1,2\nc2,3,0,0\n".to_vec();
    fuzz("dense", "case.csv", &[seed], None, &|p| {
        read_dense(p).map(|_| ())
    });
}

#[test]
fn anndata_h5ad() {
    use bftkit::io::h5ad::read_h5ad;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/h5ad");
    let seeds: Vec<Vec<u8>> = ["csr_raw.h5ad", "csc.h5ad"]
        .iter()
        .map(|f| std::fs::read(dir.join(f)).unwrap())
        .collect();
    fuzz("h5ad", "case.h5ad", &seeds, None, &|p| {
        read_h5ad(p, true).map(|_| ())
    });
}

#[test]
fn gguf_models() {
    let dir = tempfile::tempdir().unwrap();
    bftkit::fixtures::write_tiny_models(dir.path()).unwrap();
    let seed = std::fs::read(dir.path().join("tiny-llama.gguf")).unwrap();
    fuzz("gguf", "case.gguf", &[seed], None, &|p| {
        bftkit::model::load_pretrained(p, &candle_core::Device::Cpu, candle_core::DType::F32)
            .map(|_| ())
    });
}

#[test]
fn model_folders() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-models");
    bftkit::fixtures::write_tiny_models(&dir).unwrap();
    let model = dir.join("tiny-llama");
    for (format, file) in [
        ("model_safetensors", "model.safetensors"),
        ("model_config", "config.json"),
        ("model_tokenizer", "tokenizer.json"),
    ] {
        let seed = std::fs::read(model.join(file)).unwrap();
        // A complete model folder around the fuzzed file.
        let target = format!("model/{file}");
        let folder = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("fuzz")
            .join(format)
            .join("model");
        std::fs::create_dir_all(&folder).unwrap();
        for other in ["model.safetensors", "config.json", "tokenizer.json"] {
            std::fs::copy(model.join(other), folder.join(other)).unwrap();
        }
        fuzz(format, &target, &[seed], None, &|p| {
            let folder = p.parent().unwrap();
            bftkit::model::load_pretrained(
                folder,
                &candle_core::Device::Cpu,
                candle_core::DType::F32,
            )
            .map(|_| ())
        });
    }
}

#[test]
fn task_files() {
    use bftkit::eval::task::TaskSpec;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tasks");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 5);
    fuzz("task", "case.toml", &seeds, None, &|p| {
        let text = text_of(&std::fs::read(p)?);
        TaskSpec::from_toml(&text, &p.display().to_string()).map(|_| ())
    });
}

#[test]
fn suite_files() {
    use bftkit::pipeline::SuiteConfig;
    let seed = b"name = \"minilm\"\ndata = \"data\"\nseed = 0\nbaseline = true\ntasks = [\"all\"]\numap = true\numap_task = \"dosage_sensitive_tfs\"\n\n[[embeddings]]\nname = \"MiniLM, GO profiles\"\ntexts = \"data/profiles.tsv\"\nmodel = \"models/minilm\"\n\n[[embeddings]]\nfile = \"my_genes.safetensors\"\n".to_vec();
    fuzz("suite", "case.toml", &[seed], None, &|p| {
        SuiteConfig::read(p).map(|_| ())
    });
}

fn json_value(rng: &mut ChaCha8Rng, depth: usize) -> serde_json::Value {
    use serde_json::json;
    match rng.random_range(0..if depth > 2 { 4 } else { 7 }) {
        0 => json!(number(rng).parse::<f64>().ok()),
        1 => json!(pick(
            rng,
            &["", "user", "assistant", "system", "tool", "TP53 is a gene"]
        )),
        2 => serde_json::Value::Null,
        3 => json!(rng.random_bool(0.5)),
        4 => serde_json::Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| json_value(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let mut m = serde_json::Map::new();
            for _ in 0..rng.random_range(0..4) {
                let k = pick(
                    rng,
                    &[
                        "prompt", "response", "messages", "role", "content", "probs", "logprobs",
                        "x",
                    ],
                );
                m.insert(k.to_string(), json_value(rng, depth + 1));
            }
            serde_json::Value::Object(m)
        }
    }
}

#[test]
fn training_conversations() {
    use bftkit::train::data::read_conversations;
    let seed = br#"{"prompt": "the gene", "response": "is a kinase"}
{"messages": [{"role": "system", "content": "You are a biologist."}, {"role": "user", "content": "TP53?"}, {"role": "assistant", "content": "A tumour suppressor."}]}
"#
    .to_vec();
    let generate = |rng: &mut ChaCha8Rng| -> Vec<u8> {
        (0..rng.random_range(1..4))
            .map(|_| json_value(rng, 0).to_string() + "\n")
            .collect::<String>()
            .into_bytes()
    };
    fuzz(
        "conversations",
        "case.jsonl",
        &[seed],
        Some(&generate),
        &|p| read_conversations(p).map(|_| ()),
    );
}

#[test]
fn token_probabilities() {
    use bftkit::train::read_token_probs;
    let seed = b"{\"probs\": [0.9, 0.5, 1.0, 0.01]}\n{\"logprobs\": [-0.1, -2.5, 0.0]}\n".to_vec();
    let generate = |rng: &mut ChaCha8Rng| -> Vec<u8> {
        (0..rng.random_range(1..4))
            .map(|_| {
                let key = pick(rng, &["probs", "logprobs"]);
                let vals: Vec<String> = (0..rng.random_range(0..6)).map(|_| number(rng)).collect();
                format!("{{\"{key}\": [{}]}}\n", vals.join(", "))
            })
            .collect::<String>()
            .into_bytes()
    };
    fuzz(
        "token_probs",
        "case.jsonl",
        &[seed],
        Some(&generate),
        &|p| read_token_probs(p).map(|_| ()),
    );
}

/// A results.json of one small run (a gene task and its UMAPs), cut to a few points per layout.
fn results_seed() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let tasks = dir.path().join("tasks");
    std::fs::create_dir_all(&tasks).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tasks/dosage_sensitive_tfs.toml"),
        tasks.join("dosage_sensitive_tfs.toml"),
    )
    .unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_bftkit"))
        .current_dir(dir.path())
        .args(["run", "--out", "r", "--tasks", "tasks"])
        .env_remove("BFTKIT_DATA")
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let text = std::fs::read_to_string(dir.path().join("r/fixtures/results.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for run in v["runs"].as_array_mut().unwrap() {
        for u in run["umaps"].as_array_mut().unwrap() {
            for key in ["genes", "xy", "classes"] {
                if let Some(a) = u[key].as_array_mut() {
                    a.truncate(6);
                }
            }
        }
    }
    serde_json::to_vec_pretty(&v).unwrap()
}

#[test]
fn results_files() {
    use bftkit::viz::report::ReportData;
    let seed = results_seed();
    fuzz("results", "case.json", &[seed], None, &|p: &Path| {
        ReportData::read_all(&[PathBuf::from(p)]).map(|_| ())
    });
}

#[test]
fn knowledge_benchmarks() {
    use bftkit::eval::knowledge::{bench::read_mmlu_dev, Benchmark};
    let fixtures = tempfile::tempdir().unwrap();
    bftkit::fixtures::write(fixtures.path()).unwrap();
    let mcq = fixtures.path().join("data/mcq");
    let seed = |file: &str| std::fs::read(mcq.join(file)).unwrap();
    // The benchmark readers take the data folder: the case file sits at its place under mcq/.
    let root = |p: &Path| p.ancestors().nth(3).unwrap().to_path_buf();
    let lines = |rng: &mut ChaCha8Rng| -> Vec<u8> {
        (0..rng.random_range(1..4))
            .map(|_| json_value(rng, 0).to_string() + "\n")
            .collect::<String>()
            .into_bytes()
    };
    for (format, file, bench) in [
        ("mcq_mmlu", "mmlu_test/anatomy_test.csv", Benchmark::Mmlu),
        (
            "mcq_medqa",
            "medqa_usmle/phrases_no_exclude_test.jsonl",
            Benchmark::Medqa,
        ),
        ("mcq_medmcqa", "medmcqa/dev.json", Benchmark::Medmcqa),
    ] {
        let generate: &Generator<'_> = &lines;
        fuzz(
            format,
            &format!("mcq/{file}"),
            &[seed(file)],
            (bench != Benchmark::Mmlu).then_some(generate),
            &|p| bench.read(&root(p)).map(|_| ()),
        );
    }
    fuzz(
        "mcq_mmlu_dev",
        "mcq/mmlu_dev/anatomy_dev.csv",
        &[seed("mmlu_dev/anatomy_dev.csv")],
        None,
        &|p| read_mmlu_dev(&root(p)).map(|_| ()),
    );
    // PubMedQA: the questions file is fuzzed, the test ids beside it are the fixtures'.
    let truth = seed("pubmedqa/test_ground_truth.json");
    let generate = |rng: &mut ChaCha8Rng| json_value(rng, 0).to_string().into_bytes();
    fuzz(
        "mcq_pubmedqa",
        "mcq/pubmedqa/ori_pqal.json",
        &[seed("pubmedqa/ori_pqal.json")],
        Some(&generate),
        &|p| {
            std::fs::write(p.with_file_name("test_ground_truth.json"), &truth).unwrap();
            Benchmark::Pubmedqa.read(&root(p)).map(|_| ())
        },
    );
}
