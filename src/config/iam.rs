//! The `--iam-*` settings: the token source they make, and the in-band re-authentication an
//! IAM connection needs before the server's cut.

use super::validate::Merger;
use super::{ConfigError, Flags, Renewal};
use crate::token::iam::Service;
use crate::token::{IamSettings, IamSource, TokenSource};
use std::time::Duration;

const DEFAULT_REAUTH_INTERVAL: Duration = Duration::from_secs(11 * 3600);
/// ElastiCache and MemoryDB disconnect an IAM connection 12 hours after its last AUTH.
const DEFAULT_CONNECTION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

impl Merger<'_> {
    /// The IAM token source, when `--iam-service` is set; its companions alone are an error.
    pub(super) fn iam_source(&mut self) -> Option<TokenSource> {
        let s = self.s;
        let Some(service) = s.iam_service.as_deref() else {
            let renews = s.google_iam == Some(true) || s.entra_id == Some(true);
            let companions = [
                ("--iam-cache-name", s.iam_cache_name.is_some()),
                ("--iam-serverless", s.iam_serverless.is_some()),
                ("--iam-region", s.iam_region.is_some()),
                (
                    "--iam-reauth-interval",
                    s.iam_reauth_interval.is_some() && !renews,
                ),
                (
                    "--iam-connection-lifetime",
                    s.iam_connection_lifetime.is_some() && !renews,
                ),
            ];
            for (flag, _) in companions.iter().filter(|(_, set)| *set) {
                self.errors.push(format!("{flag}: needs --iam-service"));
            }
            return None;
        };
        let service = match service {
            "elasticache" => Service::ElastiCache,
            "memorydb" => Service::MemoryDb,
            other => {
                self.errors.push(format!(
                    "--iam-service: expected elasticache or memorydb, got {other:?}"
                ));
                Service::ElastiCache
            }
        };
        let cache_name = s.iam_cache_name.clone().unwrap_or_default();
        if cache_name.is_empty() || cache_name.contains(['/', ':', ' ']) {
            self.errors.push(
                "--iam-cache-name: the replication group id, Serverless cache name or MemoryDB cluster name (no port, no scheme) is needed with --iam-service".into(),
            );
        }
        let serverless = s.iam_serverless.unwrap_or(false);
        if serverless && service == Service::MemoryDb {
            self.errors
                .push("--iam-serverless: only ElastiCache has Serverless caches".into());
        }
        let user_id = s.username.clone().unwrap_or_default();
        if user_id.is_empty() {
            self.errors
                .push("--username: the IAM user id is needed with --iam-service".into());
        } else if user_id != user_id.to_ascii_lowercase() {
            self.errors.push(
                "--username: IAM user ids are lowercase (ElastiCache and MemoryDB store them so)"
                    .into(),
            );
        }
        if s.token_json_key.is_some() {
            self.errors
                .push("--token-json-key: not used with --iam-service".into());
        }
        Some(TokenSource::Iam(IamSource::new(IamSettings {
            service,
            cache_name,
            user_id,
            serverless,
            region: s.iam_region.clone().filter(|r| !r.is_empty()),
        })))
    }

    /// How connections authenticate again before the server's cut: on an interval for AWS and
    /// Google IAM, before each token's expiry for Entra ID.
    pub(super) fn renewal(&mut self, token: Option<&TokenSource>) -> Option<Renewal> {
        let interval = self.s.iam_reauth_interval.clone();
        let lifetime = self.s.iam_connection_lifetime.clone();
        let every = self.duration(
            "--iam-reauth-interval",
            interval.as_ref(),
            DEFAULT_REAUTH_INTERVAL,
        );
        let lifetime = self.duration(
            "--iam-connection-lifetime",
            lifetime.as_ref(),
            DEFAULT_CONNECTION_LIFETIME,
        );
        if every < Duration::from_secs(1) {
            self.errors
                .push("--iam-reauth-interval: must be at least 1s".into());
        } else if every >= lifetime {
            self.errors.push(
                "--iam-reauth-interval: must be below --iam-connection-lifetime (12h by default)"
                    .into(),
            );
        }
        match token {
            Some(TokenSource::Iam(_) | TokenSource::Google(_)) => {
                Some(Renewal::Interval { every, lifetime })
            }
            Some(TokenSource::Entra(_)) => {
                for (flag, set) in [
                    (
                        "--iam-reauth-interval",
                        self.s.iam_reauth_interval.is_some(),
                    ),
                    (
                        "--iam-connection-lifetime",
                        self.s.iam_connection_lifetime.is_some(),
                    ),
                ] {
                    if set {
                        self.errors.push(format!(
                            "{flag}: not used with --entra-id (each connection is renewed before its token expires)"
                        ));
                    }
                }
                Some(Renewal::TokenExpiry)
            }
            _ => None,
        }
    }

    /// A pooled connection is not renewed while it waits, so it must not wait an interval.
    pub(super) fn check_pool_for_renewal(
        &mut self,
        renewal: Option<Renewal>,
        pool_size: u32,
        pool_max_age: Duration,
    ) {
        if let Some(Renewal::Interval { every, .. }) = renewal
            && pool_size > 0
            && pool_max_age >= every
        {
            self.errors.push(
                "--upstream-pool-max-age: must be below --iam-reauth-interval (a pooled IAM connection is not renewed while it waits)".into(),
            );
        }
    }
}

/// The token source alone, for `token`: the listeners and upstream are not needed.
pub fn token_source(flags: &Flags) -> Result<TokenSource, ConfigError> {
    let (merged, file, mut errors) = super::read(flags);
    let source = Merger {
        s: &merged,
        flags,
        file: &file.settings,
        routes: &[],
        errors: &mut errors,
    }
    .token_source();
    match source {
        Some(source) if errors.is_empty() => Ok(source),
        _ => Err(ConfigError(errors)),
    }
}
