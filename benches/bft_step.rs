//! BFT step time over SFT step time on the same batch (issue 4's speed target: <= 1.10).
//!
//! One LoRA (rank 16, all linear layers) training step's work — forward, loss weights, backward —
//! on a fixed batch, SFT and BFT alternating so that both see the same machine state; median of
//! the repetitions. Peak memory: run once per variant with `--only sft|bft` under
//! `/usr/bin/time -v` (bench/step_time.sh does both).
//!
//! cargo bench --bench bft_step -- [--model DIR] [--data FILE.jsonl] [--batch 4] [--max-len 128]
//!     [--reps 5] [--only sft|bft]

use std::time::Instant;

use anyhow::Result;
use bftkit::model::chat::{render, tokenize, ChatTemplate};
use bftkit::model::lora::{seed_adapters, LoraConfig};
use bftkit::model::{load_pretrained, Decoder};
use bftkit::train::data::read_conversations;
use bftkit::train::loss::{LossConfig, LossVariant};
use bftkit::train::step::{loss_and_grads, Sample};
use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn main() -> Result<()> {
    bftkit::tune_allocator();
    let model_dir = arg("--model", "models/SmolLM2-135M-Instruct");
    let data = arg("--data", "bench/out/finetune/data/train.jsonl");
    let batch: usize = arg("--batch", "4").parse()?;
    let max_len: usize = arg("--max-len", "128").parse()?;
    let reps: usize = arg("--reps", "5").parse()?;
    let only = arg("--only", "both");
    let device = Device::Cpu;
    let pre = load_pretrained(std::path::Path::new(&model_dir), &device, DType::F32)?;
    let lora = LoraConfig::default();
    let varmap = VarMap::new();
    let model = Decoder::load_with_lora(
        VarBuilder::from_tensors(pre.tensors.clone(), DType::F32, &device),
        &pre.config,
        Some((&lora, VarBuilder::from_varmap(&varmap, DType::F32, &device))),
    )?;
    let params: Vec<(String, candle_core::Var)> = varmap
        .data()
        .lock()
        .expect("varmap")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    seed_adapters(&params, 0)?;
    let vars: Vec<candle_core::Var> = params.iter().map(|(_, v)| v.clone()).collect();
    let conv = read_conversations(std::path::Path::new(&data))?;
    let samples: Vec<Sample> = conv
        .iter()
        .take(batch)
        .map(|(_, m)| tokenize(&pre.tokenizer, &render(ChatTemplate::Chatml, m), max_len))
        .collect::<Result<_>>()?;
    let tokens: usize = samples.iter().map(|s| s.tokens.len()).sum();
    let variants: Vec<LossVariant> = match only.as_str() {
        "sft" => vec![LossVariant::Sft],
        "bft" => vec![LossVariant::Bft],
        _ => vec![LossVariant::Sft, LossVariant::Bft],
    };
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for rep in 0..=reps {
        for (k, &v) in variants.iter().enumerate() {
            let cfg = LossConfig {
                variant: v,
                ..LossConfig::default()
            };
            let start = Instant::now();
            let (_, grads) = loss_and_grads(&model, &vars, &samples, &cfg, None, 1.0, false)?;
            std::hint::black_box(&grads);
            if rep > 0 {
                times[k].push(start.elapsed().as_secs_f64()); // rep 0 warms up
            }
        }
    }
    let median = |t: &mut Vec<f64>| {
        t.sort_by(|a, b| a.total_cmp(b));
        t[t.len() / 2]
    };
    println!(
        "SmolLM2-135M LoRA r16, batch {batch} ({tokens} tokens, max_len {max_len}), {reps} reps"
    );
    let mut med = Vec::new();
    for (k, v) in variants.iter().enumerate() {
        let m = median(&mut times[k]);
        med.push(m);
        println!(
            "{v:?}: median step {m:.3} s, {:.1} tokens/s",
            tokens as f64 / m
        );
    }
    if med.len() == 2 {
        println!("BFT / SFT step time: {:.3}", med[1] / med[0]);
    }
    Ok(())
}
