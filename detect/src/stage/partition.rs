//! Kafka partitions' shares of the state: exported, removed and imported when a partition
//! changes hands.

use super::*;

/// A partition's share of the state: series, services, open events.
pub type PartitionShare = (
    Vec<(SeriesId, SeriesState)>,
    Vec<(String, ServiceState)>,
    Vec<AnomalyEvent>,
);

/// Which series and services belong to one partition (see [`DetectState::export_partition`]).
pub struct Ownership<'a> {
    /// Series by id.
    pub series: &'a dyn Fn(SeriesId) -> bool,
    /// Services by name (their multivariate models).
    pub service: &'a dyn Fn(&str) -> bool,
}

impl std::fmt::Debug for Ownership<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ownership")
    }
}

impl Ownership<'_> {
    /// A service's event goes with its service, a series' with its series.
    fn event(&self, e: &AnomalyEvent) -> bool {
        if e.metric == SERVICE_ANOMALY_METRIC {
            e.service.as_deref().is_some_and(|s| (self.service)(s))
        } else {
            (self.series)(e.series_id)
        }
    }
}

impl DetectState {
    /// A partition's share of the state, for a hand-over between workers: the series `owns`
    /// picks, the services `owns_service` picks (their multivariate models), and the events
    /// still open on either.
    pub fn export_partition(&self, owns: &Ownership<'_>) -> PartitionShare {
        let series = self
            .series
            .iter()
            .filter(|(id, _)| (owns.series)(**id))
            .map(|(id, st)| (*id, (**st).clone()))
            .collect();
        let services = self
            .services
            .iter()
            .filter(|(name, _)| (owns.service)(name))
            .map(|(name, st)| (name.clone(), st.clone()))
            .collect();
        let events = self
            .events
            .iter()
            .filter(|e| e.end_ms.is_none() && owns.event(e))
            .cloned()
            .collect();
        (series, services, events)
    }

    /// Forgets what `owns` picks (after handing it over).
    pub fn remove_partition(&mut self, owns: &Ownership<'_>) {
        self.series.retain(|id, _| !(owns.series)(*id));
        self.services.retain(|name, _| !(owns.service)(name));
    }

    /// Takes over what another worker handed over; series and services already here and
    /// further along are kept.
    pub fn import_partition(
        &mut self,
        series: Vec<(SeriesId, SeriesState)>,
        services: Vec<(String, ServiceState)>,
        events: Vec<AnomalyEvent>,
    ) {
        for (id, st) in series {
            match self.series.get(&id) {
                Some(mine) if mine.last_ms >= st.last_ms => {}
                _ => {
                    self.series.insert(id, Box::new(st));
                }
            }
        }
        for (name, st) in services {
            match self.services.get(&name) {
                Some(mine) if mine.step >= st.step => {}
                _ => {
                    self.services.insert(name, st);
                }
            }
        }
        for ev in events {
            if !self.events.iter().any(|e| e.id == ev.id) {
                self.events.push(ev);
            }
        }
    }
}
