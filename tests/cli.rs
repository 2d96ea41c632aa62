//! The binary as an operator meets it: flags, environment, config file, `check`, exit codes.

mod common;

use common::*;
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_redis-auth-proxy");

/// The binary with a clean environment, so the tests' own variables cannot leak in.
fn proxy_command() -> Command {
    let mut command = Command::new(BIN);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    // Tests run in parallel: no two proxies may take the default admin port.
    command.env("REDIS_AUTH_PROXY_ADMIN_LISTEN", "127.0.0.1:0");
    command.stdin(Stdio::null());
    command
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A running proxy process, killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every flag is in --help together with its environment variable.
#[test]
fn help_documents_every_flag_and_its_environment_twin() {
    use clap::CommandFactory;
    let output = proxy_command().args(["run", "--help"]).output().unwrap();
    let help = stdout(&output);
    // The config file's keys: every field of `Flags` as serde names it.
    let file_keys = serde_json::to_value(redis_auth_proxy::config::Flags::default()).unwrap();
    let command = redis_auth_proxy::config::Cli::command();
    let run = command.find_subcommand("run").expect("a run subcommand");
    let mut flags = 0;
    for arg in run.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == "help" || long == "version" {
            continue;
        }
        flags += 1;
        let env = format!("REDIS_AUTH_PROXY_{}", long.to_uppercase().replace('-', "_"));
        assert_eq!(
            arg.get_env().and_then(|e| e.to_str()),
            Some(env.as_str()),
            "--{long}"
        );
        assert!(
            help.contains(&format!("--{long}")),
            "--{long} missing from help"
        );
        assert!(help.contains(&env), "{env} missing from help");
        if long != "config" {
            assert!(
                file_keys.get(long).is_some(),
                "--{long} has no config-file key"
            );
        }
    }
    assert!(flags > 40, "every flag was walked ({flags})");
}

/// `check` connects, authenticates and pings, and says so in one line per route.
#[test]
fn check_reports_a_working_route_and_exits_zero() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let output = proxy_command()
        .args(["check", "--upstream", &redis.tls_addr()])
        .arg("--tls-ca-file")
        .arg(&certs().ca)
        .arg("--token-file")
        .arg(&token.path)
        .output()
        .unwrap();
    let out = stdout(&output);
    assert!(output.status.success(), "{out}{}", stderr(&output));
    assert!(
        out.starts_with("ok    default 127.0.0.1:6379 -> localhost:"),
        "{out}"
    );
    assert!(
        out.contains("AUTH with the current token, PONG in"),
        "{out}"
    );
}

/// `check` fails with exit code 1 and names the cause when the token is wrong.
#[test]
fn check_fails_on_a_rejected_token_without_showing_it() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_B);
    let output = proxy_command()
        .args(["check", "--upstream", &redis.tls_addr()])
        .arg("--tls-ca-file")
        .arg(&certs().ca)
        .arg("--token-file")
        .arg(&token.path)
        .output()
        .unwrap();
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.starts_with("FAIL  default") && out.contains("rejected the token (WRONGPASS)"),
        "{out}"
    );
    assert!(!out.contains(TOKEN_B) && !stderr(&output).contains(TOKEN_B));
}

/// A flag beats its environment variable, which beats the config file.
#[test]
fn flags_beat_environment_which_beats_the_config_file() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let good = redis.tls_addr();
    let bad = format!("127.0.0.1:{}", free_port());
    let config = token.dir().join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            "upstream = \"{bad}\"\ntls-ca-file = {:?}\ntoken-file = {:?}\n",
            certs().ca,
            token.path
        ),
    )
    .unwrap();
    let check = |env: Option<&str>, flag: Option<&str>| {
        let mut command = proxy_command();
        command.arg("check").arg("--config").arg(&config);
        if let Some(env) = env {
            command.env("REDIS_AUTH_PROXY_UPSTREAM", env);
        }
        if let Some(flag) = flag {
            command.args(["--upstream", flag]);
        }
        command.output().unwrap().status.success()
    };
    assert!(!check(None, None), "the file's bad upstream is used");
    assert!(check(Some(&good), None), "the environment beats the file");
    assert!(
        !check(Some(&good), Some(&bad)),
        "the flag beats the environment"
    );
    assert!(
        check(Some(&bad), Some(&good)),
        "the flag beats the environment"
    );
}

/// Configuration mistakes are all reported at once, each naming its flag, with exit code 78.
#[test]
fn config_errors_are_reported_together_with_exit_code_78() {
    let output = proxy_command()
        .args([
            "--listen",
            "localhost",
            "--connect-timeout",
            "10",
            "--token-file",
            "/x",
            "--token-env",
            "T",
        ])
        .output()
        .unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(78), "{err}");
    for expected in [
        "--listen: expected IP:PORT",
        "--upstream: required",
        "--connect-timeout:",
        "--token-file and --token-env",
    ] {
        assert!(err.contains(expected), "{expected:?} missing from:\n{err}");
    }
}

