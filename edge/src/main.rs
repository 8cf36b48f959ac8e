//! The `zerocast` binary: `serve`, `config`, `social`, `token`, `cert`.

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
    /// Writes a certificate and key for local testing (use a real certificate in production).
    Cert {
        /// Make a self-signed certificate (the only kind this helper makes).
        #[arg(long, required = true)]
        self_signed: bool,
        /// Host names or IP addresses the certificate is valid for (repeatable); localhost and
        /// 127.0.0.1 are always included.
        #[arg(long = "host", value_name = "NAME", default_value = "localhost")]
        hosts: Vec<String>,
        /// Directory to write cert.pem and key.pem into.
        #[arg(long, value_name = "DIR")]
        out: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ZEROCAST_LOG")
                // h2 and quinn log each protocol violation themselves, without the peer; the
                // server logs one line per offender instead.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new(
                        "info,h2=error,quinn=error,quinn_proto=error",
                    )
                }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Command::Cert {
        self_signed: _,
        hosts,
        out,
    } = &cli.command
    {
        return cert(hosts, out);
    }
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
        Command::Cert { .. } => return ExitCode::SUCCESS,
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
        Command::Cert { .. } => ExitCode::SUCCESS,
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
            let keys = social.keys();
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

/// `zerocast cert --self-signed`: writes the pair and says how to use it.
fn cert(hosts: &[String], out: &std::path::Path) -> ExitCode {
    let pair = match zerocast_edge::tls::self_signed(hosts) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("zerocast: {e}");
            return ExitCode::FAILURE;
        }
    };
    match zerocast_edge::tls::write_self_signed(out, &pair) {
        Ok((cert, key)) => {
            // What was written and how to use it is this subcommand's whole job.
            #[allow(clippy::print_stdout)]
            {
                println!("wrote {} and {}", cert.display(), key.display());
                println!(
                    "serve with: zerocast serve --tls-cert {} --tls-key {}",
                    cert.display(),
                    key.display()
                );
                println!(
                    "SPKI sha256 (for chromium --ignore-certificate-errors-spki-list): {}",
                    pair.spki_sha256
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("zerocast: writing into {}: {e}", out.display());
            ExitCode::FAILURE
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
