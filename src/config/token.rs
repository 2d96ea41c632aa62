//! Which token source the settings name: exactly one of a file, an environment variable, a
//! Secrets Manager secret, AWS IAM (`iam.rs`), Entra ID or Google IAM (`cloud.rs`).

use super::validate::Merger;
use crate::token::{EnvSource, FileSource, SecretsManagerSource, TokenSource};

impl Merger<'_> {
    pub(super) fn token_source(&mut self) -> Option<TokenSource> {
        let file_path = self.s.token_file.clone();
        let env_var = self.s.token_env.clone();
        let json_key = self.s.token_json_key.clone();
        let secret_id = self.s.token_secret_id.clone();
        let mut chosen: Vec<(&str, TokenSource)> = Vec::new();
        if let Some(path) = file_path {
            chosen.push((
                "--token-file",
                TokenSource::File(FileSource::token(path, json_key.clone())),
            ));
        }
        if let Some(var) = env_var {
            if var.is_empty() {
                self.errors.push("--token-env: empty variable name".into());
            }
            chosen.push((
                "--token-env",
                TokenSource::Env(EnvSource {
                    var,
                    json_key: json_key.clone(),
                }),
            ));
        }
        if let Some(id) = secret_id {
            if id.is_empty() {
                self.errors
                    .push("--token-secret-id: empty secret id".into());
            }
            chosen.push((
                "--token-secret-id",
                TokenSource::SecretsManager(SecretsManagerSource::new(id, json_key)),
            ));
        }
        if let Some(source) = self.iam_source() {
            chosen.push(("--iam-service", source));
        }
        if let Some(source) = self.entra_source() {
            chosen.push(("--entra-id", source));
        }
        if let Some(source) = self.google_source() {
            chosen.push(("--google-iam", source));
        }
        match chosen.len() {
            1 => chosen.pop().map(|(_, source)| source),
            0 => {
                self.errors.push(
                    "no token source: set --token-file, --token-env, --token-secret-id, --iam-service, --entra-id or --google-iam (or their REDIS_AUTH_PROXY_* variables, or [token] in --config)".into(),
                );
                None
            }
            _ => {
                let names: Vec<&str> = chosen.iter().map(|(name, _)| *name).collect();
                let verb = if names.len() == 2 {
                    "are both set"
                } else {
                    "are all set"
                };
                self.errors.push(format!(
                    "{} {verb}; choose one token source",
                    names.join(" and ")
                ));
                None
            }
        }
    }
}
