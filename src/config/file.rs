//! The TOML config file: the top-level keys are the flag names (`Flags`), `[token]` is another
//! spelling of the `token-*` keys, and `[[route]]` tables declare several listeners.

use super::Flags;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// What a config file holds.
#[derive(Debug, Default)]
pub(super) struct FileConfig {
    pub(super) settings: Flags,
    pub(super) routes: Vec<FileRoute>,
}

/// `[token]`: the same as the `token-*` keys.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileToken {
    file: Option<PathBuf>,
    env: Option<String>,
    json_key: Option<String>,
    secret_id: Option<String>,
    refresh_interval: Option<String>,
}

/// `[[route]]`: one listener and its upstream; TLS keys default to the top-level ones.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(super) struct FileRoute {
    pub(super) name: Option<String>,
    pub(super) listen: Option<String>,
    pub(super) upstream: Option<String>,
    pub(super) no_tls: Option<bool>,
    pub(super) tls_ca_file: Option<PathBuf>,
    pub(super) tls_server_name: Option<String>,
    pub(super) cluster: Option<bool>,
    pub(super) sentinel: Option<Vec<String>>,
    pub(super) sentinel_master: Option<String>,
    pub(super) multiplex: Option<bool>,
}

/// Reads and parses the file; unknown keys are errors, named with the file.
pub(super) fn read_file(path: &Path) -> Result<FileConfig, String> {
    let at = |e: String| format!("--config {}: {e}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| at(e.to_string()))?;
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| at(e.message().to_owned()))?;
    let token: Option<FileToken> = take(&mut table, "token").map_err(at)?;
    let routes: Option<Vec<FileRoute>> = take(&mut table, "route").map_err(at)?;
    let mut settings: Flags = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| at(e.message().to_owned()))?;
    if let Some(token) = token {
        settings = settings.or(Flags {
            token_file: token.file,
            token_env: token.env,
            token_json_key: token.json_key,
            token_secret_id: token.secret_id,
            token_refresh_interval: token.refresh_interval,
            ..Flags::default()
        });
    }
    Ok(FileConfig {
        settings,
        routes: routes.unwrap_or_default(),
    })
}

fn take<T: serde::de::DeserializeOwned>(
    table: &mut toml::Table,
    key: &str,
) -> Result<Option<T>, String> {
    table
        .remove(key)
        .map(|value| {
            value
                .try_into()
                .map_err(|e: toml::de::Error| e.message().to_owned())
        })
        .transpose()
}
