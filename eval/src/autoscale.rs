//! Autoscaling replay (`aiops eval autoscale`): real traffic through a model of the Kubernetes
//! HPA, driven by the current load (reactive), by our served value (predictive:
//! `max(forecast quantile at now + lead, current load)` with the policy of
//! [`aiops_detect::scaling::policy`] — the same code `serve` runs, the quantile adapting to an
//! under-provisioning budget when one is given), and in shadow mode (the HPA gets the current
//! load; what predictive would have served drives a second, counterfactual HPA — the preview a
//! team reads before turning predictive scaling on).
//!
//! The model, per protocols.md §5.4: every `sync_secs` (15 s) the HPA reads the metric and
//! computes `desired = ceil(metric / capacity_per_pod)` (an `AverageValue` target); changes
//! within the tolerance (10 %) of the current replica count's capacity are ignored; scaling up
//! happens at once, scaling down takes the highest recommendation of the last
//! `stabilisation_secs` (300 s). A new pod serves only after `startup_secs`; a removed pod stops
//! at once (pods still starting go first).
//!
//! The true load between two samples is interpolated linearly; both policies see it exactly
//! (the best a reactive HPA can do). Samples further apart than `max_gap_secs` bound a *gap*
//! (a sensor or scrape outage: NAB's traffic files are missing 37–73 % of their span): no
//! load is known there, so no HPA gets a metric and nothing is scored; when the load returns,
//! every HPA restarts from the replicas it needs, as at the start. Interpolating instead
//! would score every policy against a made-up straight line over up to 84 hours, with the
//! predictive one serving a forecast that many hours ahead.
//!
//! Accounting per sync period: *under-provisioned pod-minutes* = (pods needed − pods ready)⁺
//! × minutes (users hurt), *pod-minutes* = pods running or starting × minutes (money). The
//! forecaster learns the first `warmup` samples before the replay is scored; it keeps learning
//! online as time passes.

use std::collections::VecDeque;

use serde::Serialize;

use aiops_detect::forecast::{ForecastConfig, Forecaster};
use aiops_detect::scaling::{Policy, PolicyState, ScalingMode};

/// Replay options.
#[derive(Debug, Clone, Copy)]
pub struct ReplayOptions {
    /// Load one pod serves.
    pub capacity_per_pod: f64,
    /// Seconds from scheduling a pod to it serving.
    pub startup_secs: u64,
    /// Forecast lead (default: the start-up time).
    pub lead_secs: u64,
    /// Served forecast quantile, in [0.5, 0.99] (the start when `under_budget` is set).
    pub quantile: f64,
    /// Under-provisioning budget: the served quantile adapts to it.
    pub under_budget: Option<f64>,
    /// Extra-capacity budget (with `under_budget`): misses stop raising the quantile while
    /// the served value exceeds the load by more, on average.
    pub extra_budget: Option<f64>,
    /// HPA sync period.
    pub sync_secs: u64,
    /// HPA tolerance.
    pub tolerance: f64,
    /// Scale-down stabilisation window.
    pub stabilisation_secs: u64,
    /// Replica bounds.
    pub min_replicas: u64,
    /// Replica bounds.
    pub max_replicas: u64,
    /// Samples learnt before scoring.
    pub warmup: usize,
    /// Two samples further apart than this (seconds) bound a gap: no load is known there, so
    /// neither HPA gets a metric (each holds its replicas, as the HPA does when its metric
    /// fails) and nothing is scored until the next sample. 0: every interval is interpolated.
    pub max_gap_secs: u64,
}

/// The outcome of one policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PolicyOutcome {
    /// Pod-minutes during which load exceeded ready capacity.
    pub under_pod_minutes: f64,
    /// Pod-minutes paid for (running or starting).
    pub pod_minutes: f64,
    /// Pod-minutes of ready capacity beyond the load.
    pub over_pod_minutes: f64,
    /// Scale events.
    pub scale_events: u64,
    /// Largest replica count.
    pub max_replicas: u64,
}

/// Shadow mode: what the HPA got, and what it would have got.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ShadowOutcome {
    /// The HPA driven by the value served in shadow mode (the current load).
    pub served: PolicyOutcome,
    /// A second HPA driven by the value shadow mode reported it would serve.
    pub would_have: PolicyOutcome,
}

