//! A token in an environment variable (ECS `secrets`, plain `docker run -e`). Read at load time.

use super::{Credentials, TokenError, parse_credentials};

/// Reads the token from the named environment variable.
#[derive(Debug, Clone)]
pub struct EnvSource {
    pub var: String,
    pub json_key: Option<String>,
}

impl EnvSource {
    pub fn load(&self) -> Result<Credentials, TokenError> {
        let text = std::env::var(&self.var).map_err(|_| TokenError::Unset {
            source_name: self.describe(),
        })?;
        parse_credentials(text, self.json_key.as_deref(), &self.describe())
    }

    pub fn describe(&self) -> String {
        format!("environment variable {}", self.var)
    }
}
