//! A small microservice system, played for `aiops demo` and for tests.
//!
//! Services call each other along a fixed topology. Request rate follows a daily and weekly
//! cycle with noise; each service reports request and error counters, latency quantiles, CPU
//! seconds and memory, the way a Prometheus client library would. Faults injected into one
//! service — CPU hog, memory leak, added latency, errors — change its own metrics and reach its
//! callers: latency adds up along the call path, and a share of callee errors fail the caller.
//!
//! The simulator is deterministic for a seed and a sequence of tick times.

use std::f64::consts::PI;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use aiops_ingest::remote_write::{TimeSeries, WriteRequest};

/// A service of the simulated system.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// Its name (`service` label).
    pub name: &'static str,
    /// Indices of the services it calls, with calls per request.
    pub calls: Vec<(usize, f64)>,
    /// Requests per second from outside (0 for internal services) at the daily mean.
    pub external_rps: f64,
    /// Median latency of its own work, seconds.
    pub self_latency_s: f64,
    /// CPU seconds per request.
    pub cpu_per_request: f64,
    /// Cores it has.
    pub cores: f64,
    /// Resident memory at rest, bytes.
    pub memory_bytes: f64,
    /// Share of its requests that fail on their own.
    pub error_ratio: f64,
}

/// Kinds of injected faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Something else eats the service's CPU: utilisation rises, then latency through queueing.
    CpuHog,
    /// Memory grows steadily.
    MemoryLeak,
    /// Every request takes longer.
    Latency,
    /// A share of requests fail.
    Errors,
}

impl std::str::FromStr for FaultKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu_hog" | "cpu" => Ok(Self::CpuHog),
            "memory_leak" | "mem" => Ok(Self::MemoryLeak),
            "latency" | "delay" => Ok(Self::Latency),
            "errors" | "error" => Ok(Self::Errors),
            other => Err(format!(
                "unknown fault {other:?}; one of cpu_hog, memory_leak, latency, errors"
            )),
        }
    }
}

/// A fault in one service over a time window.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// Index of the service.
    pub service: usize,
    /// What goes wrong.
    pub kind: FaultKind,
    /// Start, Unix ms.
    pub start_ms: i64,
    /// End, Unix ms.
    pub end_ms: i64,
}

#[derive(Debug, Clone, Default)]
struct ServiceState {
    requests: f64,
    errors: f64,
    cpu_seconds: f64,
    leaked_bytes: f64,
}

/// The values of one service at one instant (before noise in counters).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ServiceSnapshot {
    /// Requests per second.
    pub rps: f64,
    /// Median latency, seconds.
    pub p50_s: f64,
    /// Share of failing requests.
    pub error_ratio: f64,
    /// CPU utilisation, 0..1 of its cores.
    pub cpu_util: f64,
}

/// The simulated system.
#[derive(Debug)]
pub struct Simulator {
    services: Vec<ServiceSpec>,
    faults: Vec<Fault>,
    state: Vec<ServiceState>,
    rng: StdRng,
    last_ms: Option<i64>,
    namespace: &'static str,
}

impl Simulator {
    /// The demo shop: frontend → {catalog, cart, orders}; orders → {payment, cart, db};
    /// catalog → db; cart → cache.
    pub fn demo(seed: u64) -> Self {
        let s = |name,
                 calls: Vec<(usize, f64)>,
                 external_rps,
                 self_latency_s,
                 cpu_per_request,
                 memory_mb: f64,
                 error_ratio| ServiceSpec {
            name,
            calls,
            external_rps,
            self_latency_s,
            cpu_per_request,
            cores: 2.0,
            memory_bytes: memory_mb * 1024.0 * 1024.0,
            error_ratio,
        };
        let services = vec![
            s(
                "frontend",
                vec![(1, 1.0), (2, 0.4), (3, 0.1)],
                120.0,
                0.010,
                0.002,
                300.0,
                0.001,
            ),
            s("catalog", vec![(5, 1.0)], 0.0, 0.008, 0.003, 500.0, 0.0005),
            s("cart", vec![(6, 2.0)], 0.0, 0.004, 0.002, 250.0, 0.0005),
            s(
                "orders",
                vec![(4, 1.0), (2, 1.0), (5, 2.0)],
                0.0,
                0.015,
                0.008,
                400.0,
                0.001,
            ),
            s("payment", vec![], 0.0, 0.080, 0.010, 200.0, 0.002),
            s("db", vec![], 0.0, 0.003, 0.004, 2048.0, 0.0001),
            s("cache", vec![], 0.0, 0.0005, 0.0005, 1024.0, 0.0),
        ];
        Self::new(services, seed)
    }

