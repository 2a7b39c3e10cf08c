//! Services scored as one vector (`crate::multi`): each series' latest value in its
//! service's row, a row scored when the step moves on, refits in line or on the fitting thread.

use super::*;

impl DetectState {
    /// From now on, services' models are refitted elsewhere: each refit due is queued for
    /// [`DetectState::take_fit_requests`] and installed by [`DetectState::apply_fits`].
    pub fn defer_fits(&mut self) {
        self.defer_fits = true;
    }

    /// The refits queued since the last call.
    pub fn take_fit_requests(&mut self) -> Vec<crate::fit::FitRequest> {
        std::mem::take(&mut self.fit_queue)
    }

    /// Installs fits made elsewhere (or lets a refit not made be asked for again).
    pub fn apply_fits(&mut self, done: Vec<crate::fit::FitDone>) {
        for d in done {
            if let Some(st) = self.services.get_mut(d.service.as_str()) {
                st.model.install_background(d.fitted, d.dims);
            }
        }
    }

    /// Records a series' scored value in its service's vector; when the step moves on, scores
    /// the finished step's vector as a whole.
    /// Returns the series' slot in the vector (or [`SLOT_NONE`]), the hint for next time.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn feed_service(
        &mut self,
        cfg: &DetectConfig,
        service: &str,
        id: SeriesId,
        hint: u16,
        catalog: &SeriesCatalog,
        ts: i64,
        value: f64,
    ) -> u16 {
        let sc = &cfg.services;
        let step_ms = sc.step_secs as i64 * 1000;
        let step = ts.div_euclid(step_ms);
        // One lookup per sample (the key compare is most of its cost), two on first sight.
        let st = match self.services.get_mut(service) {
            Some(st) => st,
            None => {
                self.services.insert(
                    service.to_owned(),
                    ServiceState {
                        members: Vec::new(),
                        metrics: Vec::new(),
                        latest: Vec::new(),
                        step,
                        model: ServiceModel::new(sc.model, 0),
                        score: 0.0,
                        open_event: None,
                        run: 0,
                        next_fit: None,
                    },
                );
                self.services.get_mut(service).expect("inserted above")
            }
        };
        let full = st.members.len() >= sc.max_metrics;
        let known = match hint {
            // Still full: still not a member (a vector only grows, until its service goes).
            SLOT_NONE if full => return SLOT_NONE,
            j if st.members.get(usize::from(j)) == Some(&id) => Some(usize::from(j)),
            _ => st.members.iter().position(|m| *m == id),
        };
        let slot = match known {
            Some(j) => j,
            None if !full => {
                // A new member changes the vector: the model starts over.
                let metric = catalog
                    .get(id)
                    .map(|m| m.metric.clone())
                    .unwrap_or_default();
                st.members.push(id);
                st.metrics.push(metric);
                st.latest.push((i64::MIN, f64::NAN));
                st.model = ServiceModel::new(sc.model, st.members.len());
                st.members.len() - 1
            }
            None => return SLOT_NONE,
        };
        let mut finished = None;
        if step > st.step && st.members.len() >= 2 {
            let stale_ms = i64::from(sc.stale_steps) * step_ms;
            let end = (st.step + 1) * step_ms;
            let row: Vec<f64> = st
                .latest
                .iter()
                .map(|&(t, v)| if end - t <= stale_ms { v } else { f64::NAN })
                .collect();
            let scored = if self.defer_fits {
                let scored = st.model.observe(&row);
                let now = std::time::Instant::now();
                if st.next_fit.is_none_or(|t| now >= t)
                    && let Some((rows, cfg)) = st.model.take_fit()
                {
                    st.next_fit = Some(now + std::time::Duration::from_secs(sc.refit_min_secs));
                    self.fit_queue.push(crate::fit::FitRequest {
                        service: service.to_owned(),
                        dims: st.model.dims(),
                        rows,
                        cfg,
                    });
                }
                scored
            } else {
                st.model.update(&row)
            };
            st.score = scored.score;
            finished = Some((st.step * step_ms, scored, st.open_event.take()));
            st.step = step;
        }
        st.step = st.step.max(step);
        st.latest[slot] = (ts, value);
        if let Some((at, scored, open)) = finished {
            self.service_scored(cfg, service, at, scored, open);
        }
        // max_metrics is at most 1024: every slot fits.
        slot as u16
    }

    pub(super) fn service_scored(
        &mut self,
        cfg: &DetectConfig,
        service: &str,
        at: i64,
        m: MultiScored,
        open: Option<String>,
    ) {
        let Some(st) = self.services.get_mut(service) else {
            return;
        };
        st.run = if m.score >= cfg.event_score {
            st.run + 1
        } else {
            0
        };
        let sustained = st.run >= cfg.services.sustain_steps.max(1);
        for o in &mut self.outputs {
            o.push_service(service, at, m.score);
        }
        let top = m
            .top_metric
            .and_then(|j| st.metrics.get(j))
            .cloned()
            .unwrap_or_default();
        let labels = vec![
            ("service".to_owned(), service.to_owned()),
            ("top_metric".to_owned(), top),
        ];
        let meta = aiops_models::SeriesMeta::new(
            aiops_models::Source::Prometheus,
            SERVICE_ANOMALY_METRIC,
            [("service".to_owned(), service.to_owned())],
        );
        // Observed: the squared prediction error per metric; expected: 0 (on the model), band:
        // about one standard deviation per metric.
        let s = Scored {
            score: if sustained { m.score } else { 0.0 },
            rank_score: m.score,
            p_value: 1.0,
            alarm: sustained && m.score >= cfg.event_score,
            reason: Some(AlarmReason::Service).filter(|_| sustained && m.score >= cfg.event_score),
            counted: false,
            held_out: false,
            raw: m.score,
            expected: 0.0,
            lower: 0.0,
            upper: 1.0,
        };
        let before = open.clone();
        let opened = self.track_event(cfg, open, at, &s, m.spe, || AnomalyEvent {
            id: format!("{}-{at}", meta.id),
            series_id: meta.id,
            metric: SERVICE_ANOMALY_METRIC.to_owned(),
            service: Some(service.to_owned()),
            labels,
            start_ms: at,
            peak_ms: at,
            last_ms: at,
            end_ms: None,
            score: m.score,
            observed: m.spe,
            expected: 0.0,
            lower: 0.0,
            upper: 1.0,
            p_value: 1.0,
            reason: s.reason,
        });
        // A service alarms once per event (its score stays above the bar while sustained).
        if opened.is_some() && opened != before {
            self.published.counters.alarm(AlarmReason::Service);
        }
        if let Some(st) = self.services.get_mut(service) {
            st.open_event = opened;
        }
    }
}
