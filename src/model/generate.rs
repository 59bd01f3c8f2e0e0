//! Text generation: batched greedy decoding with a KV cache, and `bftkit describe`, where the
//! (tuned) model writes one profile per gene with the gene-profile prompt (`chat`).
//!
//! Decoding is continuously batched: up to `batch_size` sequences step together, and a finished
//! one leaves at once, its slot taken by the next prompt (prefilled, then joining the running
//! batch). Rows are padded on the left, so every row's next token sits in the last column; the
//! padding is masked out of attention and rotary positions count real tokens only, so a prompt
//! decodes the same alone or in any batch. Greedy decoding (temperature 0, as the authors)
//! makes the output deterministic: there is no seed to record.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::chat::{
    profile_messages, prompt_tokens, stop_tokens, ChatTemplate, PROFILE_SYSTEM, PROFILE_USER,
};
use super::decoder::Decoder;
use super::decoder::KvCache;
use super::device::{DeviceSpec, Precision};
use super::lora::LoraConfig;
use super::weights::load_pretrained;

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    /// Sequences decoded together (the running batch's slots).
    pub batch_size: usize,
    /// Generation of a row ends at the first of these (not included in the output).
    pub stop: Vec<u32>,
}

/// One prompt's continuation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub tokens: Vec<u32>,
    /// Ended at a stop token (else at `max_new_tokens`).
    pub stopped: bool,
}

/// Greedy continuations of every prompt, in input order, by continuous batching: at most
/// `batch_size` sequences decode together, and a finished one frees its slot for the next
/// prompt (prompts taken longest first), so a few long profiles do not hold a whole batch back.
/// `on_done` sees how many prompts are finished.
pub fn greedy(
    model: &Decoder,
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
    mut on_done: impl FnMut(usize),
) -> Result<Vec<Generated>> {
    let mut out: Vec<Option<Generated>> = vec![None; prompts.len()];
    let mut done = 0;
    greedy_each(model, prompts, opts, |i, g| {
        out[i] = Some(g.clone());
        done += 1;
        on_done(done);
        Ok(())
    })?;
    Ok(out.into_iter().map(|g| g.expect("every prompt")).collect())
}

/// [`greedy`], handing each prompt's continuation to `on_finished(prompt index, continuation)`
/// as soon as it is finished (in order of completion), so a caller can save work as it goes; an
/// error from `on_finished` stops decoding.
pub fn greedy_each(
    model: &Decoder,
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
    mut on_finished: impl FnMut(usize, &Generated) -> Result<()>,
) -> Result<()> {
    if let Some(i) = prompts.iter().position(|p| p.is_empty()) {
        bail!("prompt {i} is empty");
    }
    let limit = model.config.max_position_embeddings;
    if let Some(longest) = prompts.iter().map(Vec::len).max() {
        if longest.saturating_add(opts.max_new_tokens) > limit {
            bail!(
                "a prompt of {longest} tokens plus {} new tokens exceeds the model's {limit} \
                 positions",
                opts.max_new_tokens
            );
        }
    }
    if opts.max_new_tokens == 0 {
        let empty = Generated {
            tokens: Vec::new(),
            stopped: false,
        };
        for i in 0..prompts.len() {
            on_finished(i, &empty)?;
        }
        return Ok(());
    }
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(prompts[i].len()));
    let mut queue = order.into_iter();
    let mut batch = Batch::default();
    loop {
        let free = opts.batch_size.max(1).saturating_sub(batch.slots.len());
        let joining: Vec<usize> = queue.by_ref().take(free).collect();
        if !joining.is_empty() {
            batch.join(model, prompts, &joining, opts)?;
        } else if batch.slots.is_empty() {
            break;
        } else {
            batch.step(model, opts)?;
        }
        for (i, g) in batch.take_finished()? {
            on_finished(i, &g)?;
        }
    }
    Ok(())
}

