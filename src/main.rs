//! The `rempart` binary: parses the command line and hands it to [`rempart::cli::run`].
//!
//! It stays thin: no logic lives here beyond mapping the outcome to an exit status, and it must
//! never call into anything a test could not call through the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = rempart::cli::Cli::parse();
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    match rempart::cli::run(&cli, &mut stdout, &mut stderr) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("rempart: could not write to the terminal: {err}");
            ExitCode::from(rempart::cli::EXIT_IO)
        }
    }
}
