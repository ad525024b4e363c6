//! Command-line interface (clap).

use crate::auth::MintRequest;
use crate::config::{parse_algorithm, parse_duration, Algorithm};
use crate::telemetry::LogFormat;
use clap::{Args, Parser, Subcommand};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// The version and the commit the binary was built from (see `build.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("REVGATE_COMMIT"),
    ")"
);

/// The commit the binary was built from, or "unknown".
pub const COMMIT: &str = env!("REVGATE_COMMIT");

/// revgate: JWT verification and revocation at the edge.
#[derive(Debug, Parser)]
#[command(name = "revgate", version = VERSION, about)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        long,
        global = true,
        default_value = "gateway.toml",
        value_name = "PATH"
    )]
    pub config: PathBuf,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do; without a subcommand the gateway runs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the configuration and exit (0: valid, 2: invalid).
    CheckConfig,
    /// Print a shell completion script (e.g. `revgate completions bash >
    /// /etc/bash_completion.d/revgate`); reads no configuration.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Run the gateway from the config together with a built-in echo
    /// upstream, and print commands to try.
    Demo {
        /// Serve the main listener over TLS with a throwaway certificate
        /// (and CA) generated into a temporary directory; the printed curl
        /// commands pass that CA with `--cacert`.
        #[arg(long)]
        tls: bool,
    },
    /// Print one token signed with the configured HMAC secret or
    /// `jwt.signing_key_file` (for development, tests and benches).
    Mint(MintArgs),
    /// Revoke through the admin API (operators): a jti, a whole token, or
    /// every token of a subject.
    Revoke(RevokeArgs),
    /// The durable revocation store, offline.
    #[command(subcommand)]
    Store(StoreCommand),
}

/// `revgate store ...`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Read a store completely and check every checksum (exit 0: intact,
    /// 2: damaged or missing). Needs no config.
    Verify {
        /// The store directory (`revocation.path`) or its log file.
        #[arg(long, value_name = "PATH")]
        path: PathBuf,
    },
}

/// `revgate revoke` options: exactly one of `--jti`, `--token`, `--sub`,
/// `--sid`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["jti", "token", "sub", "sid"])))]
pub struct RevokeArgs {
    /// Revoke this `jti`.
    #[arg(long)]
    pub jti: Option<String>,
    /// With `--jti`: when the entry may leave (UNIX seconds). Default: once
    /// every token acceptable now has expired: now plus
    /// `jwt.max_token_lifetime` plus three `jwt.leeway`s, plus one second.
    #[arg(long, requires = "jti")]
    pub expires_at: Option<u64>,
    /// Revoke this token (it must verify).
    #[arg(long)]
    pub token: Option<String>,
    /// Revoke every token of this subject issued up to now (logout-all).
    #[arg(long)]
    pub sub: Option<String>,
    /// Revoke every token of this identity-provider session (`sid` claim).
    #[arg(long)]
    pub sid: Option<String>,
    /// The admin API's base URL (default: `http://` + `admin.listen`).
    #[arg(long, value_name = "URL")]
    pub admin_url: Option<String>,
}

impl RevokeArgs {
    /// What to revoke.
    pub fn target(&self) -> Option<crate::admin_client::RevokeTarget> {
        use crate::admin_client::RevokeTarget;
        if let Some(jti) = &self.jti {
            return Some(RevokeTarget::Jti {
                jti: jti.clone(),
                expires_at: self.expires_at,
            });
        }
        if let Some(t) = &self.token {
            return Some(RevokeTarget::Token(t.clone()));
        }
        self.sub
            .clone()
            .map(RevokeTarget::Sub)
            .or_else(|| self.sid.clone().map(RevokeTarget::Sid))
    }
}