/// One sequence decoding in the running batch.
struct Slot {
    prompt: usize,
    /// Masked columns in front of this row in the cache.
    pad: usize,
    /// Real tokens in the cache (the next position).
    len: usize,
    /// The latest token chosen, to be fed next.
    last: u32,
    out: Generated,
    finished: bool,
}

impl Slot {
    /// Takes the model's choice of next token: the end at a stop token or the length limit.
    fn choose(&mut self, token: u32, opts: &GenerateOptions) {
        if opts.stop.contains(&token) {
            self.out.stopped = true;
            self.finished = true;
            return;
        }
        self.out.tokens.push(token);
        self.last = token;
        self.finished = self.out.tokens.len() >= opts.max_new_tokens;
    }
}

/// The running batch: its sequences and their shared KV cache (one row per slot, every row
/// padded on the left to the cache's length).
#[derive(Default)]
struct Batch {
    slots: Vec<Slot>,
    cache: KvCache,
}

impl Batch {
    /// Prefills the prompts `joining` (one left-padded forward pass), takes their first tokens
    /// and adds them to the batch.
    fn join(
        &mut self,
        model: &Decoder,
        prompts: &[Vec<u32>],
        joining: &[usize],
        opts: &GenerateOptions,
    ) -> Result<()> {
        let rows: Vec<&[u32]> = joining.iter().map(|&i| prompts[i].as_slice()).collect();
        let b = rows.len();
        let LeftPadded {
            l,
            pads,
            ids,
            pos,
            mask,
        } = left_padded(&rows);
        let device = model.device();
        let mut cache = KvCache::default();
        let hidden = model.forward_cached(
            &Tensor::from_vec(ids, (b, l), device)?,
            &pos,
            &Tensor::from_vec(mask, (b, 1, l, l), device)?.to_dtype(model.dtype())?,
            &mut cache,
        )?;
        let next = next_tokens(model, &hidden)?;
        let (front_old, front_new) = self.cache.append_rows(cache)?;
        for s in &mut self.slots {
            s.pad += front_old;
        }
        for (k, &i) in joining.iter().enumerate() {
            let mut slot = Slot {
                prompt: i,
                pad: pads[k] + front_new,
                len: prompts[i].len(),
                last: 0,
                out: Generated {
                    tokens: Vec::new(),
                    stopped: false,
                },
                finished: false,
            };
            slot.choose(next[k], opts);
            self.slots.push(slot);
        }
        Ok(())
    }

    /// Feeds every slot's latest token and takes the next.
    fn step(&mut self, model: &Decoder, opts: &GenerateOptions) -> Result<()> {
        let device = model.device();
        let b = self.slots.len();
        let keys = self.cache.len()? + 1;
        let mut mask = vec![0f32; b * keys];
        for (r, s) in self.slots.iter().enumerate() {
            mask[r * keys..r * keys + s.pad].fill(f32::NEG_INFINITY);
        }
        let ids: Vec<u32> = self.slots.iter().map(|s| s.last).collect();
        let pos: Vec<u32> = self.slots.iter().map(|s| s.len as u32).collect();
        let hidden = model.forward_cached(
            &Tensor::from_vec(ids, (b, 1), device)?,
            &pos,
            &Tensor::from_vec(mask, (b, 1, 1, keys), device)?.to_dtype(model.dtype())?,
            &mut self.cache,
        )?;
        let next = next_tokens(model, &hidden)?;
        for (s, t) in self.slots.iter_mut().zip(next) {
            s.len += 1;
            s.choose(t, opts);
        }
        Ok(())
    }

    /// Removes the finished sequences (their rows leave the cache) and drops cache columns no
    /// remaining row reads.
    fn take_finished(&mut self) -> Result<Vec<(usize, Generated)>> {
        if self.slots.iter().all(|s| !s.finished) {
            return Ok(Vec::new());
        }
        let keep: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&r| !self.slots[r as usize].finished)
            .collect();
        self.cache.keep_rows(&keep)?;
        let (finished, kept): (Vec<Slot>, Vec<Slot>) = std::mem::take(&mut self.slots)
            .into_iter()
            .partition(|s| s.finished);
        self.slots = kept;
        let front = self.slots.iter().map(|s| s.pad).min().unwrap_or(0);
        self.cache.drop_front(front)?;
        for s in &mut self.slots {
            s.pad -= front;
        }
        Ok(finished.into_iter().map(|s| (s.prompt, s.out)).collect())
    }
}

