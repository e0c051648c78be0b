//! `stagehook man`: the manual page, in roff, generated from the clap definitions.

use super::report::print_output;
use super::{Cli, CliError, Exit, Outcome};

pub fn run() -> Outcome {
    let page = man_page().map_err(|e| CliError::new(Exit::Failure, format!("cannot write the manual page: {e}")))?;
    print_output(&page, "the manual page")
}

/// The manual page, in roff: the top-level page, then each subcommand (nested ones too) with its
/// synopsis and options, so one page documents every flag.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    fn subcommands(parent: &str, cmd: &clap::Command, out: &mut Vec<u8>) -> std::io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let name = format!("{parent} {}", sub.get_name());
            let sub = sub.clone().bin_name(name.clone());
            let about = sub.get_long_about().or(sub.get_about()).map(|a| a.to_string()).unwrap_or_default();
            use std::io::Write;
            writeln!(out, ".SH \"{}\"", name.to_uppercase())?;
            writeln!(out, "{}", roff_escape(&about))?;
            let man = clap_mangen::Man::new(sub.clone());
            man.render_synopsis_section(out)?;
            if sub.get_arguments().any(|a| !a.is_hide_set()) {
                man.render_options_section(out)?;
            }
            subcommands(&name, &sub, out)?;
        }
        Ok(())
    }
    subcommands("stagehook", &cmd, &mut out)?;
    Ok(out)
}

/// Plain text as a roff paragraph: a leading `.` or `'` would be read as a request, `\` as an
/// escape.
fn roff_escape(text: &str) -> String {
    text.lines()
        .map(|l| {
            let l = l.replace('\\', "\\e").replace('-', "\\-");
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
