//! The command-line front end, kept thin: `args` holds the clap types and turns each command's
//! flags into the library's options (defaults come from those options), `commands` calls the
//! library once per command, `print` and `progress` are what the user sees. No computation
//! lives here.

mod args;
mod commands;
mod print;
mod progress;

use anyhow::Result;
use clap::Parser;

use args::{Cli, Command};

/// An error as the user reads it: its chain on one line (`a: b: c`), without the backtrace
/// frames candle appends to its errors when `RUST_BACKTRACE` is set (in a release build they
/// print as rows of `<unknown>`; they help no user).
pub fn error_message(err: &anyhow::Error) -> String {
    let text = format!("{err:#}");
    let frame = |l: &str| {
        let t = l.trim_start();
        let numbered = t
            .split_once(": ")
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        numbered || t.starts_with("at ") || t == "<unknown>"
    };
    text.lines()
        .filter(|l| !frame(l))
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_string()
}

/// Parses the command line and runs the command.
pub fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Run(a) => commands::run(a),
        Command::Report(a) => commands::report(a),
        Command::Umap(a) => commands::umap(a),
        Command::Scib(a) => commands::scib(a),
        Command::Tasks(a) => commands::tasks(a),
        Command::Probe(a) => commands::probe(a),
        Command::Embed(a) => commands::embed(a),
        Command::Finetune(a) => commands::finetune(a),
        Command::Describe(a) => commands::describe(a),
        Command::Knowledge(a) => commands::knowledge(a),
        Command::SftData(a) => commands::sft_data(a),
        Command::Weights(a) => commands::weights(a),
        Command::Loss(a) => commands::loss(a),
        Command::Fixtures(a) => commands::fixtures(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_printed_without_backtrace_frames() {
        let bt = std::backtrace::Backtrace::force_capture();
        let inner = candle_core::Error::Msg("out of memory".into());
        let e = candle_core::Error::WithBacktrace {
            inner: Box::new(inner),
            backtrace: Box::new(bt),
        };
        let e = anyhow::Error::from(e).context("step 2");
        assert!(
            format!("{e:#}").lines().count() > 1,
            "the backtrace was not captured"
        );
        assert_eq!(error_message(&e), "step 2: out of memory");
        let plain = anyhow::anyhow!("x.tsv:3: not a number").context("reading x.tsv");
        assert_eq!(
            error_message(&plain),
            "reading x.tsv: x.tsv:3: not a number"
        );
    }
}
