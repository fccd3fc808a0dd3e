//! Retries through the scheduler: a failed hour is never retried in a loop inside the
//! function (a Lambda that sleeps costs money and dies at its timeout); it asks the
//! [`RetryScheduler`] to invoke the export again later with `attempt + 1`.
//!
//! Everything here is pure: the name of the one-time schedule, its time, and the request it
//! carries are derived from the failed request alone, so a redelivered failure event asks
//! for the very same schedule and the scheduler answers "already exists".

use std::time::Duration;

use crate::error::{ExportError, Result};
use crate::model::hour_request::{ExportMode, HourRequest, PlannedRetry};
use chrono::{DateTime, Utc};

/// Attempts per hour (the first run included) unless configured otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// How many times an hour is tried and how long to wait between tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first run included; at least 1.
    pub max_attempts: u32,
    /// Wait before attempt 2.
    pub first_delay: Duration,
    /// Each further wait is this many times the previous one.
    pub factor: u32,
    /// No wait is longer than this.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, waiting 5, 15, 45 and 135 minutes: a destination fixed within about
    /// three hours never produces an email, and the admins hear within about four.
    fn default() -> Self {
        RetryPolicy { max_attempts: DEFAULT_MAX_ATTEMPTS, first_delay: Duration::from_secs(5 * 60), factor: 3, max_delay: Duration::from_secs(6 * 3600) }
    }
}

impl RetryPolicy {
    pub fn new(max_attempts: u32, first_delay: Duration, factor: u32, max_delay: Duration) -> Result<Self> {
        if max_attempts == 0 {
            return Err(ExportError::invalid_config("max_attempts", "is 0", "Use 1 (no retries) or more; the default is 5."));
        }
        if factor == 0 {
            return Err(ExportError::invalid_config("retry factor", "is 0", "Use 1 (constant delay) or more."));
        }
        Ok(RetryPolicy { max_attempts, first_delay, factor, max_delay })
    }

    /// Whether `attempt` is the last one allowed.
    pub fn is_last(&self, attempt: u32) -> bool {
        attempt >= self.max_attempts
    }

    /// The wait between a failed `attempt` and the next one: grows with each attempt.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let steps = attempt.saturating_sub(1).min(30);
        let mut delay = self.first_delay;
        for _ in 0..steps {
            delay = delay.saturating_mul(self.factor);
            if delay >= self.max_delay {
                return self.max_delay;
            }
        }
        delay.min(self.max_delay)
    }

    /// The retry to schedule after `failed` failed at `now`, or `None` when it was the last.
    pub fn plan(&self, failed: &HourRequest, now: DateTime<Utc>) -> Option<PlannedRetry> {
        if self.is_last(failed.attempt) {
            return None;
        }
        let next = failed.next_attempt();
        let delay = chrono::Duration::from_std(self.delay_after(failed.attempt)).unwrap_or(chrono::Duration::hours(6));
        // Whole seconds: `at(...)` has no fractions.
        let at = DateTime::from_timestamp((now + delay).timestamp(), 0).unwrap_or(now + delay);
        Some(PlannedRetry { id: retry_id(&next), at, request: next })
    }
}

/// A one-time schedule that hands a not-yet-started hour to a fresh invocation (a run that
/// ran short of time): due a minute from now, with the same attempt number.
pub fn handoff(req: &HourRequest, now: DateTime<Utc>) -> PlannedRetry {
    let at = DateTime::from_timestamp((now + chrono::Duration::minutes(1)).timestamp(), 0).unwrap_or(now);
    PlannedRetry { id: retry_id(req), at, request: req.clone() }
}

/// `{conn}-{yyyyMMddTHH}-{rec|rep|late}-a{attempt}`: the identity of a retry, the same for
/// every redelivery of one failure and different for every connection, hour, mode and
/// attempt. Each scheduler makes of it a name its service accepts.
pub fn retry_id(req: &HourRequest) -> String {
    let mode = match req.mode {
        ExportMode::Recurring => "rec",
        ExportMode::Replace => "rep",
        ExportMode::Late => "late",
    };
    format!("{}-{}-{mode}-a{}", req.connection_id, req.hour.start().format("%Y%m%dT%H"), req.attempt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hour::UtcHour;

    fn req(conn: &str, attempt: u32) -> HourRequest {
        HourRequest::new(conn, UtcHour::parse("2020-01-25T17").unwrap(), ExportMode::Recurring, attempt)
    }

    #[test]
    fn retry_ids_are_deterministic_and_distinct() {
        let a = retry_id(&req("conn-1", 2));
        assert_eq!(a, "conn-1-20200125T17-rec-a2");
        assert_eq!(a, retry_id(&req("conn-1", 2)));
        assert_ne!(a, retry_id(&req("conn-1", 3)));
        let mut replace = req("conn-1", 2);
        replace.mode = ExportMode::Replace;
        assert_ne!(a, retry_id(&replace));
        assert_ne!(retry_id(&req(&"a".repeat(64), 5)), retry_id(&req(&format!("{}b", "a".repeat(63)), 5)));
    }

    #[test]
    fn delays_grow_and_are_capped() {
        let p = RetryPolicy::default();
        let mins: Vec<u64> = (1..=4).map(|a| p.delay_after(a).as_secs() / 60).collect();
        assert_eq!(mins, vec![5, 15, 45, 135]);
        assert_eq!(p.delay_after(20), Duration::from_secs(6 * 3600));
        let constant = RetryPolicy::new(3, Duration::from_secs(60), 1, Duration::from_secs(600)).unwrap();
        assert_eq!(constant.delay_after(2), Duration::from_secs(60));
        assert!(RetryPolicy::new(0, Duration::ZERO, 2, Duration::ZERO).is_err());
    }

    #[test]
    fn plans_until_the_last_attempt() {
        let p = RetryPolicy::default();
        let now = DateTime::parse_from_rfc3339("2020-01-25T18:05:00.250Z").unwrap().with_timezone(&Utc);
        let first = p.plan(&req("c", 1), now).expect("attempt 1 of 5 is retried");
        assert_eq!(first.request.attempt, 2);
        assert_eq!(first.at.to_rfc3339(), "2020-01-25T18:10:00+00:00");
        assert_eq!(first.id, "c-20200125T17-rec-a2");
        let fourth = p.plan(&req("c", 4), now).expect("attempt 4 of 5 is retried");
        assert_eq!(fourth.request.attempt, 5);
        assert!(p.plan(&req("c", 5), now).is_none(), "attempt 5 is the last");
        assert!(p.is_last(5) && !p.is_last(4));
    }

    #[test]
    fn request_payload_shape() {
        let r: HourRequest = serde_json::from_str(r#"{"connection_id":"c","hour":"2020-01-25T17","mode":"replace","attempt":3}"#).unwrap();
        assert_eq!(r.mode, ExportMode::Replace);
        assert_eq!(r.attempt, 3);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["hour"], "2020-01-25T17");
        let defaults: HourRequest = serde_json::from_str(r#"{"connection_id":"c","hour":"2020-01-25T17"}"#).unwrap();
        assert_eq!((defaults.mode, defaults.attempt), (ExportMode::Recurring, 1));
    }
}
