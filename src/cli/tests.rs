use clap::Parser;

use super::*;

fn run_words(words: &[&str]) -> (u8, String) {
    let cli = Cli::try_parse_from(words).expect("the command line parses");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run(&cli, &mut out, &mut err).expect("writing to a Vec cannot fail");
    out.extend_from_slice(&err);
    (code, String::from_utf8(out).expect("the report is UTF-8"))
}

#[test]
fn every_subcommand_is_built() {
    for words in [&["rempart", "up"][..], &["rempart", "check"], &["rempart", "check", "x"]] {
        let cli = Cli::try_parse_from(words).expect("the command line parses");
        assert!(cli.command.is_built(), "{words:?}");
    }
}

#[test]
fn check_of_a_missing_directory_explains_and_fails() {
    let (code, text) = run_words(&["rempart", "check", "/nonexistent/rempart-policies"]);
    assert_eq!(code, crate::check::EXIT_INVALID);
    assert!(text.contains("/nonexistent/rempart-policies"), "{text}");
    assert!(text.contains("nothing was started or changed"), "{text}");
}

#[test]
fn version_and_help_are_served_by_clap() {
    let err = Cli::try_parse_from(["rempart", "--version"]).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::DisplayVersion);
    assert!(err.to_string().contains(env!("CARGO_PKG_VERSION")));
    let err = Cli::try_parse_from(["rempart", "--help"]).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
}

#[test]
fn no_subcommand_or_an_unknown_one_is_a_usage_error() {
    let err = Cli::try_parse_from(["rempart"]).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand);
    assert_eq!(err.exit_code(), 2);
    let err = Cli::try_parse_from(["rempart", "launch"]).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::InvalidSubcommand);
    assert_eq!(err.exit_code(), 2);
}

#[test]
fn the_cli_definition_is_consistent() {
    Cli::command().debug_assert();
}
