//! The default docs/configuration.md states for a flag is the one the code uses: configuring
//! the flag with its documented default changes nothing in the validated configuration.

use clap::Parser;
use redis_auth_proxy::config::{Cli, CliCommand, Config};

/// The least a configuration needs, besides the flag under test.
const BASE: &[&str] = &["--upstream", "cache.example:6379", "--token-env", "T"];
/// The same with IAM, for the `--iam-*` flags that need it.
const IAM: &[&str] = &[
    "--upstream",
    "cache.example:6379",
    "--iam-service",
    "elasticache",
    "--iam-cache-name",
    "cache",
    "--username",
    "app",
    "--iam-region",
    "us-east-1",
];

/// The same with Entra ID and with Google IAM, for the `--entra-*` and `--google-*` flags.
const ENTRA: &[&str] = &["--upstream", "cache.example:6379", "--entra-id"];
const GOOGLE: &[&str] = &["--upstream", "cache.example:6379", "--google-iam"];

fn config(base: &[&str], extra: &[String]) -> Result<String, String> {
    let mut args = vec!["redis-auth-proxy", "run"];
    args.extend(base);
    args.extend(extra.iter().map(String::as_str));
    let cli = Cli::try_parse_from(&args).map_err(|e| e.to_string())?;
    let Some(CliCommand::Run(flags)) = cli.command else {
        return Err("not run".into());
    };
    let config = Config::from_flags(&flags).map_err(|e| e.to_string())?;
    Ok(format!("{config:?}"))
}

/// Rows of the flag table whose default is one value in backticks: (flag, default).
fn documented_defaults() -> Vec<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
    let doc = std::fs::read_to_string(path).unwrap();
    doc.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let flag = cells.get(1)?.strip_prefix("`--")?;
            let flag = flag.split([' ', '[', '`']).next()?;
            let default = cells.get(3)?.strip_prefix('`')?.strip_suffix('`')?;
            (!default.contains('`')).then(|| (flag.to_owned(), default.to_owned()))
        })
        .collect()
}

#[test]
fn every_flag_given_its_documented_default_leaves_the_configuration_unchanged() {
    let default = config(BASE, &[]).expect("the base configuration is valid");
    let iam = config(IAM, &[]).expect("the IAM configuration is valid");
    let entra = config(ENTRA, &[]).expect("the Entra ID configuration is valid");
    let google = config(GOOGLE, &[]).expect("the Google IAM configuration is valid");
    let rows = documented_defaults();
    assert!(rows.len() > 20, "the table was read: {rows:?}");
    let mut wrong = Vec::new();
    for (flag, value) in rows {
        let (base, default) = match flag.split('-').next() {
            Some("iam") => (IAM, &iam),
            Some("entra") if flag != "entra-id" => (ENTRA, &entra),
            Some("google") if flag != "google-iam" => (GOOGLE, &google),
            _ => (BASE, &default),
        };
        match config(base, &[format!("--{flag}={value}")]) {
            Ok(explicit) if explicit == *default => {}
            Ok(_) => wrong.push(format!("--{flag}: `{value}` is not the default")),
            Err(error) => wrong.push(format!("--{flag}={value}: {error}")),
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
