//! The `kiln` command-line tool: `kiln show`, `kiln passes` and `kiln run` on exported
//! graphs and MXNet models, `kiln convert` from MXNet to kiln's format. See [`kiln::cli`]
//! for the commands and their options.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = kiln::cli::Cli::parse();
    match kiln::cli::execute(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
