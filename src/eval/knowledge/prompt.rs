//! The prompts, written as lm-evaluation-harness writes them for these tasks, so scores are
//! comparable with published harness numbers:
//!
//! - MMLU: `The following are multiple choice questions (with answers) about {subject}.\n\n`
//!   (underscores of the subject as spaces), then each few-shot example (the subject's dev
//!   questions in file order) as its question block followed by ` {letter}`, joined and closed
//!   by `\n\n`, then `{question, trimmed}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\nAnswer:`;
//! - MedQA: `Question: {question}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\nAnswer:`;
//! - MedMCQA: `Question: {question}\nChoices:\nA. {A}\nB. {B}\nC. {C}\nD. {D}\nAnswer:`;
//! - PubMedQA: `Abstract: {context paragraphs joined by \n}\nQuestion: {question}\nAnswer:`.
//!
//! The continuations scored are ` A` … ` D` (` yes`, ` no`, ` maybe`), with the leading space.
//! With a chat template, the whole prompt is one user turn followed by the assistant header.

use super::bench::{Benchmark, Question};
use crate::model::chat::ChatTemplate;

/// The question block of one question (no few-shot examples, no description).
pub fn question_block(bench: Benchmark, q: &Question) -> String {
    let lettered = |q: &Question| -> String {
        ["A", "B", "C", "D"]
            .iter()
            .zip(&q.options)
            .map(|(l, o)| format!("{l}. {o}\n"))
            .collect()
    };
    match bench {
        Benchmark::Mmlu => format!("{}\n{}Answer:", q.question.trim(), lettered(q)),
        Benchmark::Medqa => format!("Question: {}\n{}Answer:", q.question, lettered(q)),
        Benchmark::Medmcqa => {
            format!("Question: {}\nChoices:\n{}Answer:", q.question, lettered(q))
        }
        Benchmark::Pubmedqa => format!(
            "Abstract: {}\nQuestion: {}\nAnswer:",
            q.context.as_deref().unwrap_or_default(),
            q.question
        ),
    }
}

/// The full prompt of a question: the description and few-shot examples (MMLU), the question
/// block, and the chat wrapping when a template is given.
pub fn prompt(
    bench: Benchmark,
    q: &Question,
    shots: &[Question],
    template: Option<ChatTemplate>,
) -> String {
    let mut text = String::new();
    if bench == Benchmark::Mmlu {
        text += &format!(
            "The following are multiple choice questions (with answers) about {}.\n\n",
            q.subject.replace('_', " ")
        );
    }
    for s in shots {
        text += &question_block(bench, s);
        text += &format!(" {}\n\n", bench.labels()[s.answer]);
    }
    text += &question_block(bench, q);
    match template {
        None => text,
        Some(ChatTemplate::Chatml) => {
            format!("<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n")
        }
        Some(ChatTemplate::Llama3) => format!(
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n{text}<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n"
        ),
    }
}

/// The continuations scored for a benchmark: each label with a leading space.
pub fn continuations(bench: Benchmark) -> Vec<String> {
    bench.labels().iter().map(|l| format!(" {l}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(subject: &str, question: &str, options: &[&str], answer: usize) -> Question {
        Question {
            id: "1".into(),
            subject: subject.into(),
            question: question.into(),
            options: options.iter().map(|s| s.to_string()).collect(),
            context: None,
            answer,
        }
    }

    #[test]
    fn prompts_are_the_harness_prompts_character_for_character() {
        let test = q("college_medicine", " Which? ", &["w", "x", "y", "z"], 0);
        let shot = q("college_medicine", "Shot?", &["a", "b", "c", "d"], 2);
        assert_eq!(
            prompt(Benchmark::Mmlu, &test, &[shot], None),
            "The following are multiple choice questions (with answers) about college \
             medicine.\n\nShot?\nA. a\nB. b\nC. c\nD. d\nAnswer: C\n\nWhich?\nA. w\nB. x\nC. \
             y\nD. z\nAnswer:"
        );
        assert_eq!(
            prompt(Benchmark::Medqa, &test, &[], None),
            "Question:  Which? \nA. w\nB. x\nC. y\nD. z\nAnswer:"
        );
        assert_eq!(
            prompt(Benchmark::Medmcqa, &test, &[], None),
            "Question:  Which? \nChoices:\nA. w\nB. x\nC. y\nD. z\nAnswer:"
        );
        let mut p = q("pubmedqa", "Does it?", &[], 1);
        p.context = Some("One.\nTwo.".into());
        assert_eq!(
            prompt(Benchmark::Pubmedqa, &p, &[], None),
            "Abstract: One.\nTwo.\nQuestion: Does it?\nAnswer:"
        );
        assert_eq!(
            prompt(Benchmark::Pubmedqa, &p, &[], Some(ChatTemplate::Chatml)),
            "<|im_start|>user\nAbstract: One.\nTwo.\nQuestion: Does it?\nAnswer:<|im_end|>\n\
             <|im_start|>assistant\n"
        );
        assert_eq!(
            continuations(Benchmark::Pubmedqa),
            [" yes", " no", " maybe"]
        );
        assert_eq!(continuations(Benchmark::Medqa)[3], " D");
    }
}
