//! The `herald` command: `serve` (default), `migrate`, `token` to mint a JWT, and `config` to
//! print the effective settings.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use herald::auth::{
    file_mode, key_warnings, load_or_create_secret, parse_algorithm, uses_secret, TokenSigner,
};
use herald::config::{self, redact_url, scrub_url, CommonArgs, LoadError, ServeArgs, Settings};
use herald::startup::Application;

#[derive(Parser)]
#[command(name = "herald", version, about = "Presence and messaging engine")]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default). Its flags are global: before or after `serve`.
    Serve,
    /// Apply the embedded database migrations and exit.
    Migrate,
    /// Print the effective configuration (flags, environment, config file, defaults) as
    /// TOML, each setting with where it came from; secrets are redacted.
    Config,
    /// Print a JWT: HS algorithms sign with the configured secret, RS256/ES256 with --private-key.
    Token {
        /// User id (the `sub` claim).
        #[arg(long)]
        user: String,
        /// Display name (the `name` claim).
        #[arg(long)]
        name: Option<String>,
        /// Grant the admin role.
        #[arg(long)]
        admin: bool,
        /// Grant the service role (app backends).
        #[arg(long)]
        service: bool,
        /// Lifetime, e.g. 30m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// PEM private key that signs RS256/ES256 tokens (PKCS#8; PKCS#1 for RSA).
        #[arg(long, value_name = "FILE")]
        private_key: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::new().filter_or("HERALD_LOG", "info")).init();
    let loaded = match config::load::<Cli>(std::env::args_os()) {
        Ok(l) => l,
        // Usage errors, --help and --version: clap prints and picks the exit status.
        Err(LoadError::Cli(e)) => e.exit(),
        Err(LoadError::Config(e)) => {
            eprintln!("herald: {e}");
            return ExitCode::FAILURE;
        }
    };
    for warning in &loaded.warnings {
        log::warn!("{warning}");
    }
    let cli = loaded.cli;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(Settings::from_args(&cli.common, Some(&cli.serve))),
        Command::Config => {
            let settings = Settings::from_args(&cli.common, Some(&cli.serve));
            print!("{}", config::render(&settings, &loaded.origins));
            ExitCode::SUCCESS
        }
        Command::Migrate => {
            let settings = Settings::from_args(&cli.common, None);
            match herald::db::run_migrations(settings.database_url.expose()) {
                Ok(()) => {
                    log::info!("migrations applied");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!(
                        "herald: {}",
                        scrub_url(&e.to_string(), settings.database_url.expose())
                    );
                    ExitCode::FAILURE
                }
            }
        }
        Command::Token {
            user,
            name,
            admin,
            service,
            ttl,
            private_key,
        } => token(
            &Settings::from_args(&cli.common, None),
            &user,
            name.as_deref(),
            admin,
            service,
            ttl,
            private_key.as_deref(),
        ),
    }
}

/// `herald token`: prints a signed JWT for `user`.
fn token(
    settings: &Settings,
    user: &str,
    name: Option<&str>,
    admin: bool,
    service: bool,
    ttl: Duration,
    private_key: Option<&std::path::Path>,
) -> ExitCode {
    if let Err(e) = herald::domain::UserId::parse(user) {
        eprintln!("herald: --user: {e}");
        return ExitCode::FAILURE;
    }
    let algorithm = match parse_algorithm(&settings.auth.algorithm) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("herald: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Only HS algorithms need (and may create) the secret.
    let secret = if uses_secret(algorithm) && private_key.is_none() {
        match load_or_create_secret(settings) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("herald: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let signer = match TokenSigner::from_settings(&settings.auth, secret.as_ref(), private_key) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("herald: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut roles = Vec::new();
    if admin {
        roles.push("admin");
    }
    if service {
        roles.push("service");
    }
    match signer.mint(user, name, &roles, ttl) {
        Ok(t) => {
            println!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("herald: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(settings: Settings) -> ExitCode {
    // The URL names the database operators expect; its password never reaches a log.
    let url = settings.database_url.expose().to_owned();
    log::info!("database: {}", redact_url(&url));
    if let Err(e) = settings.webhooks.check() {
        eprintln!("herald: {e}");
        return ExitCode::FAILURE;
    }
    for warning in key_warnings(&settings, file_mode) {
        log::warn!("{warning}");
    }
    let result = actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings)
            .await
            .map_err(|e| e.to_string())?;
        app.run_until_stopped().await.map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald: {}", scrub_url(&e, &url));
            ExitCode::FAILURE
        }
    }
}