/// The policies on one series.
#[derive(Debug, Clone, Serialize)]
pub struct Replay {
    /// Minutes replayed (after the warm-up), gaps included.
    pub minutes: f64,
    /// Of those, minutes inside gaps (not scored).
    pub gap_minutes: f64,
    /// The current load drives the HPA.
    pub reactive: PolicyOutcome,
    /// Our served value drives the HPA.
    pub predictive: PolicyOutcome,
    /// Shadow mode.
    pub shadow: ShadowOutcome,
    /// The quantile served at the end (where the budget took it).
    pub final_quantile: f64,
    /// Share of the samples whose predictive value, served `lead` before, fell below them.
    pub under_share: Option<f64>,
    /// The capacity served above the load at the end, as a share of the load (what
    /// `extra_budget` is measured on; smoothed over the latest ~200 steps).
    pub extra_share: Option<f64>,
    /// 1 − predictive / reactive under-provisioned pod-minutes.
    pub under_reduction: f64,
    /// predictive / reactive pod-minutes − 1.
    pub extra_pod_minutes: f64,
}

/// The replay at one sample of the load (the first HPA sync after it arrived), for plotting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceStep {
    /// Sync time, Unix ms.
    pub t_ms: i64,
    /// Load now.
    pub load: f64,
    /// Pods the load needs now (load / capacity per pod).
    pub needed: f64,
    /// The forecast for `t_ms + lead`: median and the served quantile's band (NaN before the
    /// forecaster can tell).
    pub p50: f64,
    /// The 90 % quantile of that forecast.
    pub p90: f64,
    /// The 99 % quantile of that forecast.
    pub p99: f64,
    /// What the predictive policy served the HPA.
    pub served: f64,
    /// Ready pods under the reactive policy.
    pub reactive_ready: u64,
    /// Ready pods under the predictive policy.
    pub predictive_ready: u64,
}

struct Hpa {
    /// Times (s) at which each pod becomes ready, oldest first.
    pods: Vec<f64>,
    /// Recent recommendations (time s, replicas) for the scale-down window.
    recent: VecDeque<(f64, u64)>,
    out: PolicyOutcome,
}

impl Hpa {
    fn new(replicas: u64) -> Self {
        Self {
            pods: vec![f64::NEG_INFINITY; replicas as usize],
            recent: VecDeque::new(),
            out: PolicyOutcome::default(),
        }
    }

    fn sync(&mut self, t: f64, metric: f64, o: &ReplayOptions) {
        let current = self.pods.len() as u64;
        let ratio = metric / (current.max(1) as f64 * o.capacity_per_pod);
        let mut desired = if (ratio - 1.0).abs() <= o.tolerance {
            current
        } else {
            (metric / o.capacity_per_pod).ceil().max(0.0) as u64
        };
        desired = desired.clamp(o.min_replicas, o.max_replicas);
        self.recent.push_back((t, desired));
        while self
            .recent
            .front()
            .is_some_and(|&(at, _)| at < t - o.stabilisation_secs as f64)
        {
            self.recent.pop_front();
        }
        if desired < current {
            // Scale down only to the highest recommendation of the window.
            desired = self.recent.iter().map(|&(_, r)| r).max().unwrap_or(desired);
        }
        if desired > current {
            let ready = t + o.startup_secs as f64;
            self.pods
                .extend(std::iter::repeat_n(ready, (desired - current) as usize));
            self.out.scale_events += 1;
        } else if desired < current {
            // Pods still starting are removed first.
            self.pods.sort_by(|a, b| a.total_cmp(b));
            self.pods.truncate(desired as usize);
            self.out.scale_events += 1;
        }
        self.out.max_replicas = self.out.max_replicas.max(self.pods.len() as u64);
    }

    /// After a gap in the load: `replicas` ready pods and no recommendations (what was
    /// scaled before the gap says nothing of what follows); the outcome so far is kept.
    fn restart(&mut self, replicas: u64) {
        self.pods = vec![f64::NEG_INFINITY; replicas as usize];
        self.recent.clear();
    }

    fn ready(&self, t: f64) -> u64 {
        self.pods.iter().filter(|&&r| r <= t).count() as u64
    }

    fn account(&mut self, t: f64, load: f64, o: &ReplayOptions) {
        let minutes = o.sync_secs as f64 / 60.0;
        let ready = self.ready(t) as f64;
        let need = load / o.capacity_per_pod;
        self.out.under_pod_minutes += (need - ready).max(0.0) * minutes;
        self.out.over_pod_minutes += (ready - need).max(0.0) * minutes;
        self.out.pod_minutes += self.pods.len() as f64 * minutes;
    }
}

/// Replays `values` at `times` (ascending Unix ms) through both policies.
pub fn replay(times: &[i64], values: &[f64], cfg: ForecastConfig, o: ReplayOptions) -> Replay {
    replay_traced(times, values, cfg, o, None)
}

