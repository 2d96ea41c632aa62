//! The `redis-auth-proxy` binary: parse the command line, set up logging, then run, check or
//! probe. Exit codes are listed in `config::EXIT_CODES_HELP` and docs/operations.md.

use anyhow::Context;
use clap::Parser;
use redis_auth_proxy::config::{self, Cli, CliCommand, Config, Flags, LogFormat};
use std::process::ExitCode;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

/// Exit code for an invalid configuration (BSD `EX_CONFIG`).
const EXIT_CONFIG: u8 = 78;
/// `wait --wait-timeout`'s default.
const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// How long `wait` lets one `/startupz` request take, and how often it asks.
const WAIT_PROBE: Duration = Duration::from_secs(1);
const WAIT_POLL: Duration = Duration::from_millis(100);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(CliCommand::Run(cli.flags));
    let flags = match &command {
        CliCommand::Health(flags) => return health(flags),
        CliCommand::Wait(flags) => return wait(flags),
        CliCommand::Token(flags) => return print_token(flags),
        CliCommand::Run(flags) | CliCommand::Check(flags) => flags,
    };
    let config = match Config::from_flags(flags) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("redis-auth-proxy: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_logging(&config);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = config.worker_threads {
        builder.worker_threads(threads as usize);
    }
    let runtime = builder.enable_all().build().expect("tokio runtime");
    let result = match command {
        CliCommand::Check(_) => runtime.block_on(run_check(&config)),
        _ => runtime.block_on(run_proxy(config)),
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

fn init_logging(config: &Config) {
    let filter = match config.log_level.as_ref() {
        Some(level) => EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info")),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        // Colour only on a terminal: log collectors store escape codes verbatim.
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
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

/// `health`: exit 0 if the local admin endpoint says ready, 1 otherwise.
fn health(flags: &Flags) -> ExitCode {
    let addr = match local_admin(flags, "health") {
        Ok(addr) => addr,
        Err(code) => return code,
    };
    let probe = redis_auth_proxy::admin::probe(addr, "/readyz", Duration::from_secs(3));
    match current_thread().block_on(probe) {
        Ok(body) => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Err(redis_auth_proxy::admin::ProbeError::Answered(body)) => {
            println!("not ready: {body}");
            ExitCode::FAILURE
        }
        Err(unanswered) => {
            println!("{unanswered}");
            ExitCode::FAILURE
        }
    }
}

/// `wait`: exit 0 once the local admin endpoint says started, 1 if it has not within
/// `--wait-timeout`.
fn wait(flags: &Flags) -> ExitCode {
    let addr = match local_admin(flags, "wait") {
        Ok(addr) => addr,
        Err(code) => return code,
    };
    let limit = match flags.wait_timeout.as_deref().map(config::parse_duration) {
        None => DEFAULT_WAIT,
        Some(Ok(limit)) => limit,
        Some(Err(error)) => {
            eprintln!("redis-auth-proxy wait: --wait-timeout: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    current_thread().block_on(async {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let probe = redis_auth_proxy::admin::probe(addr, "/startupz", left.min(WAIT_PROBE));
            match probe.await {
                Ok(body) => {
                    println!("{body}");
                    return ExitCode::SUCCESS;
                }
                Err(reason) if tokio::time::Instant::now() >= deadline => {
                    println!("not started within {limit:?}: {reason}");
                    return ExitCode::FAILURE;
                }
                Err(_) => tokio::time::sleep(WAIT_POLL.min(left)).await,
            }
        }
    })
}

/// The local admin endpoint `--admin-listen` names (a wildcard address is reached through
/// loopback), or the exit code that says why there is none.
fn local_admin(flags: &Flags, command: &str) -> Result<std::net::SocketAddr, ExitCode> {
    let addr = match config::admin_address(flags) {
        Ok(Some(addr)) => addr,
        Ok(None) => {
            eprintln!("redis-auth-proxy {command}: the admin listener is off (--admin-listen off)");
            return Err(ExitCode::FAILURE);
        }
        Err(error) => {
            eprintln!("redis-auth-proxy {command}: {error}");
            return Err(ExitCode::from(EXIT_CONFIG));
        }
    };
    Ok(match addr.ip().is_unspecified() {
        true => std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port()),
        false => addr,
    })
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// `token`: print one token from the configured source on stdout; exit 1 if none can be had.
fn print_token(flags: &Flags) -> ExitCode {
    let source = match config::token_source(flags) {
        Ok(source) => source,
        Err(error) => {
            eprintln!("redis-auth-proxy: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(source.load()) {
        Ok(credentials) => {
            println!("{}", credentials.current.expose());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("redis-auth-proxy token: {error}");
            ExitCode::FAILURE
        }
    }
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
