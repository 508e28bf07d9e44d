//! The `herald` command: `serve` (default), `migrate`, and `token` to mint a JWT.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use herald::auth::{load_or_create_secret, JwtKeys};
use herald::config::{CommonArgs, ServeArgs, Settings};
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
    /// Run the server (the default; its flags may also be given without the subcommand).
    Serve(ServeArgs),
    /// Apply the embedded database migrations and exit.
    Migrate,
    /// Print a JWT signed with the configured secret.
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
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::new().filter_or("HERALD_LOG", "info")).init();
    match cli
        .command
        .unwrap_or_else(|| Command::Serve(cli.serve.clone()))
    {
        Command::Serve(args) => serve(Settings::from_args(&cli.common, Some(&args))),
        Command::Migrate => {
            let settings = Settings::from_args(&cli.common, None);
            match herald::db::run_migrations(settings.database_url.expose()) {
                Ok(()) => {
                    log::info!("migrations applied");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("herald: {e}");
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
        } => {
            let settings = Settings::from_args(&cli.common, None);
            let secret = match load_or_create_secret(&settings) {
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
            if let Err(e) = herald::domain::UserId::parse(&user) {
                eprintln!("herald: --user: {e}");
                return ExitCode::FAILURE;
            }
            match JwtKeys::hs256(&secret).mint(&user, name.as_deref(), &roles, ttl) {
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
    }
}

fn serve(settings: Settings) -> ExitCode {
    let result = actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings)
            .await
            .map_err(|e| e.to_string())?;
        app.run_until_stopped().await.map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald: {e}");
            ExitCode::FAILURE
        }
    }
}
