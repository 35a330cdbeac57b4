//! Runs and tasks: their states, and the retry maths of spec 004.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::application::RetryOptions;

/// States of runs and tasks (spec 004's Celery states), plus `WAITING` for
/// a task whose inputs have not finished (shown as `PENDING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    Waiting,
    Pending,
    Started,
    Retry,
    Success,
    Failure,
    Revoked,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Waiting => "WAITING",
            State::Pending => "PENDING",
            State::Started => "STARTED",
            State::Retry => "RETRY",
            State::Success => "SUCCESS",
            State::Failure => "FAILURE",
            State::Revoked => "REVOKED",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        [State::Waiting, State::Pending, State::Started, State::Retry, State::Success, State::Failure, State::Revoked]
            .into_iter()
            .find(|st| st.as_str() == s)
    }

    /// The state as the API shows it: a waiting task is pending.
    pub fn public(self) -> State {
        if self == State::Waiting {
            State::Pending
        } else {
            self
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, State::Success | State::Failure | State::Revoked)
    }
}

/// The delay before retry number `retry` (1 = the first retry).
///
/// Spec 004: with `retry_backoff` the delays grow 1, 2, 4, 8 ... seconds,
/// capped by `retry_backoff_max`; without it every retry waits
/// `retry_countdown` seconds. `retry_jitter` picks a random delay between
/// zero and that value (full jitter); `jitter` is the random fraction in
/// [0, 1] to use, so this stays pure.
pub fn retry_delay(options: &RetryOptions, retry: u32, jitter: f64) -> Duration {
    let base = if options.backoff {
        // 2^(retry-1) without overflow: past 2^63 the cap has long won.
        let exp = retry.saturating_sub(1).min(63);
        1u64.checked_shl(exp).unwrap_or(u64::MAX).min(options.backoff_max)
    } else {
        options.countdown
    };
    let secs = if options.jitter { (base as f64 * jitter.clamp(0.0, 1.0)).round() as u64 } else { base };
    Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(backoff: bool, jitter: bool) -> RetryOptions {
        RetryOptions { max: 20, backoff, jitter, ..RetryOptions::default() }
    }

    #[test]
    fn backoff_doubles_from_one_second_up_to_the_cap() {
        let o = opts(true, false);
        let delays: Vec<u64> = (1..=12).map(|n| retry_delay(&o, n, 0.0).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
        let small = RetryOptions { backoff_max: 5, ..o };
        assert_eq!(retry_delay(&small, 4, 0.0).as_secs(), 5);
    }

    #[test]
    fn huge_retry_numbers_do_not_overflow() {
        let o = opts(true, false);
        for n in [63, 64, 65, 1000, u32::MAX] {
            assert_eq!(retry_delay(&o, n, 0.0).as_secs(), 600, "retry {n}");
        }
        let uncapped = RetryOptions { backoff_max: u64::MAX, ..o };
        assert_eq!(retry_delay(&uncapped, u32::MAX, 0.0).as_secs(), 1u64 << 63);
    }

    #[test]
    fn without_backoff_every_retry_waits_the_countdown() {
        let o = opts(false, false);
        assert_eq!(retry_delay(&o, 1, 0.0).as_secs(), 180);
        assert_eq!(retry_delay(&o, 7, 0.0).as_secs(), 180);
    }

    #[test]
    fn jitter_scales_the_delay_within_zero_and_the_base() {
        let o = opts(true, true);
        assert_eq!(retry_delay(&o, 4, 0.5).as_secs(), 4);
        assert_eq!(retry_delay(&o, 4, 0.0).as_secs(), 0);
        assert_eq!(retry_delay(&o, 4, 7.0).as_secs(), 8, "clamped");
    }

    #[test]
    fn states_round_trip_and_waiting_shows_as_pending() {
        for s in ["WAITING", "PENDING", "STARTED", "RETRY", "SUCCESS", "FAILURE", "REVOKED"] {
            assert_eq!(State::parse(s).unwrap().as_str(), s);
        }
        assert_eq!(State::Waiting.public(), State::Pending);
        assert!(State::Revoked.is_final() && !State::Retry.is_final());
    }
}
