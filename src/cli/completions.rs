//! `stagehook completions SHELL`: a shell completion script, generated from the clap definitions.

use clap::CommandFactory;

use super::report::print_output;
use super::{Cli, CompletionsArgs, Outcome};

pub fn run(args: CompletionsArgs) -> Outcome {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "stagehook", &mut script);
    print_output(&script, "the completion script")
}