/// As [`replay`], also recording a [`TraceStep`] per sample after the warm-up into `trace`.
pub fn replay_traced(
    times: &[i64],
    values: &[f64],
    cfg: ForecastConfig,
    o: ReplayOptions,
    mut trace: Option<&mut Vec<TraceStep>>,
) -> Replay {
    let mut f = Forecaster::new(cfg);
    let n = times.len();
    let warm = o.warmup.min(n.saturating_sub(2));
    for i in 0..warm {
        f.update(times[i], values[i]);
    }
    let start = times[warm] as f64 / 1000.0;
    let end = times[n - 1] as f64 / 1000.0;
    let load_at = |t: f64, j: usize| {
        let (t0, t1) = (times[j] as f64 / 1000.0, times[j + 1] as f64 / 1000.0);
        let w = ((t - t0) / (t1 - t0)).clamp(0.0, 1.0);
        values[j] * (1.0 - w) + values[j + 1] * w
    };
    let replicas_for = |load: f64| {
        ((load / o.capacity_per_pod).ceil() as u64).clamp(o.min_replicas, o.max_replicas)
    };
    let initial = replicas_for(values[warm]);
    let (mut reactive, mut predictive) = (Hpa::new(initial), Hpa::new(initial));
    let (mut shadow, mut would) = (Hpa::new(initial), Hpa::new(initial));
    let policy = Policy {
        quantile: o.quantile,
        under_budget: o.under_budget,
        extra_budget: o.extra_budget,
        lead_ms: o.lead_secs as i64 * 1000,
        mode: ScalingMode::Predictive,
    };
    let shadow_policy = Policy {
        mode: ScalingMode::Shadow,
        ..policy
    };
    let (mut state, mut shadow_state) =
        (PolicyState::new(&policy), PolicyState::new(&shadow_policy));
    let mut next = warm; // next sample the forecaster learns
    let mut j = warm; // the interval holding t
    let mut t = start;
    let mut in_gap = false;
    let mut gap_minutes = 0.0;
    while t < end {
        let learnt = next;
        while next < n && times[next] as f64 / 1000.0 <= t {
            f.update(times[next], values[next]);
            // Each sample is a step: the policy scores what it served for it and notes what it
            // serves for the sample `lead` ahead (as `serve` does when a step completes).
            let (at, load) = (times[next], values[next]);
            let ahead = f.forecast_at(at + policy.lead_ms);
            let v = ahead.map(|fc| policy.predictive(&state, &fc, load));
            state.step(&policy, at, load, v);
            let v = ahead.map(|fc| shadow_policy.predictive(&shadow_state, &fc, load));
            shadow_state.step(&shadow_policy, at, load, v);
            next += 1;
        }
        let new_sample = next > learnt;
        while j + 2 < n && times[j + 1] as f64 / 1000.0 <= t {
            j += 1;
        }
        // (`t` lies in interval `j`.)
        if o.max_gap_secs > 0 && times[j + 1] - times[j] > o.max_gap_secs as i64 * 1000 {
            in_gap = true;
            gap_minutes += o.sync_secs as f64 / 60.0;
            t += o.sync_secs as f64;
            continue;
        }
        if std::mem::take(&mut in_gap) {
            // The load is back: every HPA restarts from the replicas it needs, as at the start.
            let pods = replicas_for(load_at(t, j));
            for h in [&mut reactive, &mut predictive, &mut shadow, &mut would] {
                h.restart(pods);
            }
        }
        let load = load_at(t, j);
        reactive.sync(t, load, &o);
        let lead_ms = ((t + o.lead_secs as f64) * 1000.0) as i64;
        let forecast = f.forecast_at(lead_ms);
        let served = match &forecast {
            Some(fc) => policy.predictive(&state, fc, load),
            None => load,
        };
        predictive.sync(t, served, &o);
        // Shadow mode serves the load; what it reports drives the counterfactual HPA.
        shadow.sync(t, load, &o);
        let would_serve = match &forecast {
            Some(fc) => shadow_policy.predictive(&shadow_state, fc, load),
            None => load,
        };
        would.sync(t, would_serve, &o);
        if let Some(trace) = trace.as_deref_mut().filter(|_| new_sample) {
            let q = |f: fn(&aiops_detect::forecast::Forecast) -> f64| {
                forecast.as_ref().map_or(f64::NAN, f)
            };
            trace.push(TraceStep {
                t_ms: (t * 1000.0) as i64,
                load,
                needed: load / o.capacity_per_pod,
                p50: q(|f| f.p50),
                p90: q(|f| f.p90),
                p99: q(|f| f.p99),
                served,
                reactive_ready: reactive.ready(t),
                predictive_ready: predictive.ready(t),
            });
        }
        reactive.account(t, load, &o);
        predictive.account(t, load, &o);
        shadow.account(t, load, &o);
        would.account(t, load, &o);
        t += o.sync_secs as f64;
    }
    let (r, p) = (reactive.out, predictive.out);
    Replay {
        minutes: (end - start) / 60.0,
        gap_minutes,
        reactive: r,
        predictive: p,
        shadow: ShadowOutcome {
            served: shadow.out,
            would_have: would.out,
        },
        final_quantile: state.quantile,
        under_share: state.under_share(),
        extra_share: state.extra_share(),
        under_reduction: if r.under_pod_minutes > 0.0 {
            1.0 - p.under_pod_minutes / r.under_pod_minutes
        } else {
            0.0
        },
        extra_pod_minutes: if r.pod_minutes > 0.0 {
            p.pod_minutes / r.pod_minutes - 1.0
        } else {
            0.0
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> ReplayOptions {
        ReplayOptions {
            capacity_per_pod: 10.0,
            startup_secs: 300,
            lead_secs: 300,
            quantile: 0.9,
            under_budget: None,
            extra_budget: None,
            sync_secs: 15,
            tolerance: 0.1,
            stabilisation_secs: 300,
            min_replicas: 1,
            max_replicas: 1000,
            warmup: 0,
            max_gap_secs: 0,
        }
    }

    #[test]
    fn a_flat_load_needs_no_scaling_and_hurts_nobody() {
        let times: Vec<i64> = (0..200).map(|i| i * 60_000).collect();
        let values = vec![95.0; 200];
        let r = replay(&times, &values, ForecastConfig::default(), opts());
        assert_eq!(r.reactive.scale_events, 0);
        assert_eq!(r.reactive.under_pod_minutes, 0.0);
        assert_eq!(r.reactive.max_replicas, 10);
        assert!((r.reactive.pod_minutes - 10.0 * r.minutes).abs() < 10.0 * 0.25 + 1e-9);
    }

    #[test]
    fn a_daily_ramp_hurts_reactive_more_than_predictive() {
        // Six days of a daily peak, one sample a minute.
        let times: Vec<i64> = (0..6 * 1440).map(|i| i * 60_000).collect();
        let values: Vec<f64> = times
            .iter()
            .map(|&t| {
                let h = (t % 86_400_000) as f64 / 3_600_000.0;
                50.0 + 400.0 * (std::f64::consts::PI * h / 24.0).sin().powi(6)
            })
            .collect();
        let r = replay(
            &times,
            &values,
            ForecastConfig::default(),
            ReplayOptions {
                warmup: 2 * 1440,
                ..opts()
            },
        );
        assert!(r.reactive.under_pod_minutes > 0.0, "{r:?}");
        // The HPA's 10 % tolerance still lets both lag a little on a rise.
        assert!(
            r.predictive.under_pod_minutes < 0.8 * r.reactive.under_pod_minutes,
            "{r:?}"
        );
        assert!(r.extra_pod_minutes < 0.1, "{r:?}");
    }

    fn daily_peaks(days: i64) -> (Vec<i64>, Vec<f64>) {
        let times: Vec<i64> = (0..days * 1440).map(|i| i * 60_000).collect();
        let values = times
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                let h = (t % 86_400_000) as f64 / 3_600_000.0;
                // A little deterministic noise so that forecasts miss sometimes.
                let noise = ((i as f64 * 12.9898).sin() * 43_758.545).fract() * 20.0;
                50.0 + 400.0 * (std::f64::consts::PI * h / 24.0).sin().powi(6) + noise
            })
            .collect();
        (times, values)
    }

    #[test]
    fn shadow_mode_never_steers_and_previews_predictive_exactly() {
        let (times, values) = daily_peaks(5);
        let o = ReplayOptions {
            warmup: 2 * 1440,
            under_budget: Some(0.1),
            extra_budget: None,
            ..opts()
        };
        let r = replay(&times, &values, ForecastConfig::default(), o);
        assert_eq!(r.shadow.served, r.reactive, "{r:?}");
        assert_eq!(r.shadow.would_have, r.predictive, "{r:?}");
        assert!(r.reactive.under_pod_minutes > r.predictive.under_pod_minutes);
    }

    #[test]
    fn a_budget_moves_the_quantile_toward_its_miss_rate() {
        let (times, values) = daily_peaks(8);
        let base = ReplayOptions {
            warmup: 2 * 1440,
            ..opts()
        };
        let tight = replay(
            &times,
            &values,
            ForecastConfig::default(),
            ReplayOptions {
                under_budget: Some(0.02),
                extra_budget: None,
                ..base
            },
        );
        let loose = replay(
            &times,
            &values,
            ForecastConfig::default(),
            ReplayOptions {
                under_budget: Some(0.4),
                extra_budget: None,
                ..base
            },
        );
        // A tight budget serves a higher quantile, misses less and pays more.
        assert!(
            tight.final_quantile > loose.final_quantile,
            "{tight:?} {loose:?}"
        );
        let (ts, ls) = (
            tight.under_share.expect("scored"),
            loose.under_share.expect("scored"),
        );
        assert!(ts < ls, "{ts} {ls}");
        assert!((ls - 0.4).abs() < 0.1, "{ls}");
        assert!(tight.predictive.pod_minutes > loose.predictive.pod_minutes);
        assert!(tight.predictive.under_pod_minutes <= loose.predictive.under_pod_minutes);
    }

    #[test]
    fn the_trace_has_a_step_per_sample_and_the_same_outcome() {
        let times: Vec<i64> = (0..3 * 1440).map(|i| i * 60_000).collect();
        let values: Vec<f64> = times
            .iter()
            .map(|&t| {
                100.0
                    + 80.0 * ((t % 86_400_000) as f64 / 86_400_000.0 * std::f64::consts::TAU).sin()
            })
            .collect();
        let o = ReplayOptions {
            warmup: 1440,
            ..opts()
        };
        let plain = replay(&times, &values, ForecastConfig::default(), o);
        let mut trace = Vec::new();
        let traced = replay_traced(
            &times,
            &values,
            ForecastConfig::default(),
            o,
            Some(&mut trace),
        );
        assert_eq!(plain.predictive.pod_minutes, traced.predictive.pod_minutes);
        // One step per sample the replay learnt (the first sync after it arrived).
        assert_eq!(trace.len(), times.len() - o.warmup - 1, "{}", trace.len());
        assert!(trace.windows(2).all(|w| w[0].t_ms < w[1].t_ms));
        let max = trace.iter().map(|s| s.predictive_ready).max();
        assert!(max <= Some(traced.predictive.max_replicas));
        for s in trace.iter().filter(|s| s.p50.is_finite()) {
            assert!(s.p50 <= s.p90 && s.p90 <= s.p99, "{s:?}");
            assert!(s.served >= s.load, "{s:?}");
            assert!((s.needed - s.load / 10.0).abs() < 1e-9);
        }
    }

    /// A ten-hour outage between a quiet hour and a busy one: nothing inside it is scored and
    /// every HPA restarts from what the load then needs; interpolating makes up a ramp the HPA
    /// chases for ten hours instead.
    #[test]
    fn a_gap_in_the_load_is_neither_scored_nor_made_up() {
        let minute = 60_000;
        let mut times: Vec<i64> = (0..60).map(|i| i * minute).collect();
        times.extend((0..60).map(|i| (60 + 600 + i) * minute));
        let values: Vec<f64> = (0..120)
            .map(|i| if i < 60 { 95.0 } else { 995.0 })
            .collect();
        let o = ReplayOptions {
            max_gap_secs: 180,
            ..opts()
        };
        let r = replay(&times, &values, ForecastConfig::default(), o);
        assert!((r.gap_minutes - 601.0).abs() <= 0.5, "{r:?}");
        // 10 pods for the first hour, 100 for the last: nobody short, nothing paid in the gap.
        assert_eq!(r.reactive.under_pod_minutes, 0.0, "{r:?}");
        let scored = r.minutes - r.gap_minutes;
        assert!(r.reactive.pod_minutes < 55.0 * scored + 1.0, "{r:?}");
        assert!(r.reactive.pod_minutes > 50.0 * scored - 1.0, "{r:?}");
        let made_up = replay(
            &times,
            &values,
            ForecastConfig::default(),
            ReplayOptions {
                max_gap_secs: 0,
                ..opts()
            },
        );
        assert_eq!(made_up.gap_minutes, 0.0);
        assert!(
            made_up.reactive.pod_minutes > 4.0 * r.reactive.pod_minutes,
            "{made_up:?}"
        );
        assert!(made_up.reactive.under_pod_minutes > 1000.0, "{made_up:?}");
    }
}
