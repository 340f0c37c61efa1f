//! The `rempart-signer` binary: parses the command line and hands it to the library.

fn main() -> std::process::ExitCode {
    let mut args = std::env::args_os().skip(1);
    match args.next() {
        // Hidden: applies the sandbox, then tries one action (signer/tests/sandbox.rs). Must run
        // before any thread or runtime exists.
        Some(cmd) if cmd == "sandbox-probe" => rempart_signer::sandbox::probe::main(args.collect()),
        _ => std::process::ExitCode::from(64),
    }
}
