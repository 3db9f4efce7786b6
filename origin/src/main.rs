//! The server binary: parses the configuration, binds the listeners, runs
//! [`origin::run`] and waits for Ctrl-C or SIGTERM.

use anyhow::Context;
use clap::Parser;
use origin::config::{Cli, Config};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        // Colours only on a terminal: not in journald, files or pipes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let config = Config::load(Cli::parse())?;
    let listeners = origin::Listeners::bind(&config)
        .await
        .context("binding listeners")?;
    let shutdown = CancellationToken::new();
    tokio::spawn(origin::shutdown_on_signal(shutdown.clone()));
    origin::run(config, listeners, shutdown).await
}
