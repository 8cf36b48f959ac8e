//! The `zerocast` binary: `serve`, `config`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use zerocast_edge::config::{Config, Overrides};

/// zerocast: live video (RTMP in, LL-HLS out) and its social layer.
#[derive(Debug, Parser)]
#[command(name = "zerocast", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the server on its embedded defaults (no external services needed).
    Serve(Overrides),
    /// Prints the effective configuration (file, then ZEROCAST_* environment, then flags).
    Config(Overrides),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ZEROCAST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let (Command::Serve(flags) | Command::Config(flags)) = &cli.command;
    let config = match Config::load(flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("zerocast: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Config(_) => {
            // Printing the configuration is this subcommand's whole job.
            #[allow(clippy::print_stdout)]
            {
                print!("{}", config.to_toml());
            }
            ExitCode::SUCCESS
        }
        Command::Serve(_) => match zerocast_edge::server::run(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("zerocast: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