/// The greedy next token of every row, from the last position's logits.
fn next_tokens(model: &Decoder, hidden: &Tensor) -> Result<Vec<u32>> {
    let t = hidden.dim(1)?;
    Ok(model
        .logits(&hidden.narrow(1, t - 1, 1)?)?
        .to_dtype(DType::F32)?
        .argmax(D::Minus1)?
        .flatten_all()?
        .to_vec1()?)
}

/// A batch of token sequences padded on the left to a common length `l`, for
/// [`Decoder::forward_cached`]: ids (b·l, padding 0), rotary positions counting real tokens
/// only, and the prefill mask (b, 1, l, l) — causal over real tokens, a padding query seeing only
/// itself (so no row of scores is all −inf). Every row's last token is in the last column.
pub(crate) struct LeftPadded {
    pub l: usize,
    pub pads: Vec<usize>,
    pub ids: Vec<u32>,
    pub pos: Vec<u32>,
    pub mask: Vec<f32>,
}

pub(crate) fn left_padded(rows: &[&[u32]]) -> LeftPadded {
    let b = rows.len();
    let l = rows.iter().map(|p| p.len()).max().unwrap_or(0);
    let pads: Vec<usize> = rows.iter().map(|p| l - p.len()).collect();
    let mut ids = vec![0u32; b * l];
    let mut pos = vec![0u32; b * l];
    let mut mask = vec![f32::NEG_INFINITY; b * l * l];
    for (r, p) in rows.iter().enumerate() {
        ids[r * l + pads[r]..(r + 1) * l].copy_from_slice(p);
        for j in pads[r]..l {
            pos[r * l + j] = (j - pads[r]) as u32;
        }
        for i in 0..l {
            for j in 0..=i {
                if j >= pads[r] || i == j {
                    mask[(r * l + i) * l + j] = 0.0;
                }
            }
        }
    }
    LeftPadded {
        l,
        pads,
        ids,
        pos,
        mask,
    }
}

/// A decoder (and its tokenizer) from a model path, with saved LoRA adapters applied when
/// `adapter` names a folder holding `adapter_config.json` and `adapter_model.safetensors`.
pub fn load_decoder(
    model: &Path,
    adapter: Option<&Path>,
    device: &Device,
    dtype: DType,
) -> Result<(Decoder, Tokenizer)> {
    let pre = load_pretrained(model, device, dtype)?;
    let base = VarBuilder::from_tensors(pre.tensors, dtype, device);
    let decoder = match adapter {
        None => Decoder::load(base, &pre.config)?,
        Some(dir) => {
            let cfg_path = dir.join("adapter_config.json");
            let text = std::fs::read_to_string(&cfg_path)
                .with_context(|| format!("{}: cannot read", cfg_path.display()))?;
            let lora: LoraConfig = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a LoRA adapter config", cfg_path.display()))?;
            lora.check()
                .with_context(|| format!("{}: unsupported adapter", cfg_path.display()))?;
            let weights = dir.join("adapter_model.safetensors");
            let tensors = candle_core::safetensors::load(&weights, device)
                .with_context(|| format!("{}: cannot read adapter weights", weights.display()))?;
            let avb = VarBuilder::from_tensors(tensors, DType::F32, device);
            Decoder::load_with_lora(base, &pre.config, Some((&lora, avb))).with_context(|| {
                format!(
                    "{}: adapters do not fit {} (wrong base model?)",
                    weights.display(),
                    model.display()
                )
            })?
        }
    };
    Ok((decoder, pre.tokenizer))
}