    /// A simulator over `services`; callees must come after their callers.
    pub fn new(services: Vec<ServiceSpec>, seed: u64) -> Self {
        let n = services.len();
        Self {
            services,
            faults: Vec::new(),
            state: vec![ServiceState::default(); n],
            rng: StdRng::seed_from_u64(seed),
            last_ms: None,
            namespace: "demo",
        }
    }

    /// The services.
    pub fn services(&self) -> &[ServiceSpec] {
        &self.services
    }

    /// Index of a service by name.
    pub fn service_index(&self, name: &str) -> Option<usize> {
        self.services.iter().position(|s| s.name == name)
    }

    /// Adds a fault.
    pub fn inject(&mut self, fault: Fault) {
        self.faults.push(fault);
    }

    fn fault_active(&self, service: usize, kind: FaultKind, t_ms: i64) -> Option<f64> {
        self.faults
            .iter()
            .find(|f| {
                f.service == service && f.kind == kind && (f.start_ms..f.end_ms).contains(&t_ms)
            })
            .map(|f| (t_ms - f.start_ms) as f64 / 1000.0)
    }

    fn gauss(&mut self) -> f64 {
        // Box–Muller; two uniforms in (0, 1].
        let u1: f64 = 1.0 - self.rng.random::<f64>();
        let u2: f64 = self.rng.random::<f64>();
        (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
    }

    /// Daily × weekly load factor at `t_ms`: peak mid-afternoon UTC, trough at night, weekends
    /// at 60 %.
    pub fn load_factor(t_ms: i64) -> f64 {
        let t = t_ms as f64 / 1000.0;
        let day = 86_400.0;
        let hour_phase = 2.0 * PI * (t.rem_euclid(day) / day - 0.375);
        let daily = 1.0 + 0.6 * hour_phase.sin() + 0.1 * (2.0 * hour_phase).sin();
        // 1970-01-01 was a Thursday: day 2 and 3 of the week (from Thursday) are Saturday, Sunday.
        let weekday = ((t / day).floor() as i64).rem_euclid(7);
        let weekly = if weekday == 2 || weekday == 3 {
            0.6
        } else {
            1.0
        };
        (daily * weekly).max(0.05)
    }

    /// Instantaneous values of every service at `t_ms`.
    pub fn snapshot(&mut self, t_ms: i64) -> Vec<ServiceSnapshot> {
        let n = self.services.len();
        let load = Self::load_factor(t_ms);
        let mut rps = vec![0.0; n];
        for i in 0..n {
            rps[i] += self.services[i].external_rps * load * (1.0 + 0.03 * self.gauss());
            rps[i] = rps[i].max(0.0);
            let calls = self.services[i].calls.clone();
            for (callee, per) in calls {
                rps[callee] += rps[i] * per;
            }
        }
        // Latency and errors bottom-up: callees first.
        let mut out = vec![ServiceSnapshot::default(); n];
        for i in (0..n).rev() {
            let spec = self.services[i].clone();
            let mut cpu_util = rps[i] * spec.cpu_per_request / spec.cores;
            if self.fault_active(i, FaultKind::CpuHog, t_ms).is_some() {
                cpu_util += 0.85;
            }
            let util = cpu_util.min(0.97);
            let queueing = 1.0 / (1.0 - util);
            let mut p50 = spec.self_latency_s * queueing;
            if self.fault_active(i, FaultKind::Latency, t_ms).is_some() {
                p50 += 0.25;
            }
            let mut err = spec.error_ratio;
            if self.fault_active(i, FaultKind::Errors, t_ms).is_some() {
                err += 0.2;
            }
            for &(callee, per) in &spec.calls {
                p50 += out[callee].p50_s * per;
                err += 0.8 * out[callee].error_ratio * per.min(1.0);
            }
            if let Some(secs) = self.fault_active(i, FaultKind::MemoryLeak, t_ms) {
                // A leak that eventually slows the garbage collector.
                p50 *= 1.0 + (secs / 1800.0).min(1.0);
            }
            out[i] = ServiceSnapshot {
                rps: rps[i],
                p50_s: p50 * (1.0 + 0.05 * self.gauss()).max(0.5),
                error_ratio: err.min(1.0),
                cpu_util: cpu_util.min(1.0),
            };
        }
        out
    }

    /// Advances to `t_ms` and returns one sample of every series, as Prometheus would scrape it.
    pub fn tick(&mut self, t_ms: i64) -> Vec<TimeSeries> {
        let dt = self
            .last_ms
            .map_or(15.0, |l| ((t_ms - l) as f64 / 1000.0).max(0.0));
        self.last_ms = Some(t_ms);
        let snaps = self.snapshot(t_ms);
        let mut out = Vec::with_capacity(snaps.len() * 8);
        for (i, snap) in snaps.iter().enumerate() {
            let spec = self.services[i].clone();
            let leak = self.fault_active(i, FaultKind::MemoryLeak, t_ms).is_some();
            let noise = self.gauss();
            let st = &mut self.state[i];
            st.requests += snap.rps * dt;
            st.errors += snap.rps * snap.error_ratio * dt;
            st.cpu_seconds += snap.cpu_util * spec.cores * dt;
            if leak {
                st.leaked_bytes += 2.0 * 1024.0 * 1024.0 * dt / 60.0;
            }
            let memory =
                spec.memory_bytes * (1.0 + 0.02 * noise) + st.leaked_bytes + snap.rps * 4096.0;
            let (requests, errors, cpu) = (st.requests.floor(), st.errors.floor(), st.cpu_seconds);
            let base = [
                ("namespace", self.namespace),
                ("service", spec.name),
                ("job", "demo"),
            ];
            let one = |name: &str, extra: Option<(&str, &str)>, v: f64| {
                TimeSeries::from_parts(
                    base.iter()
                        .copied()
                        .chain([("__name__", name)])
                        .chain(extra),
                    [(t_ms, v)],
                )
            };
            out.push(one("http_requests_total", None, requests));
            out.push(one("http_request_errors_total", None, errors));
            for (q, k) in [("0.5", 1.0), ("0.9", 2.2), ("0.99", 4.5)] {
                out.push(one(
                    "http_request_duration_seconds",
                    Some(("quantile", q)),
                    snap.p50_s * k,
                ));
            }
            out.push(one("process_cpu_seconds_total", None, cpu));
            out.push(one(
                "container_memory_working_set_bytes",
                None,
                memory.round(),
            ));
        }
        out
    }

    /// A remote_write request holding [`Simulator::tick`] at each of `times_ms` (ascending),
    /// samples of a series grouped together as Prometheus sends them.
    pub fn request(&mut self, times_ms: &[i64]) -> WriteRequest {
        let mut series: Vec<TimeSeries> = Vec::new();
        for &t in times_ms {
            let tick = self.tick(t);
            if series.is_empty() {
                series = tick;
            } else {
                for (acc, s) in series.iter_mut().zip(tick) {
                    acc.samples.extend(s.samples);
                }
            }
        }
        WriteRequest {
            timeseries: series,
            metadata: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_and_counters_monotonic() {
        let mut sim = Simulator::demo(1);
        let a = sim.tick(0);
        let b = sim.tick(15_000);
        for s in &a {
            assert!(s.labels.windows(2).all(|w| w[0].name < w[1].name));
        }
        assert!(
            metric(&b, "http_requests_total", "db", None)
                >= metric(&a, "http_requests_total", "db", None)
        );
    }

    #[test]
    fn load_has_daily_cycle() {
        let peak = (0..24)
            .map(|h| Simulator::load_factor(h * 3_600_000))
            .fold(0.0, f64::max);
        let trough = (0..24)
            .map(|h| Simulator::load_factor(h * 3_600_000))
            .fold(f64::MAX, f64::min);
        assert!(peak > 2.0 * trough, "peak {peak} trough {trough}");
    }

    #[test]
    fn latency_fault_in_payment_reaches_orders_and_frontend() {
        let t = 12 * 3_600_000;
        let mut calm = Simulator::demo(7);
        let before = calm.snapshot(t);
        let mut faulty = Simulator::demo(7);
        faulty.inject(Fault {
            service: 4,
            kind: FaultKind::Latency,
            start_ms: 0,
            end_ms: i64::MAX,
        });
        let after = faulty.snapshot(t);
        for (i, name) in [(4, "payment"), (3, "orders"), (0, "frontend")] {
            assert!(
                after[i].p50_s > before[i].p50_s + 0.02,
                "{name}: {} vs {}",
                after[i].p50_s,
                before[i].p50_s
            );
        }
        // Not upstream of payment: unaffected beyond noise.
        assert!((after[5].p50_s - before[5].p50_s).abs() < 0.01);
    }

    #[test]
    fn error_fault_propagates_to_callers() {
        let mut sim = Simulator::demo(3);
        sim.inject(Fault {
            service: 5,
            kind: FaultKind::Errors,
            start_ms: 0,
            end_ms: i64::MAX,
        });
        let s = sim.snapshot(0);
        assert!(s[5].error_ratio > 0.15);
        assert!(s[1].error_ratio > 0.1);
        assert!(s[0].error_ratio > 0.05);
    }

    fn metric(series: &[TimeSeries], name: &str, service: &str, quantile: Option<&str>) -> f64 {
        series
            .iter()
            .find(|s| {
                let has = |n: &str, v: &str| s.labels.iter().any(|l| l.name == n && l.value == v);
                has("__name__", name)
                    && has("service", service)
                    && quantile.is_none_or(|q| has("quantile", q))
            })
            .map(|s| s.samples[0].value)
            .expect("series exists")
    }
}
