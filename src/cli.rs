//! Command-line interface (clap).

use crate::telemetry::LogFormat;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// revgate: JWT verification and revocation at the edge.
#[derive(Debug, Parser)]
#[command(name = "revgate", version, about)]
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
    /// Run the gateway from the config together with a built-in echo
    /// upstream, and print commands to try.
    Demo,
}
