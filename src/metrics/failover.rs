//! Following the primary (`--follow-primary`): sessions moved to a new primary, the commands
//! sent again there, the sessions that could not move, and how long finding the primary took.

use metrics::{counter, describe_counter, describe_histogram, histogram};

pub const FOLLOWED: &str = "redis_auth_proxy_failovers_followed_total";
pub const RESENT: &str = "redis_auth_proxy_failover_commands_resent_total";
pub const NOT_MOVED: &str = "redis_auth_proxy_failover_sessions_closed_total";
pub const DURATION: &str = "redis_auth_proxy_failover_duration_seconds";

/// Why a session refused by a replica could not move: a closed set, for the metric label.
pub const NOT_MOVED_REASONS: [&str; 3] = ["state", "timeout", "auth"];

pub(super) fn describe() {
    describe_counter!(
        FOLLOWED,
        "With --follow-primary: client sessions moved to a new primary after the old one refused a command (READONLY, LOADING, REDIRECT), lost its connection, or (with --sentinel) the Sentinels switched the primary, by route."
    );
    describe_counter!(
        RESENT,
        "With --follow-primary: commands sent again on the new primary (the refused one and every later one not yet answered), by route."
    );
    describe_counter!(
        NOT_MOVED,
        "With --follow-primary: client connections closed after the refusal was passed on, by route and reason (state: MULTI, WATCH, pub/sub, tracking or another user's AUTH cannot move, or with --sentinel a session that could not move was closed on a switch; timeout: no primary answered within --failover-timeout; auth: the new primary refused the token)."
    );
    describe_histogram!(
        DURATION,
        "With --follow-primary: seconds from a refusal to the session's commands being sent again on the new primary, by route."
    );
}

impl super::RouteMetrics {
    /// Creates the route's series at zero.
    pub fn register_failover(&self) {
        counter!(FOLLOWED, "route" => self.route().to_owned()).absolute(0);
        counter!(RESENT, "route" => self.route().to_owned()).absolute(0);
        for reason in NOT_MOVED_REASONS {
            counter!(NOT_MOVED, "route" => self.route().to_owned(), "reason" => reason).absolute(0);
        }
    }

    /// A session moved to the new primary, `resent` commands sent again, `seconds` after the
    /// refusal.
    pub fn failover_followed(&self, resent: u64, seconds: f64) {
        let route = self.route().to_owned();
        counter!(FOLLOWED, "route" => route.clone()).increment(1);
        counter!(RESENT, "route" => route.clone()).increment(resent);
        histogram!(DURATION, "route" => route).record(seconds);
    }

    /// A session refused by a replica that was closed after the refusal, and why.
    pub fn failover_not_moved(&self, reason: &'static str) {
        counter!(NOT_MOVED, "route" => self.route().to_owned(), "reason" => reason).increment(1);
    }
}
