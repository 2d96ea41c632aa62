//! `--entra-id` and `--google-iam`: the Azure and Google Cloud token sources. Their
//! credentials come from the environment the clouds' own SDKs read, so the settings here are
//! only what to ask for; renewal is decided with the IAM one (`iam.rs`).

use super::validate::Merger;
use crate::token::{EntraSettings, EntraSource, GoogleSettings, GoogleSource, TokenSource};

const ENTRA_SCOPE: &str = "https://redis.azure.com/.default";
const GOOGLE_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

impl Merger<'_> {
    /// The Entra ID source, when `--entra-id` is set; its companions alone are an error.
    pub(super) fn entra_source(&mut self) -> Option<TokenSource> {
        let s = self.s;
        if s.entra_id != Some(true) {
            self.companions_need(
                "--entra-id",
                &[
                    ("--entra-scope", s.entra_scope.is_some()),
                    ("--entra-client-id", s.entra_client_id.is_some()),
                ],
            );
            return None;
        }
        let scope = self.scope("--entra-scope", s.entra_scope.clone(), ENTRA_SCOPE);
        self.no_json_key("--entra-id");
        Some(TokenSource::Entra(EntraSource::new(EntraSettings {
            scope,
            client_id: s.entra_client_id.clone().filter(|id| !id.is_empty()),
            username: s.username.clone().filter(|u| !u.is_empty()),
        })))
    }

    /// The Google IAM source, when `--google-iam` is set.
    pub(super) fn google_source(&mut self) -> Option<TokenSource> {
        let s = self.s;
        if s.google_iam != Some(true) {
            self.companions_need(
                "--google-iam",
                &[("--google-scope", s.google_scope.is_some())],
            );
            return None;
        }
        let scope = self.scope("--google-scope", s.google_scope.clone(), GOOGLE_SCOPE);
        self.no_json_key("--google-iam");
        Some(TokenSource::Google(GoogleSource::new(GoogleSettings {
            scope,
            username: s.username.clone().filter(|u| !u.is_empty()),
        })))
    }

    fn companions_need(&mut self, needed: &str, companions: &[(&str, bool)]) {
        for (flag, _) in companions.iter().filter(|(_, set)| *set) {
            self.errors.push(format!("{flag}: needs {needed}"));
        }
    }

    fn scope(&mut self, flag: &str, value: Option<String>, default: &str) -> String {
        let scope = value.unwrap_or_else(|| default.to_owned());
        if scope.is_empty() || scope.contains(char::is_whitespace) {
            self.errors
                .push(format!("{flag}: one scope, a URL such as {default}"));
        }
        scope
    }

    fn no_json_key(&mut self, source: &str) {
        if self.s.token_json_key.is_some() {
            self.errors
                .push(format!("--token-json-key: not used with {source}"));
        }
    }
}
