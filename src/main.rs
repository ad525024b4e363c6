//! The `revgate` binary: parse the CLI, set up logging, hand over to the library.

use clap::Parser;
use revgate::app::App;
use revgate::cli::{Cli, Command, StoreCommand};
use revgate::config::{Config, Secrets};
use std::process::ExitCode;

/// Exit status for configuration errors.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    revgate::telemetry::init_logging(cli.log_format);
    let secrets = match &cli.command {
        Some(Command::Completions { shell }) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut command, "revgate", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        // Needs no config.
        Some(Command::Store(StoreCommand::Verify { path })) => return verify_store(path),
        Some(Command::Demo { .. }) => {
            revgate::demo::default_env();
            Secrets::All
        }
        // Each command resolves only the secrets it uses.
        Some(Command::Mint(_)) => Secrets::Signing,
        Some(Command::Revoke(_)) => Secrets::Admin,
        Some(Command::CheckConfig) | None => Secrets::All,
    };
    let config = match Config::load_with(&cli.config, secrets) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("revgate: config error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command {
        Some(Command::CheckConfig) => {
            if let Err(code) = check(&config) {
                return code;
            }
            println!(
                "{}: ok ({} routes)",
                cli.config.display(),
                config.routes.len()
            );
            ExitCode::SUCCESS
        }
        Some(Command::Mint(args)) => mint(&config, args),
        Some(Command::Revoke(args)) => revoke(&config, &args),
        Some(Command::Demo { tls }) => run(config, &cli.config, Some(tls)),
        // Answered before the config is read.
        Some(Command::Completions { .. }) | Some(Command::Store(_)) => ExitCode::SUCCESS,
        None => run(config, &cli.config, None),
    }
}

/// `revgate store verify`: one line; exit 0 when the store reads back
/// completely and exactly, 2 otherwise.
fn verify_store(path: &std::path::Path) -> ExitCode {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match revgate::revocation::verify(path, now) {
        Ok(v) => {
            let kind = if v.legacy {
                "redb store of an older build, migrated at the next start"
            } else {
                "log"
            };
            let torn = if v.torn > 0 {
                format!(", {} unacknowledged bytes of a torn tail to cut", v.torn)
            } else {
                String::new()
            };
            println!(
                "{}: ok ({kind}: {} revocations, {} watermarks, {} of them expired, {} bytes{torn})",
                v.path.display(),
                v.revocations,
                v.watermarks,
                v.expired,
                v.bytes
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("revgate: store verify: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Loads keys and checks the store URL, as starting would; exit 2 on failure.
fn check(config: &Config) -> Result<(), ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("revgate: cannot start the runtime: {e}");
            ExitCode::FAILURE
        })?;
    rt.block_on(revgate::app::check(config)).map_err(|e| {
        eprintln!("revgate: config error: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

/// `revgate mint`: one token on stdout.
fn mint(config: &Config, args: revgate::cli::MintArgs) -> ExitCode {
    let Some(jwt) = &config.jwt else {
        eprintln!("revgate: config error: jwt: `revgate mint` needs a [jwt] section");
        return ExitCode::from(EXIT_CONFIG);
    };
    match revgate::auth::mint(jwt, &args.into_request()) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("revgate: mint: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `revgate revoke`: one admin API call; prints its JSON answer.
fn revoke(config: &Config, args: &revgate::cli::RevokeArgs) -> ExitCode {
    let Some(target) = args.target() else {
        eprintln!("revgate: revoke: give one of --jti, --token, --sub");
        return ExitCode::FAILURE;
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("revgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(revgate::admin_client::revoke(
        config,
        args.admin_url.as_deref(),
        target,
    )) {
        Ok(answer) => {
            println!("{answer}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("revgate: revoke: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `demo`: `Some(tls)` for `revgate demo [--tls]`.
fn run(config: Config, path: &std::path::Path, demo: Option<bool>) -> ExitCode {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if config.server.workers > 0 {
        rt.worker_threads(config.server.workers);
    }
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("revgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<()> = rt.block_on(async move {
        if let Some(tls) = demo {
            return revgate::demo::run(config, tls).await;
        }
        let app = App::build_reloadable(config, path.to_path_buf()).await?;
        let (main, admin) = app.bind().await?;
        app.run(main, admin, revgate::server::shutdown_signal())
            .await;
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<revgate::app::StartError>() {
            Some(revgate::app::StartError::Store(store)) if store.is_config() => {
                eprintln!("revgate: {store}");
                ExitCode::from(EXIT_CONFIG)
            }
            Some(start) if start.is_config() => {
                eprintln!("revgate: config error: {start}");
                ExitCode::from(EXIT_CONFIG)
            }
            _ => {
                eprintln!("revgate: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