#[derive(Debug, Clone)]
pub struct DescribeOptions {
    pub model: PathBuf,
    pub adapter: Option<PathBuf>,
    pub template: ChatTemplate,
    pub system: String,
    /// The user turn; `{gene}` becomes the symbol.
    pub user: String,
    pub max_new_tokens: usize,
    pub batch_size: usize,
    pub device: DeviceSpec,
    /// `None` = the device's default (f32 on CPU, bf16 on CUDA).
    pub precision: Option<Precision>,
}

impl Default for DescribeOptions {
    /// The gene-profile prompt, ChatML, up to 256 new tokens, 8 prompts per batch, on the CPU;
    /// the model path is empty (to be set).
    fn default() -> Self {
        Self {
            model: PathBuf::new(),
            adapter: None,
            template: ChatTemplate::default(),
            system: PROFILE_SYSTEM.to_string(),
            user: PROFILE_USER.to_string(),
            max_new_tokens: 256,
            batch_size: 8,
            device: DeviceSpec::Cpu,
            precision: None,
        }
    }
}

/// What `bftkit describe` did (written beside the profiles as `OUT.describe.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DescribeReport {
    pub bftkit_version: String,
    pub model: String,
    pub adapter: Option<String>,
    pub template: ChatTemplate,
    pub system: String,
    pub user: String,
    pub decoding: String,
    pub max_new_tokens: usize,
    pub batch_size: usize,
    pub genes: usize,
    /// Profiles that ended at an end-of-turn token, and those cut at `max_new_tokens`.
    pub stopped: usize,
    pub cut_at_limit: usize,
    pub generated_tokens: usize,
    pub seconds: f64,
    pub tokens_per_s: f64,
}

/// A profile for every gene: (symbol, text) in input order, and the report.
pub fn describe(
    genes: &[String],
    opts: &DescribeOptions,
    mut on_batch: impl FnMut(usize),
) -> Result<(Vec<(String, String)>, DescribeReport)> {
    let mut texts: Vec<Option<String>> = vec![None; genes.len()];
    let mut done = 0;
    let report = describe_each(genes, opts, |i, text, _| {
        texts[i] = Some(text.to_string());
        done += 1;
        on_batch(done);
        Ok(())
    })?;
    let profiles = genes
        .iter()
        .zip(texts)
        .map(|(g, t)| (g.clone(), t.expect("every gene")))
        .collect();
    Ok((profiles, report))
}

