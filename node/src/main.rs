//! `rempart-node` binary: parses arguments, loads the configuration and hands over to the
//! library; it maps failures to exit codes (configuration errors → 64) and holds no logic.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use rempart_node::config::Config;
use rempart_node::genesis::{Genesis, init_data_dir};

#[derive(Parser)]
#[command(version, about = "Antelope-compatible chain node of the rempart perimeter")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Role {
    Producer,
    Api,
}

#[derive(Subcommand)]
enum Command {
    /// Create the state database of a role from the genesis file.
    Init {
        /// Which role's data directory to initialise.
        #[arg(long, value_enum)]
        role: Role,
        /// The node configuration.
        #[arg(long, default_value = "policies/node.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt().json().with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    match cli.command {
        Command::Init { role, config } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("rempart-node: {e}");
                    return ExitCode::from(64);
                }
            };
            let genesis = match Genesis::load(&config.genesis) {
                Ok(g) => g,
                Err(e) => {
                    eprintln!("rempart-node: {e}");
                    return ExitCode::from(64);
                }
            };
            let dir = match role {
                Role::Producer => &config.producer.data_dir,
                Role::Api => &config.api.data_dir,
            };
            match init_data_dir(&genesis, dir) {
                Ok(id) => {
                    println!("chain {id} initialised in {}", dir.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("rempart-node: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
