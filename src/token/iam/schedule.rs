//! When to fetch credentials and when to sign again: plain decisions over times, so that the
//! rules are tested without clocks.
//!
//! A presigned token dies with the credentials that signed it, and the SDK's own cache swaps
//! credentials only seconds before they expire; so the source fetches credentials itself, well
//! before they expire (half their lifetime, at most `FETCH_AHEAD`), and signs again every
//! `RESIGN_EVERY`, keeping every stored token valid for minutes to come.

use super::TOKEN_LIFETIME;
use std::time::{Duration, SystemTime};

/// Sign again after this long, with two thirds of the token's life left.
pub const RESIGN_EVERY: Duration = Duration::from_secs(300);
/// Fetch credentials at the latest this long before they expire.
pub const FETCH_AHEAD: Duration = Duration::from_secs(300);
/// The shortest wait between two scheduled steps.
const MIN_WAIT: Duration = Duration::from_secs(1);

/// What the source holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Held {
    pub(super) fetched_at: SystemTime,
    /// `None`: credentials that do not expire (access keys from the environment or a profile).
    pub(super) expires: Option<SystemTime>,
    pub(super) signed_at: SystemTime,
}

/// The next thing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// The token held is good for a while yet.
    Keep,
    /// Sign a new token with the credentials held.
    Sign,
    /// Fetch credentials, then sign.
    Fetch,
}

impl Held {
    /// How long before expiry credentials are replaced: half their life, at most `FETCH_AHEAD`.
    fn fetch_ahead(&self) -> Option<Duration> {
        let expires = self.expires?;
        let life = expires
            .duration_since(self.fetched_at)
            .unwrap_or(Duration::ZERO);
        Some((life / 2).min(FETCH_AHEAD))
    }

    /// When the credentials must be replaced.
    fn fetch_at(&self) -> Option<SystemTime> {
        Some(self.expires? - self.fetch_ahead()?)
    }

    /// When the token held stops working: 15 minutes after signing, or with its credentials.
    pub(super) fn token_expires(&self) -> SystemTime {
        let by_age = self.signed_at + TOKEN_LIFETIME;
        self.expires.map_or(by_age, |expires| expires.min(by_age))
    }

    /// How long until `step` has something to do.
    pub(super) fn due_in(&self, now: SystemTime) -> Duration {
        let mut at = self.signed_at + RESIGN_EVERY;
        if let Some(fetch_at) = self.fetch_at() {
            at = at.min(fetch_at);
        }
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .max(MIN_WAIT)
    }
}

/// What to do at `now`. `fresh`: the server refused the token, so fetch credentials anew
/// rather than trust those held.
pub(super) fn step(held: Option<&Held>, now: SystemTime, fresh: bool) -> Step {
    let Some(held) = held else {
        return Step::Fetch;
    };
    // A scheduled wake-up may come a little early; treat "nearly due" as due.
    let soon = now + MIN_WAIT;
    if fresh || held.fetch_at().is_some_and(|at| at <= soon) {
        Step::Fetch
    } else if held.signed_at + RESIGN_EVERY <= soon {
        Step::Sign
    } else {
        Step::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: SystemTime = SystemTime::UNIX_EPOCH;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn held(expires_after: Option<u64>, signed_after: u64) -> Held {
        Held {
            fetched_at: T0,
            expires: expires_after.map(|s| T0 + secs(s)),
            signed_at: T0 + secs(signed_after),
        }
    }

    #[test]
    fn nothing_held_means_fetching_credentials_first() {
        assert_eq!(step(None, T0, false), Step::Fetch);
    }

    #[test]
    fn a_token_is_signed_again_every_five_minutes_with_lasting_credentials() {
        let h = held(Some(6 * 3600), 0);
        assert_eq!(step(Some(&h), T0 + secs(60), false), Step::Keep);
        assert_eq!(h.due_in(T0 + secs(60)), secs(240));
        assert_eq!(step(Some(&h), T0 + secs(300), false), Step::Sign);
        assert_eq!(h.token_expires(), T0 + secs(900));
    }

    #[test]
    fn credentials_are_replaced_five_minutes_before_they_expire() {
        let h = held(Some(3600), 3000);
        assert_eq!(h.due_in(T0 + secs(3000)), secs(300));
        assert_eq!(step(Some(&h), T0 + secs(3298), false), Step::Keep);
        assert_eq!(step(Some(&h), T0 + secs(3300), false), Step::Fetch);
    }

    #[test]
    fn short_lived_credentials_are_replaced_at_half_their_life_and_bound_the_token() {
        let h = held(Some(120), 0);
        assert_eq!(h.due_in(T0), secs(60));
        assert_eq!(step(Some(&h), T0 + secs(59), false), Step::Fetch);
        assert_eq!(h.token_expires(), T0 + secs(120));
    }

    #[test]
    fn a_token_held_is_always_valid_for_at_least_the_fetch_margin_when_steps_run_on_time() {
        for life in [20, 120, 900, 3600, 6 * 3600] {
            let mut h = held(Some(life), 0);
            let mut now = T0;
            for _ in 0..50 {
                now += h.due_in(now);
                match step(Some(&h), now, false) {
                    Step::Keep => {}
                    Step::Sign => h.signed_at = now,
                    Step::Fetch => {
                        h = Held {
                            fetched_at: now,
                            expires: Some(now + secs(life)),
                            signed_at: now,
                        }
                    }
                }
                let left = h.token_expires().duration_since(now).unwrap();
                assert!(
                    left >= secs(life / 2).min(FETCH_AHEAD),
                    "life {life}: {left:?}"
                );
            }
        }
    }

    #[test]
    fn a_refused_token_means_fetching_fresh_credentials() {
        let h = held(None, 0);
        assert_eq!(step(Some(&h), T0 + secs(1), true), Step::Fetch);
        assert_eq!(step(Some(&h), T0 + secs(1), false), Step::Keep);
    }
}
