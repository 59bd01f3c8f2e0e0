//! Language models: the trainable Llama/Qwen2-family decoder and its configuration.
//! Fine-tuning, generation and decoder embeddings all build on [`decoder::Decoder`].

pub mod decoder;
pub mod gguf;
pub mod lora;

pub use decoder::{Decoder, DecoderConfig};
