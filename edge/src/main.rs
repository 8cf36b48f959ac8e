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
    /// Runs only the social API (messages, chat) on its embedded defaults.
    Social(Overrides),
    /// Prints a bearer token for a user (signed with the configured or data-dir secret).
    Token {
        /// The user id (a UUID).
        #[arg(long)]
        user: uuid::Uuid,
        /// Lifetime: 30s, 90m, 24h, 7d.
        #[arg(long, default_value = "24h")]
        ttl: String,
        /// Config file (default: ./zerocast.toml when it exists); its `jwt-secret` signs.
        #[arg(long, value_name = "FILE")]
        config: Option<std::path::PathBuf>,
        /// Data directory whose `jwt-secret` signs when no secret is configured
        /// [default: ./zerocast-data].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<std::path::PathBuf>,
    },
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
    let token_flags;
    let flags = match &cli.command {
        Command::Serve(f) | Command::Config(f) | Command::Social(f) => f,
        Command::Token {
            config, data_dir, ..
        } => {
            // Only what decides the signing secret.
            token_flags = Overrides {
                config: config.clone(),
                data_dir: data_dir.clone(),
                ..Overrides::default()
            };
            &token_flags
        }
    };
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
        Command::Serve(_) => exit(zerocast_edge::server::run(config)),
        Command::Social(_) => exit(zerocast_edge::server::run_social(config)),
        Command::Token { user, ttl, .. } => {
            let Some(ttl) = zerocast_social::auth::parse_ttl(&ttl) else {
                eprintln!("zerocast: --ttl {ttl:?}: expected e.g. 30s, 90m, 24h, 7d");
                return ExitCode::from(2);
            };
            let social = match config.social_config() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("zerocast: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let keys = zerocast_social::auth::Keys::new(&social.jwt_secret);
            let token = keys.issue(
                zerocast_social::id::UserId(user),
                zerocast_social::now_ms() / 1000,
                ttl,
            );
            // The token on stdout is this subcommand's whole job.
            #[allow(clippy::print_stdout)]
            {
                println!("{token}");
            }
            ExitCode::SUCCESS
        }
    }
}

fn exit(r: Result<(), zerocast_edge::server::ServeError>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zerocast: {e}");
            ExitCode::FAILURE
        }
    }
}
