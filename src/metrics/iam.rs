//! IAM authentication: signing, the credentials' end, and what connections do about the
//! server's cut of IAM connections after 12 hours.

use metrics::{counter, describe_counter, describe_gauge, gauge};
use std::time::{SystemTime, UNIX_EPOCH};

pub const SIGNINGS: &str = "redis_auth_proxy_iam_signings_total";
pub const CREDENTIALS_EXPIRY: &str = "redis_auth_proxy_iam_credentials_expiry_timestamp_seconds";
pub const REAUTHENTICATIONS: &str = "redis_auth_proxy_upstream_reauthentications_total";
pub const LIFETIME_CLOSES: &str = "redis_auth_proxy_upstream_lifetime_closes_total";

pub(super) fn describe() {
    describe_counter!(
        SIGNINGS,
        "IAM tokens signed, by result (ok; credentials_error: no AWS credentials could be had; sign_error)."
    );
    describe_gauge!(
        CREDENTIALS_EXPIRY,
        "Unix time the AWS credentials the IAM tokens are signed with expire (0: they do not)."
    );
    describe_counter!(
        REAUTHENTICATIONS,
        "With IAM: AUTH sent in band on a live connection before the server's 12-hour cut, by route and result (ok, rejected)."
    );
    describe_counter!(
        LIFETIME_CLOSES,
        "With IAM: connections closed just before the server's cut because they were never quiet long enough to authenticate again (subscribed, blocked, in MULTI), by route."
    );
}

/// One IAM signing attempt.
impl super::ProcessMetrics {
    pub fn iam_signed(&self, result: &'static str) {
        counter!(SIGNINGS, "result" => result).increment(1);
    }

    pub fn iam_credentials_expire(&self, at: Option<SystemTime>) {
        let unix = at
            .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
            .map_or(0.0, |d| d.as_secs_f64());
        gauge!(CREDENTIALS_EXPIRY).set(unix);
    }
}

/// With IAM, per route: the in-band renewals and the closes before the server's cut.
impl super::RouteMetrics {
    pub fn register_iam(&self) {
        for result in ["ok", "rejected"] {
            counter!(REAUTHENTICATIONS, "route" => self.route().to_owned(), "result" => result)
                .absolute(0);
        }
        counter!(LIFETIME_CLOSES, "route" => self.route().to_owned()).absolute(0);
    }

    /// A live connection authenticated again in band, or refused.
    pub fn reauthenticated(&self, accepted: bool) {
        let result = if accepted { "ok" } else { "rejected" };
        counter!(REAUTHENTICATIONS, "route" => self.route().to_owned(), "result" => result)
            .increment(1);
    }

    /// A connection closed before the server's cut.
    pub fn closed_at_lifetime(&self) {
        counter!(LIFETIME_CLOSES, "route" => self.route().to_owned()).increment(1);
    }
}
