//! The service topology, when it is known: call edges (caller → callee) from the config, from a
//! case's `graph.csv`, or learned from service-mesh series that carry source and destination
//! labels. A fault shows at the faulty service and at everything that calls it, so with a
//! graph the ranking walks from the anomalous callers down to the anomalous callees
//! (rca.md §4.3's takeaway: a random walk over a real topology, seeded by the robust scores).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::kind::{MetricKind, metric_kind};
use crate::{Direction, MetricCandidate, ServiceCandidate};

/// One call edge.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    /// The calling service.
    pub caller: String,
    /// The called service.
    pub callee: String,
}

/// A directed call graph.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallGraph {
    callees: BTreeMap<String, BTreeSet<String>>,
}

/// Label pairs that name the two ends of a call in service-mesh metrics (Istio, Linkerd,
/// OpenTelemetry's service graph connector, Kiali), caller first.
pub const MESH_LABELS: [(&str, &str); 5] = [
    ("source_workload", "destination_workload"),
    ("source_app", "destination_app"),
    ("source_service", "destination_service"),
    ("client", "server"),
    ("deployment", "dst_deployment"),
];

impl CallGraph {
    /// A graph from edges (self-calls are dropped).
    pub fn new(edges: impl IntoIterator<Item = Edge>) -> Self {
        let mut g = Self::default();
        for e in edges {
            g.add(&e.caller, &e.callee);
        }
        g
    }

    /// Adds one edge (a self-call is ignored).
    pub fn add(&mut self, caller: &str, callee: &str) {
        if caller != callee && !caller.is_empty() && !callee.is_empty() {
            self.callees
                .entry(caller.to_owned())
                .or_default()
                .insert(callee.to_owned());
        }
    }

