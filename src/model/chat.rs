//! Conversations and the tokens a decoder sees: roles and messages, the chat templates (ChatML,
//! Llama-3), rendering into pieces that do or do not carry loss, tokenisation piece by piece, the
//! assistant header that opens a generation, stop tokens, and the gene-profile prompt.
//! Fine-tuning data and generation both go through here, so a conversation is tokenised the same
//! way for training and for writing.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ChatTemplate {
    /// `<|im_start|>{role}\n{content}<|im_end|>\n` (Qwen2, SmolLM2).
    #[default]
    Chatml,
    /// `<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>` after `<|begin_of_text|>`.
    Llama3,
}

/// Who speaks a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    /// The role's name in templates and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }

    /// Parses a role name; the error lists the known ones.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "system" => Ok(Role::System),
            "user" => Ok(Role::User),
            "assistant" => Ok(Role::Assistant),
            other => bail!("unknown role '{other}' (system, user, assistant)"),
        }
    }
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// Text pieces of a conversation: (text, carries loss). The assistant's content and its
/// end-of-turn marker carry loss; headers, other turns and the opening marker do not.
pub fn render(template: ChatTemplate, messages: &[Message]) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    if template == ChatTemplate::Llama3 {
        out.push(("<|begin_of_text|>".to_string(), false));
    }
    for m in messages {
        let learn = m.role == Role::Assistant;
        let (head, end) = match template {
            ChatTemplate::Chatml => (format!("<|im_start|>{}\n", m.role.as_str()), "<|im_end|>"),
            ChatTemplate::Llama3 => (
                format!(
                    "<|start_header_id|>{}<|end_header_id|>\n\n",
                    m.role.as_str()
                ),
                "<|eot_id|>",
            ),
        };
        out.push((head, false));
        out.push((m.content.clone(), learn));
        out.push((end.to_string(), learn));
        if template == ChatTemplate::Chatml {
            out.push(("\n".to_string(), false));
        }
    }
    out
}

/// A tokenised conversation: its tokens and which of them are response tokens (the only ones
/// that carry loss; prompt tokens are context).
#[derive(Debug, Clone, PartialEq)]
pub struct Tokenized {
    pub tokens: Vec<u32>,
    pub is_response: Vec<bool>,
}

/// Tokenises a rendered conversation, cut to `max_len` tokens.
pub fn tokenize(
    tokenizer: &Tokenizer,
    pieces: &[(String, bool)],
    max_len: usize,
) -> Result<Tokenized> {
    let (mut tokens, mut is_response) = (Vec::new(), Vec::new());
    for (text, learn) in pieces {
        let enc = tokenizer
            .encode(text.as_str(), false)
            .map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?;
        // Keep real tokens only, whatever padding the tokenizer file asks for.
        let real: Vec<u32> = enc
            .get_ids()
            .iter()
            .zip(enc.get_attention_mask())
            .filter(|(_, &m)| m == 1)
            .map(|(&id, _)| id)
            .collect();
        is_response.extend(std::iter::repeat_n(*learn, real.len()));
        tokens.extend(real);
    }
    tokens.truncate(max_len);
    is_response.truncate(max_len);
    Ok(Tokenized {
        tokens,
        is_response,
    })
}

/// The system prompt of the gene-profile conversation (docs/bft.md, "Gene profiles").
pub const PROFILE_SYSTEM: &str =
    "You are a helpful biology assistant. Answer in under 2000 characters.";
/// The user prompt of the gene-profile conversation; `{gene}` becomes the symbol.
pub const PROFILE_USER: &str = "tell me about gene {gene}.";

/// The system + user turns that ask for a gene's profile (training data uses the same).
pub fn profile_messages(system: &str, user: &str, gene: &str) -> Vec<Message> {
    let mut out = Vec::new();
    if !system.is_empty() {
        out.push(Message::new(Role::System, system));
    }
    out.push(Message::new(Role::User, user.replace("{gene}", gene)));
    out
}

/// Token ids of a conversation's prompt followed by the assistant header, tokenised piece by
/// piece exactly as fine-tuning does.
pub fn prompt_tokens(
    tokenizer: &Tokenizer,
    template: ChatTemplate,
    messages: &[Message],
) -> Result<Vec<u32>> {
    let mut pieces = render(template, messages);
    pieces.push((
        match template {
            ChatTemplate::Chatml => "<|im_start|>assistant\n",
            ChatTemplate::Llama3 => "<|start_header_id|>assistant<|end_header_id|>\n\n",
        }
        .to_string(),
        false,
    ));
    Ok(tokenize(tokenizer, &pieces, usize::MAX)?.tokens)
}

/// The end-of-turn / end-of-text tokens of a template that this tokenizer knows.
pub fn stop_tokens(tokenizer: &Tokenizer, template: ChatTemplate) -> Vec<u32> {
    let names: &[&str] = match template {
        ChatTemplate::Chatml => &["<|im_end|>", "<|endoftext|>"],
        ChatTemplate::Llama3 => &["<|eot_id|>", "<|end_of_text|>"],
    };
    names
        .iter()
        .filter_map(|n| tokenizer.token_to_id(n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_exactly() {
        let conv = [
            Message::new(Role::User, "tell me about gene TP53."),
            Message::new(Role::Assistant, "A tumour suppressor."),
        ];
        let chatml = "<|im_start|>user\ntell me about gene TP53.<|im_end|>\n<|im_start|>assistant\nA tumour suppressor.<|im_end|>\n";
        let llama3 = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\ntell me about gene TP53.<|eot_id|>\
                      <|start_header_id|>assistant<|end_header_id|>\n\nA tumour suppressor.<|eot_id|>";
        for (template, want) in [
            (ChatTemplate::Chatml, chatml),
            (ChatTemplate::Llama3, llama3),
        ] {
            let text: String = render(template, &conv).into_iter().map(|p| p.0).collect();
            assert_eq!(text, want, "{template:?}");
        }
        let learned: Vec<String> = render(ChatTemplate::Chatml, &conv)
            .into_iter()
            .filter(|p| p.1)
            .map(|p| p.0)
            .collect();
        assert_eq!(learned, vec!["A tumour suppressor.", "<|im_end|>"]);
    }

    #[test]
    fn only_response_tokens_carry_loss_and_truncation_cuts_the_end() {
        let dir = tempfile::tempdir().unwrap();
        crate::fixtures::write_tiny_decoder(dir.path(), "qwen2").unwrap();
        let tok = Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap();
        let pieces = vec![
            ("the gene".to_string(), false),
            ("is a kinase".to_string(), true),
        ];
        let s = tokenize(&tok, &pieces, 100).unwrap();
        assert_eq!(s.tokens.len(), 5);
        assert_eq!(s.is_response, vec![false, false, true, true, true]);
        let cut = tokenize(&tok, &pieces, 3).unwrap();
        assert_eq!(cut.is_response, vec![false, false, true]);
    }
}