/// [`describe`], handing each profile to `on_profile(gene index, one-line text, its tokens)` as
/// soon as it is written (in order of completion), so a caller can save it at once; an error
/// from `on_profile` stops the run.
pub fn describe_each(
    genes: &[String],
    opts: &DescribeOptions,
    mut on_profile: impl FnMut(usize, &str, &Generated) -> Result<()>,
) -> Result<DescribeReport> {
    if genes.is_empty() {
        bail!("no genes to describe");
    }
    let device = opts.device.open()?;
    let (model, tokenizer) = load_decoder(
        &opts.model,
        opts.adapter.as_deref(),
        &device,
        Precision::resolve(opts.precision, &device),
    )?;
    let stop = stop_tokens(&tokenizer, opts.template);
    if stop.is_empty() {
        bail!(
            "{}: the tokenizer has no end-of-turn token for the {:?} template",
            opts.model.display(),
            opts.template
        );
    }
    let prompts = genes
        .iter()
        .map(|g| {
            prompt_tokens(
                &tokenizer,
                opts.template,
                &profile_messages(&opts.system, &opts.user, g),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let start = Instant::now();
    let gen_opts = GenerateOptions {
        max_new_tokens: opts.max_new_tokens,
        batch_size: opts.batch_size,
        stop,
    };
    let (mut tokens, mut stopped) = (0, 0);
    greedy_each(&model, &prompts, &gen_opts, |i, out| {
        tokens += out.tokens.len();
        stopped += out.stopped as usize;
        let text = tokenizer
            .decode(&out.tokens, true)
            .map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?;
        on_profile(i, &one_line(&text), out)
    })?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(DescribeReport {
        bftkit_version: env!("CARGO_PKG_VERSION").to_string(),
        model: opts.model.display().to_string(),
        adapter: opts.adapter.as_ref().map(|a| a.display().to_string()),
        template: opts.template,
        system: opts.system.clone(),
        user: opts.user.clone(),
        decoding: "greedy (temperature 0), KV cache, continuous batching".into(),
        max_new_tokens: opts.max_new_tokens,
        batch_size: opts.batch_size,
        genes: genes.len(),
        stopped,
        cut_at_limit: genes.len() - stopped,
        generated_tokens: tokens,
        seconds,
        tokens_per_s: tokens as f64 / seconds.max(1e-9),
    })
}

/// Whitespace runs (tabs, newlines) become single spaces, so a profile is one TSV field.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Writes `symbol<TAB>profile` rows under a header: the layout `bftkit embed --texts` reads by
/// default.
pub fn write_profiles(path: &Path, profiles: &[(String, String)]) -> Result<()> {
    let mut text = String::from("symbol\tprofile\n");
    for (g, p) in profiles {
        text.push_str(&format!("{g}\t{p}\n"));
    }
    crate::io::write_file(path, text)
}

/// Where `describe_to_file` writes its report: `OUT.describe.json`.
pub fn report_path(out: &Path) -> PathBuf {
    PathBuf::from(format!("{}.describe.json", out.display()))
}

/// `bftkit describe`: a profile for every gene of `genes`, written to `out` as TSV, with the
/// report beside it ([`report_path`]); `on_profile(done, total, tokens so far)` follows along.
pub fn describe_to_file(
    genes: &[String],
    opts: &DescribeOptions,
    out: &Path,
    mut on_profile: impl FnMut(usize, usize, usize),
) -> Result<DescribeReport> {
    let total = genes.len();
    let mut texts: Vec<Option<String>> = vec![None; total];
    let (mut done, mut tokens) = (0, 0);
    let report = describe_each(genes, opts, |i, text, g| {
        texts[i] = Some(text.to_string());
        done += 1;
        tokens += g.tokens.len();
        on_profile(done, total, tokens);
        Ok(())
    })?;
    let profiles: Vec<(String, String)> = genes
        .iter()
        .zip(texts)
        .map(|(g, t)| (g.clone(), t.expect("every gene")))
        .collect();
    write_profiles(out, &profiles)?;
    let path = report_path(out);
    crate::io::write_file(&path, serde_json::to_string_pretty(&report)?)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(kind: &str) -> (tempfile::TempDir, Decoder) {
        let dir = tempfile::tempdir().unwrap();
        crate::fixtures::write_tiny_decoder(dir.path(), kind).unwrap();
        let (model, _) = load_decoder(dir.path(), None, &Device::Cpu, DType::F32).unwrap();
        (dir, model)
    }

    /// Greedy decoding the slow way: the whole sequence again for every new token, one prompt
    /// at a time, no cache, no padding.
    fn naive(model: &Decoder, prompt: &[u32], n: usize) -> Vec<u32> {
        let mut seq = prompt.to_vec();
        for _ in 0..n {
            let ids = Tensor::from_vec(seq.clone(), (1, seq.len()), &Device::Cpu).unwrap();
            let h = model.forward_hidden(&ids).unwrap();
            let last = h.narrow(1, seq.len() - 1, 1).unwrap();
            let next: Vec<u32> = model
                .logits(&last)
                .unwrap()
                .argmax(D::Minus1)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            seq.push(next[0]);
        }
        seq[prompt.len()..].to_vec()
    }

    #[test]
    fn cached_batched_greedy_equals_full_recomputation_for_both_families() {
        for kind in ["llama", "qwen2"] {
            let (_dir, model) = tiny(kind);
            let prompts: Vec<Vec<u32>> = vec![
                vec![5, 9, 3],
                vec![17, 2, 33, 8, 8, 11, 30],
                vec![1],
                vec![22, 23, 24, 25, 6],
            ];
            let opts = GenerateOptions {
                max_new_tokens: 10,
                batch_size: 3,
                stop: vec![],
            };
            let got = greedy(&model, &prompts, &opts, |_| {}).unwrap();
            // Random weights still give varied continuations, so the comparison means something.
            assert!(got.windows(2).any(|w| w[0].tokens != w[1].tokens));
            for (p, g) in prompts.iter().zip(&got) {
                assert_eq!(g.tokens, naive(&model, p, 10), "{kind}: prompt {p:?}");
                assert!(!g.stopped);
            }
            // Batch size does not change anything.
            let one = GenerateOptions {
                batch_size: 1,
                ..opts
            };
            assert_eq!(greedy(&model, &prompts, &one, |_| {}).unwrap(), got);
        }
    }

    /// Sequences that end at different steps leave the batch and others join mid-way; every
    /// prompt still gets exactly its own greedy continuation, whatever the batch size.
    #[test]
    fn continuous_batching_matches_each_prompt_decoded_alone() {
        let (_dir, model) = tiny("qwen2");
        let prompts: Vec<Vec<u32>> = vec![
            vec![5, 9, 3],
            vec![17, 2, 33, 8, 8, 11, 30],
            vec![1],
            vec![22, 23, 24, 25, 6],
            vec![12, 14],
            vec![3, 3, 3, 3, 3, 3, 3, 3, 3, 3],
            vec![7, 31, 2, 19],
        ];
        let n = 12;
        let full: Vec<Vec<u32>> = prompts.iter().map(|p| naive(&model, p, n)).collect();
        // Stop tokens that end some continuations early, at different steps.
        let stop: Vec<u32> = vec![full[0][3], full[1][6], full[3][1]];
        let want: Vec<Generated> = full
            .iter()
            .map(|f| match f.iter().position(|t| stop.contains(t)) {
                Some(cut) => Generated {
                    tokens: f[..cut].to_vec(),
                    stopped: true,
                },
                None => Generated {
                    tokens: f.clone(),
                    stopped: false,
                },
            })
            .collect();
        let lengths: Vec<usize> = want.iter().map(|g| g.tokens.len()).collect();
        assert!(
            lengths.iter().any(|&l| l < 4) && lengths.contains(&n),
            "{lengths:?}"
        );
        for batch_size in [1, 2, 3, 8] {
            let opts = GenerateOptions {
                max_new_tokens: n,
                batch_size,
                stop: stop.clone(),
            };
            let mut seen = Vec::new();
            let got = greedy(&model, &prompts, &opts, |d| seen.push(d)).unwrap();
            assert_eq!(got, want, "batch size {batch_size}");
            assert_eq!(seen, (1..=prompts.len()).collect::<Vec<_>>());
        }
    }

    #[test]
    fn generation_ends_at_a_stop_token_and_respects_the_position_limit() {
        let (_dir, model) = tiny("llama");
        let prompt = vec![4u32, 7, 1];
        let first = naive(&model, &prompt, 3);
        let opts = GenerateOptions {
            max_new_tokens: 5,
            batch_size: 2,
            stop: vec![first[1]],
        };
        let got = greedy(&model, std::slice::from_ref(&prompt), &opts, |_| {}).unwrap();
        let cut = first.iter().position(|&t| t == first[1]).unwrap();
        assert_eq!(got[0].tokens, first[..cut].to_vec());
        assert!(got[0].stopped);
        let too_long = GenerateOptions {
            max_new_tokens: model.config.max_position_embeddings,
            ..opts
        };
        let err = greedy(&model, &[prompt], &too_long, |_| {}).unwrap_err();
        assert!(err.to_string().contains("exceeds"), "{err}");
        assert!(greedy(&model, &[vec![]], &too_long, |_| {}).is_err());
    }

    #[test]
    fn profiles_are_one_line_tsv_rows() {
        assert_eq!(one_line(" a\tb\n\nc  d "), "a b c d");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.tsv");
        write_profiles(&p, &[("TP53".into(), "x y".into())]).unwrap();
        assert_eq!(
            std::fs::read_to_string(p).unwrap(),
            "symbol\tprofile\nTP53\tx y\n"
        );
    }
}
