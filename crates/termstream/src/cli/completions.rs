//! `termstream completions SHELL` and `termstream man`: generated from the
//! same clap definitions as the parser, so they never disagree with it.

use super::exit;

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to write completions for.
    pub shell: clap_complete::Shell,
}

pub fn completions(args: CompletionsArgs, mut cmd: clap::Command) -> i32 {
    clap_complete::generate(args.shell, &mut cmd, "termstream", &mut std::io::stdout());
    exit::OK
}

pub fn man(cmd: clap::Command) -> i32 {
    match clap_mangen::Man::new(cmd).render(&mut std::io::stdout()) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("termstream: cannot write the man page: {e}");
            exit::FAILURE
        }
    }
}