    /// Adds the edge a mesh series' labels describe, if they name both ends.
    pub fn learn_from_labels<'a>(
        &mut self,
        labels: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    ) -> bool {
        let get = |k: &str| labels.clone().find(|&(n, _)| n == k).map(|(_, v)| v);
        for (src, dst) in MESH_LABELS {
            if let (Some(a), Some(b)) = (get(src), get(dst)) {
                self.add(a, b);
                return true;
            }
        }
        false
    }

    /// True when there is no edge.
    pub fn is_empty(&self) -> bool {
        self.callees.is_empty()
    }

    /// Number of edges.
    pub fn edges(&self) -> usize {
        self.callees.values().map(BTreeSet::len).sum()
    }

    /// Services `service` calls.
    pub fn callees(&self, service: &str) -> impl Iterator<Item = &str> {
        self.callees
            .get(service)
            .into_iter()
            .flat_map(|s| s.iter().map(String::as_str))
    }

    /// `service` and everything it calls, directly or not.
    pub fn reachable_from(&self, service: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::from([service.to_owned()]);
        let mut stack = vec![service.to_owned()];
        while let Some(v) = stack.pop() {
            for c in self.callees(&v) {
                if seen.insert(c.to_owned()) {
                    stack.push(c.to_owned());
                }
            }
        }
        seen
    }

    /// The main entry point: of the services nobody calls, the one that reaches the most
    /// (ties: by name). Where no symptom is named, the user-facing SLO is assumed to sit there.
    pub fn main_entry(&self) -> Option<String> {
        let called: BTreeSet<&str> = self
            .callees
            .values()
            .flatten()
            .map(String::as_str)
            .collect();
        self.callees
            .keys()
            .filter(|k| !called.contains(k.as_str()))
            .map(|k| (self.reachable_from(k).len(), k))
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(a.1)))
            .map(|(_, k)| k.clone())
    }

    /// The path of calls from `from` to `to` (both included), shortest first, if any.
    pub fn path(&self, from: &str, to: &str) -> Option<Vec<String>> {
        let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([from]);
        let mut seen = BTreeSet::from([from]);
        while let Some(v) = queue.pop_front() {
            if v == to {
                let mut path = vec![to.to_owned()];
                let mut cur = to;
                while let Some(&p) = prev.get(cur) {
                    path.push(p.to_owned());
                    cur = p;
                }
                path.reverse();
                return Some(path);
            }
            for c in self.callees(v) {
                if seen.insert(c) {
                    prev.insert(c, v);
                    queue.push_back(c);
                }
            }
        }
        None
    }

    /// Re-ranks services with the topology: a random walk that starts at each service in
    /// proportion to its change score and, from a service, follows its calls to callees that
    /// changed at least as much (in proportion to their scores) or stays (in proportion to its
    /// own). Mass collects at the most-changed service whose callees changed less — the deepest
    /// point of the fault.
    /// Services the graph does not know keep their scores as they are. Ranks, confidences and
    /// explanations are rewritten; the evidence is kept.
    ///
    /// With a `symptom` service, the services it does not reach through its calls cannot have
    /// caused it: they are ranked after those it does, in their own order.
    pub fn rerank(
        &self,
        services: &[ServiceCandidate],
        symptom: Option<&str>,
    ) -> Vec<ServiceCandidate> {
        if self.is_empty() || services.is_empty() {
            return services.to_vec();
        }
        if let Some(symptom) = symptom {
            let reach = self.reachable_from(symptom);
            let (inside, outside): (Vec<_>, Vec<_>) = services
                .iter()
                .cloned()
                .partition(|s| reach.contains(&s.service));
            if !inside.is_empty() {
                let mut out = self.rerank(&inside, None);
                out.extend(outside);
                for (i, s) in out.iter_mut().enumerate() {
                    s.rank = i + 1;
                }
                return out;
            }
        }
        let index: BTreeMap<&str, usize> = services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.service.as_str(), i))
            .collect();
        // Scores on a log scale: a zero-spread series can score in the thousands.
        let weight: Vec<f64> = services
            .iter()
            .map(|s| s.evidence.score.max(0.0).ln_1p())
            .collect();
        let total: f64 = weight.iter().sum();
        if total <= 0.0 {
            return services.to_vec();
        }
        let teleport: Vec<f64> = weight.iter().map(|w| w / total).collect();
        // Transitions: from i to each changed callee j (weight w_j) and to itself (w_i).
        let out: Vec<Vec<(usize, f64)>> = services
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut t: Vec<(usize, f64)> = self
                    .callees(&s.service)
                    .filter_map(|c| index.get(c).map(|&j| (j, weight[j])))
                    // Blame moves only to a callee that changed at least as much — or whose
                    // latency rose by most of what its caller's did: a caller's time includes
                    // its callee's, so the caller's rise is the callee's, measured against a
                    // quieter baseline (more spreads) rather than a larger change.
                    .filter(|&(j, w)| {
                        w > 0.0 && (w >= weight[i] || explains(&services[j].evidence, &s.evidence))
                    })
                    .collect();
                t.push((i, weight[i].max(f64::MIN_POSITIVE)));
                let sum: f64 = t.iter().map(|(_, w)| w).sum();
                t.iter_mut().for_each(|(_, w)| *w /= sum);
                t
            })
            .collect();
        const DAMPING: f64 = 0.85;
        let mut p = teleport.clone();
        for _ in 0..100 {
            let mut next: Vec<f64> = teleport.iter().map(|t| (1.0 - DAMPING) * t).collect();
            for (i, t) in out.iter().enumerate() {
                for &(j, w) in t {
                    next[j] += DAMPING * p[i] * w;
                }
            }
            let delta: f64 = next.iter().zip(&p).map(|(a, b)| (a - b).abs()).sum();
            p = next;
            if delta < 1e-12 {
                break;
            }
        }
        let mut order: Vec<usize> = (0..services.len()).collect();
        order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
        let mut position = vec![0; services.len()];
        for (r, &i) in order.iter().enumerate() {
            position[i] = r;
        }
        // A caller whose latency rise a callee ranked above it explains is that callee's
        // evidence, not a rival's.
        let mut explained = vec![false; services.len()];
        let mut absorbed = vec![0.0f64; services.len()];
        for (i, s) in services.iter().enumerate() {
            for (j, callee) in services.iter().enumerate() {
                let calls = self.callees(&s.service).any(|c| c == callee.service);
                if calls && position[j] < position[i] && explains(&callee.evidence, &s.evidence) {
                    explained[i] = true;
                    absorbed[j] = absorbed[j].max(s.evidence.score);
                }
            }
        }
        order
            .iter()
            .enumerate()
            .map(|(r, &i)| {
                let mut s = services[i].clone();
                s.rank = r + 1;
                s.explained = explained[i];
                s.absorbed = absorbed[i];
                let callers: Vec<&str> = services
                    .iter()
                    .filter(|c| c.evidence.score >= 3.0)
                    .filter(|c| self.callees(&c.service).any(|x| x == s.service))
                    .map(|c| c.service.as_str())
                    .collect();
                if !callers.is_empty() {
                    s.explanation = format!(
                        "{} Its callers {} changed too.",
                        s.explanation,
                        callers.join(", ")
                    );
                }
                s
            })
            .collect()
    }
}

/// Whether the callee's latency rise (in its own units) is at least half its caller's: both
/// evidence metrics are latencies that went up.
fn explains(callee: &MetricCandidate, caller: &MetricCandidate) -> bool {
    let latency_up = |m: &MetricCandidate| {
        m.direction == Direction::Up
            && metric_kind(&m.service, &m.metric) == MetricKind::Latency
            && m.peak > m.baseline
    };
    latency_up(callee)
        && latency_up(caller)
        && callee.peak - callee.baseline >= 0.5 * (caller.peak - caller.baseline)
}

