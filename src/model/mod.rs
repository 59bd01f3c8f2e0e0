//! Language models: the trainable Llama/Qwen2-family decoder (`decoder`) and its LoRA adapters
//! (`lora`), training ops with a hand-written backward (`fused`), reading weights (`weights`, `gguf`), devices and precision (`device`),
//! conversations and chat templates (`chat`), and greedy generation (`generate`). Fine-tuning,
//! generation and decoder embeddings all build on [`decoder::Decoder`].

pub mod chat;
pub mod decoder;
pub mod device;
pub mod fused;
pub mod generate;
pub(crate) mod gguf;
pub mod lora;
pub mod weights;

pub use decoder::{Decoder, DecoderConfig};
pub use device::{DeviceSpec, Precision};
pub use weights::{load_pretrained, Pretrained};

/// Largest absolute element-wise difference of two same-shaped tensors (parity checks).
#[cfg(test)]
pub(crate) fn max_abs_diff(
    a: &candle_core::Tensor,
    b: &candle_core::Tensor,
) -> candle_core::Result<f32> {
    (a - b)?
        .abs()?
        .max_all()?
        .to_dtype(candle_core::DType::F32)?
        .to_scalar::<f32>()
}
