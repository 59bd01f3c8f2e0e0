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