/// A missing token file stops the proxy at start with exit code 1 and the path.
#[test]
fn a_missing_token_file_is_a_clear_start_error() {
    let output = proxy_command()
        .args([
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "localhost:6379",
            "--token-file",
            "/nonexistent/token",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("cannot read token file /nonexistent/token"),
        "{}",
        stderr(&output)
    );
}

/// Two routes from one config file, as the seed article's stunnel setup had: each local port
/// reaches its own server with the one shared token.
#[test]
fn two_routes_from_one_config_file_reach_their_own_servers() {
    let primary = RedisServer::start();
    let reader = RedisServer::start();
    primary.admin(&["SET", "who", "primary"]);
    reader.admin(&["SET", "who", "reader"]);
    let token = TokenFile::new(TOKEN_A);
    let (primary_port, reader_port) = (free_port(), free_port());
    let config = token.dir().join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            "tls-ca-file = {ca:?}\n[token]\nfile = {token:?}\n\n\
             [[route]]\nname = \"primary\"\nlisten = \"127.0.0.1:{primary_port}\"\nupstream = \"{p}\"\n\n\
             [[route]]\nname = \"reader\"\nlisten = \"127.0.0.1:{reader_port}\"\nupstream = \"{r}\"\n",
            ca = certs().ca,
            token = token.path,
            p = primary.tls_addr(),
            r = reader.tls_addr(),
        ),
    )
    .unwrap();
    let _proxy = Running(
        proxy_command()
            .arg("--config")
            .arg(&config)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let get = |port: u16| {
        stdout(&redis_cli(&["-p", &port.to_string(), "GET", "who"]))
            .trim()
            .to_owned()
    };
    eventually("the primary route answers", || {
        get(primary_port) == "primary"
    });
    assert_eq!(get(reader_port), "reader");
    let check = proxy_command()
        .arg("check")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let lines = stdout(&check);
    assert_eq!(lines.lines().count(), 2, "{lines}");
    assert!(
        lines.contains("ok    primary") && lines.contains("ok    reader"),
        "{lines}"
    );
}

/// The token can come from an environment variable named by --token-env.
#[test]
fn a_token_from_an_environment_variable_works() {
    let redis = RedisServer::start();
    let output = proxy_command()
        .args([
            "check",
            "--upstream",
            &redis.tls_addr(),
            "--token-env",
            "MY_REDIS_TOKEN",
        ])
        .arg("--tls-ca-file")
        .arg(&certs().ca)
        .env("MY_REDIS_TOKEN", TOKEN_A)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
}

/// SIGTERM stops the proxy with exit code 0.
#[test]
fn sigterm_stops_the_proxy_cleanly() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let port = free_port();
    let mut child = proxy_command()
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--upstream",
            &redis.tls_addr(),
        ])
        .arg("--tls-ca-file")
        .arg(&certs().ca)
        .arg("--token-file")
        .arg(&token.path)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually("the proxy answers", || {
        stdout(&redis_cli(&["-p", &port.to_string(), "PING"])).trim() == "PONG"
    });
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

/// docs/configuration.md documents every flag and environment variable `--help` lists, and
/// docs/operations.md every metric named anywhere in `src/metrics*`.
#[test]
fn the_docs_document_every_flag_variable_and_metric() {
    let help = stdout(&proxy_command().args(["run", "--help"]).output().unwrap());
    let doc = |name: &str| {
        let path = format!("{}/docs/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).expect(name)
    };
    let (configuration, operations) = (doc("configuration.md"), doc("operations.md"));
    let words = |text: &str, prefix: &str| -> Vec<String> {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .filter(|w| w.starts_with(prefix) && w.len() > prefix.len())
            .map(str::to_owned)
            .collect()
    };
    assert!(
        words(&help, "--").len() > 30,
        "--help lists the flags: {help}"
    );
    let mut missing: Vec<String> = words(&help, "--")
        .into_iter()
        .chain(words(&help, "REDIS_AUTH_PROXY_"))
        .filter(|w| w != "--help" && w != "--version" && !configuration.contains(w.as_str()))
        .collect();
    // Every metric's name: in src/metrics.rs and every file under src/metrics/.
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut metrics = std::fs::read_to_string(format!("{source}/metrics.rs")).unwrap();
    for file in std::fs::read_dir(format!("{source}/metrics")).unwrap() {
        metrics.push_str(&std::fs::read_to_string(file.unwrap().path()).unwrap());
    }
    for name in words(&metrics, "redis_auth_proxy_") {
        let short = name.trim_start_matches("redis_auth_proxy_");
        if !operations.contains(&format!("`{short}`")) {
            missing.push(name);
        }
    }
    missing.sort();
    missing.dedup();
    assert!(missing.is_empty(), "not in docs/: {missing:?}");
}