impl<'a> FromIterator<(&'a str, &'a str)> for CallGraph {
    /// A graph of `(caller, callee)` edges.
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(edges: I) -> Self {
        let mut g = Self::default();
        for (a, b) in edges {
            g.add(a, b);
        }
        g
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Direction, MetricCandidate};

    /// A latency that rose by `score` spreads of 1 s.
    fn cand(service: &str, score: f64) -> ServiceCandidate {
        rose(service, score, score)
    }

    /// A latency that rose by `rise` seconds, `score` spreads.
    fn rose(service: &str, score: f64, rise: f64) -> ServiceCandidate {
        ServiceCandidate {
            rank: 0,
            service: service.to_owned(),
            confidence: 0.0,
            evidence: MetricCandidate {
                rank: 0,
                service: service.to_owned(),
                metric: format!("{service}_latency"),
                score,
                direction: Direction::Up,
                onset_s: 0,
                peak: 0.1 + rise,
                peak_s: 0,
                baseline: 0.1,
                spread: rise / score,
                garbage: 0,
            },
            fault_kind: crate::kind::FaultKind::Latency,
            explanation: format!("{service} changed."),
            explained: false,
            absorbed: 0.0,
        }
    }

    #[test]
    fn the_walk_moves_blame_from_callers_to_the_changed_callee() {
        // frontend → search → table; search is slow, so frontend is slow too; an unrelated
        // batch job moved a little more than search did.
        let g: CallGraph = [
            ("frontend", "search"),
            ("search", "table"),
            ("frontend", "payments"),
        ]
        .into_iter()
        .collect();
        assert_eq!(g.edges(), 3);
        let ranked = vec![
            cand("batch", 50.0),
            cand("search", 45.0),
            cand("frontend", 30.0),
            cand("payments", 2.0),
            cand("table", 0.5),
        ];
        let r = g.rerank(&ranked, None);
        assert_eq!(r[0].service, "search", "{r:?}");
        assert_eq!(r[0].rank, 1);
        assert!(
            r[0].explanation.contains("frontend"),
            "{}",
            r[0].explanation
        );
        // Named as the symptom, frontend cannot be caused by what it does not call.
        let r = g.rerank(&ranked, Some("frontend"));
        assert_eq!(r.last().map(|c| c.service.as_str()), Some("batch"), "{r:?}");
        assert_eq!(g.main_entry().as_deref(), Some("frontend"));
        assert_eq!(
            g.path("frontend", "table"),
            Some(vec!["frontend".into(), "search".into(), "table".into()])
        );
        assert_eq!(g.path("table", "frontend"), None);
        // Without a graph the order stands.
        assert_eq!(
            CallGraph::default().rerank(&ranked, None)[0].service,
            "batch"
        );
    }

    #[test]
    fn a_callee_whose_latency_rose_by_most_of_its_callers_rise_takes_the_blame() {
        // gateway → function: the function sleeps 0.5 s more, so the gateway takes 0.5 s more
        // too — many more spreads of its quieter baseline. An unrelated job moved 20 spreads.
        let g: CallGraph = [("gateway", "function")].into_iter().collect();
        let ranked = vec![
            rose("gateway", 120.0, 0.53),
            rose("function", 60.0, 0.52),
            rose("job", 20.0, 0.05),
        ];
        let r = g.rerank(&ranked, None);
        assert_eq!(r[0].service, "function", "{r:?}");
        // The gateway's rise is the function's evidence, not a rival's: the function's
        // confidence counts it, the gateway's is not set against it.
        let gateway = r.iter().find(|c| c.service == "gateway").expect("gateway");
        assert!(gateway.explained && !r[0].explained, "{r:?}");
        assert_eq!(r[0].absorbed, 120.0);
        let c = crate::analyse::confidences(&r);
        assert!((c[0] - 121.0 / (5.0 + 120.0 + 20.0)).abs() < 1e-9, "{c:?}");
        // A callee that took a small part of the caller's extra time does not.
        let ranked = vec![rose("gateway", 120.0, 0.53), rose("function", 60.0, 0.2)];
        assert_eq!(g.rerank(&ranked, None)[0].service, "gateway");
        // Nor does one whose evidence is not a latency (requests, errors).
        let mut busy = rose("function", 60.0, 0.52);
        busy.evidence.metric = "function_requests".into();
        let ranked = vec![rose("gateway", 120.0, 0.53), busy];
        assert_eq!(g.rerank(&ranked, None)[0].service, "gateway");
    }

    #[test]
    fn mesh_labels_teach_edges() {
        let mut g = CallGraph::default();
        let l = |a: &str, b: &str| {
            vec![
                ("source_workload".to_owned(), a.to_owned()),
                ("destination_workload".to_owned(), b.to_owned()),
            ]
        };
        let pairs = l("frontend", "carts");
        assert!(g.learn_from_labels(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))));
        assert!(!g.learn_from_labels([("job", "x")].into_iter()));
        assert_eq!(g.callees("frontend").collect::<Vec<_>>(), ["carts"]);
    }
}
