//! Per-caller rate limits: a token bucket per credential name, so one client cannot keep an
//! expensive route (an on-demand analysis) busy for everyone.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Token buckets of `per_minute` tokens, refilled continuously, one per caller.
#[derive(Debug)]
pub struct RateLimit {
    per_minute: u32,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// Callers tracked at most; past it, buckets full again are forgotten.
const MAX_CALLERS: usize = 10_000;

impl RateLimit {
    /// A limit of `per_minute` (0: none).
    pub fn per_minute(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `caller`; when there is none, how long until there is.
    pub fn take(&self, caller: &str) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let cap = f64::from(self.per_minute);
        let rate = cap / 60.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_CALLERS {
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < cap
            });
        }
        let (tokens, at) = buckets.entry(caller.to_owned()).or_insert((cap, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(cap);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_gets_its_burst_then_waits_others_are_not_affected() {
        let l = RateLimit::per_minute(3);
        for _ in 0..3 {
            l.take("a").expect("within the burst");
        }
        let wait = l.take("a").expect_err("over the limit");
        assert!(
            wait > Duration::from_secs(15) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        l.take("b").expect("another caller has its own bucket");
        RateLimit::per_minute(0).take("a").expect("0 is no limit");
    }
}
