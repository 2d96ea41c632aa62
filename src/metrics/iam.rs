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
pub fn signed(result: &'static str) {
    counter!(SIGNINGS, "result" => result).increment(1);
}

/// The credentials just fetched expire at `at` (`None`: never).
pub fn credentials_expire(at: Option<SystemTime>) {
    let unix = at
        .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    gauge!(CREDENTIALS_EXPIRY).set(unix);
}

/// Creates a route's series at zero.
pub fn register(route: &str) {
    for result in ["ok", "rejected"] {
        counter!(REAUTHENTICATIONS, "route" => route.to_owned(), "result" => result).absolute(0);
    }
    counter!(LIFETIME_CLOSES, "route" => route.to_owned()).absolute(0);
}

pub fn reauthenticated(route: &str, result: &'static str) {
    counter!(REAUTHENTICATIONS, "route" => route.to_owned(), "result" => result).increment(1);
}

pub fn closed_at_lifetime(route: &str) {
    counter!(LIFETIME_CLOSES, "route" => route.to_owned()).increment(1);
}
