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
fn every_unbuilt_subcommand_says_so_prints_help_and_exits_2() {
    for word in ["up", "check"] {
        let (code, text) = run_words(&["rempart", word]);
        assert_eq!(code, EXIT_NOT_BUILT, "{word}");
        assert!(text.starts_with(&format!("`rempart {word}` is not built yet")), "{text}");
        assert!(text.contains("Nothing was started or changed."), "{text}");
        assert!(text.contains("Usage: rempart <COMMAND>"), "{text}");
        for listed in ["up", "check", "admin", "wg"] {
            assert!(text.contains(&format!("\n  {listed} ")), "help lists {listed}: {text}");
        }
    }
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
