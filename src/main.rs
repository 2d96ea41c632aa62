//! The `redis-auth-proxy` binary: parse the command line, set up logging, run or check.

use anyhow::Context;
use clap::Parser;
use redis_auth_proxy::config::{Cli, CliCommand, Config, Flags};
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

/// Exit code for an invalid configuration (BSD `EX_CONFIG`).
const EXIT_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (check, flags) = match cli.command {
        Some(CliCommand::Check(flags)) => (true, flags),
        Some(CliCommand::Run(flags)) => (false, flags),
        None => (false, cli.flags),
    };
    let config = match Config::from_flags(&flags) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("redis-auth-proxy: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_logging(&flags, &config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = if check {
        runtime.block_on(run_check(&config))
    } else {
        runtime.block_on(run_proxy(config))
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("redis-auth-proxy: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(flags: &Flags, config: &Config) {
    let filter = match flags.log_level.as_ref().or(config.log_level.as_ref()) {
        Some(level) => EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info")),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    // Colour only on a terminal: log collectors store escape codes verbatim.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

async fn run_proxy(config: Config) -> anyhow::Result<ExitCode> {
    let listeners = redis_auth_proxy::bind(&config).await?;
    redis_auth_proxy::run(listeners, config, shutdown_signal())
        .await
        .context("proxy stopped")?;
    Ok(ExitCode::SUCCESS)
}

async fn run_check(config: &Config) -> anyhow::Result<ExitCode> {
    let (store, initial) = redis_auth_proxy::load_tokens(config).await?;
    let stop = tokio_util::sync::CancellationToken::new();
    redis_auth_proxy::spawn_refresher(config, &store, initial, &stop);
    let results = redis_auth_proxy::check::check(config, &store).await;
    stop.cancel();
    for result in &results {
        println!("{}", result.line);
    }
    Ok(if results.iter().all(|r| r.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// SIGTERM is how Kubernetes, ECS and systemd stop a container; SIGINT is Ctrl-C. As PID 1 in
/// a container the process must handle them itself or the kernel ignores them.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
