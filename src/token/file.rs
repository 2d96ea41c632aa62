//! A token file: plain lines or JSON, as Kubernetes secret mounts and systemd credentials hold.

use super::{Credentials, TokenError, parse_credentials};
use std::path::{Path, PathBuf};

/// Reads credentials from a file on every load.
#[derive(Debug, Clone)]
pub struct FileSource {
    pub path: PathBuf,
    pub json_key: Option<String>,
    /// What the file holds, for messages: "token file", "client password file".
    pub what: &'static str,
}

impl FileSource {
    /// A `--token-file`.
    pub fn token(path: PathBuf, json_key: Option<String>) -> Self {
        FileSource {
            path,
            json_key,
            what: "token file",
        }
    }

    pub async fn load(&self) -> Result<Credentials, TokenError> {
        read_credentials(&self.path, self.json_key.as_deref(), &self.describe()).await
    }

    pub fn describe(&self) -> String {
        format!("{} {}", self.what, self.path.display())
    }
}

/// Reads and parses a file in the token format; errors call it `source_name`.
pub async fn read_credentials(
    path: &Path,
    json_key: Option<&str>,
    source_name: &str,
) -> Result<Credentials, TokenError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|error| TokenError::Read {
            source_name: source_name.to_owned(),
            error,
        })?;
    parse_credentials(text, json_key, source_name)
}
