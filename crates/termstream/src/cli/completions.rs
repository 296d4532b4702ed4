//! `termstream completions SHELL` and `termstream man`: generated from the
//! clap definitions the parser is built on (`Cli::command()`), so they
//! never offer what it does not take. The parser takes one thing more,
//! which neither shows: the hidden `--log-format` before the verb
//! (`termstream --log-format json serve`, taken for `serve`'s own; see
//! `main.rs`).

use std::io::Write;

use super::exit::{self, Failure};

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to write completions for.
    pub shell: clap_complete::Shell,
}

/// Generated whole, then written: a closed stdout is then one error that
/// ends the verb quietly ([`Failure::io`]), not a panic inside the generator.
pub fn completions(args: CompletionsArgs, mut cmd: clap::Command) -> Result<i32, Failure> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "termstream", &mut script);
    write_out(&script)
}

pub fn man(cmd: clap::Command) -> Result<i32, Failure> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut page)
        .map_err(|e| Failure::io("cannot render the man page", e))?;
    write_out(&page)
}

fn write_out(bytes: &[u8]) -> Result<i32, Failure> {
    let mut out = std::io::stdout();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| Failure::io("cannot write the output", e))?;
    Ok(exit::OK)
}