/// `revgate mint` options.
#[derive(Debug, Args)]
pub struct MintArgs {
    /// The `sub` claim.
    #[arg(long)]
    pub sub: String,
    /// Lifetime: `exp` = now + TTL (e.g. `15m`, `1h`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration,
          default_value = DEFAULT_TTL_ARG)]
    pub ttl: Duration,
    /// The `jti` claim (default: 128 random bits, hex).
    #[arg(long)]
    pub jti: Option<String>,
    /// The `scope` claim, space-separated (e.g. "orders:read orders:write").
    #[arg(long)]
    pub scope: Option<String>,
    /// An extra claim, repeatable; VALUE is JSON when it parses (`n=5`,
    /// `admin=true`), else a string. Set last, so it may override others.
    #[arg(long = "claim", value_name = "KEY=VALUE", value_parser = claim)]
    pub claims: Vec<(String, Value)>,
    /// The algorithm (default: the first of `jwt.algorithms` the configured
    /// keys can sign).
    #[arg(long, value_parser = algorithm)]
    pub alg: Option<Algorithm>,
    /// A `kid` header, for key sets with several keys.
    #[arg(long)]
    pub kid: Option<String>,
}

impl MintArgs {
    /// The library's request for these options.
    pub fn into_request(self) -> MintRequest {
        MintRequest {
            sub: self.sub,
            ttl: self.ttl,
            jti: self.jti,
            scope: self.scope,
            claims: self.claims,
            alg: self.alg,
            kid: self.kid,
        }
    }
}

/// `--ttl` when not given: [`crate::auth::DEFAULT_MINT_TTL`] as text (a test keeps them equal).
const DEFAULT_TTL_ARG: &str = "15m";

fn claim(arg: &str) -> Result<(String, Value), String> {
    crate::auth::parse_claim(arg).map_err(|e| e.to_string())
}

fn algorithm(name: &str) -> Result<Algorithm, String> {
    parse_algorithm(name).ok_or_else(|| {
        format!("{name:?} is not an algorithm; use HS256/384/512, RS256/384/512, PS256/384/512, ES256/384 or EdDSA")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::DEFAULT_MINT_TTL;

    fn mint_args(args: &[&str]) -> Result<MintArgs, clap::Error> {
        let mut argv = vec!["revgate", "mint"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv)?.command {
            Some(Command::Mint(m)) => Ok(m),
            other => panic!("not mint: {other:?}"),
        }
    }

    #[test]
    fn mint_defaults() {
        let m = mint_args(&["--sub", "alice"]).expect("parses");
        assert_eq!(m.ttl, DEFAULT_MINT_TTL);
        let req = m.into_request();
        assert_eq!(req, MintRequest::new("alice"));
    }

    #[test]
    fn mint_options() {
        let m = mint_args(&[
            "--sub",
            "bob",
            "--ttl",
            "1h",
            "--jti",
            "j1",
            "--scope",
            "a b",
            "--claim",
            "n=5",
            "--claim",
            "team=blue",
            "--alg",
            "ES256",
            "--kid",
            "k1",
        ])
        .expect("parses");
        let req = m.into_request();
        assert_eq!(req.ttl, Duration::from_secs(3600));
        assert_eq!(req.jti.as_deref(), Some("j1"));
        assert_eq!(req.scope.as_deref(), Some("a b"));
        assert_eq!(
            req.claims,
            vec![
                ("n".into(), Value::from(5)),
                ("team".into(), Value::from("blue"))
            ]
        );
        assert_eq!(req.alg, Some(Algorithm::ES256));
        assert_eq!(req.kid.as_deref(), Some("k1"));
    }

    #[test]
    fn version_names_the_commit() {
        let err = Cli::try_parse_from(["revgate", "--version"]).expect_err("--version exits");
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayVersion);
        let text = err.to_string();
        assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
        assert!(text.contains(COMMIT), "{text}");
    }

    #[test]
    fn completions_take_a_shell() {
        let cli = Cli::try_parse_from(["revgate", "completions", "zsh"]).expect("parses");
        assert!(matches!(
            cli.command,
            Some(Command::Completions {
                shell: clap_complete::Shell::Zsh
            })
        ));
        assert!(Cli::try_parse_from(["revgate", "completions", "tcsh"]).is_err());
    }

    #[test]
    fn mint_rejects_bad_values() {
        assert!(mint_args(&[]).is_err(), "--sub is required");
        assert!(mint_args(&["--sub", "a", "--ttl", "soon"]).is_err());
        assert!(mint_args(&["--sub", "a", "--alg", "none"]).is_err());
        assert!(mint_args(&["--sub", "a", "--claim", "novalue"]).is_err());
    }
}
