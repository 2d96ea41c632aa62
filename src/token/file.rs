//! A token file: plain lines or JSON, as Kubernetes secret mounts and systemd credentials hold.

use super::{Credentials, TokenError, parse_credentials};
use std::path::PathBuf;

/// Reads the token from a file on every load.
#[derive(Debug, Clone)]
pub struct FileSource {
    pub path: PathBuf,
    pub json_key: Option<String>,
}

impl FileSource {
    pub async fn load(&self) -> Result<Credentials, TokenError> {
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(|error| TokenError::Read {
                source_name: self.describe(),
                error,
            })?;
        parse_credentials(text, self.json_key.as_deref(), &self.describe())
    }

    pub fn describe(&self) -> String {
        format!("token file {}", self.path.display())
    }
}
