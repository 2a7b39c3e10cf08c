//! Scoring a batch: each series' samples in order through its detector (counters as rates or
//! counts), first sight (trained profile, warm-up from history), and what follows a score.

use super::*;

impl DetectState {
    pub(super) fn process_inner(
        &mut self,
        cfg: &DetectConfig,
        batch: &SampleBatch,
        catalog: &SeriesCatalog,
        warm: Warm<'_>,
        history: &dyn Fn(SeriesId, i64, i64) -> Vec<(i64, f64)>,
    ) {
        let (ids, ts, vs) = (batch.series_ids(), batch.timestamps(), batch.values());
        self.published
            .counters
            .received
            .fetch_add(batch.len() as u64, Relaxed);
        // Series this batch announced were not in the catalog when it was decoded: the archive
        // holds nothing older of them.
        let fresh: HashSet<SeriesId, std::hash::BuildHasherDefault<IdHasher>> =
            batch.new_series.iter().map(|m| m.id).collect();
        // A batch holds series one after another; scaling sums series per step, so it takes
        // the batch's samples in time order.
        let mut scaling_samples = Vec::new();
        // A batch holds a series' samples one after another (a remote_write body does): the
        // series' state is taken out of the map once per run, not looked up per sample.
        for run in aiops_models::series_runs(ids) {
            let (start, end) = (run.start, run.end);
            let id = SeriesId(ids[start]);
            // The next run's state comes into cache while this run is scored.
            if let Some(next) = ids.get(end).and_then(|&n| self.series.get(&SeriesId(n))) {
                crate::prefetch::prefetch::<SeriesState>(next);
            }
            let mut st = match self.series.remove(&id) {
                Some(st) => st,
                None => Box::new(self.first_sight(
                    cfg,
                    id,
                    ts[start],
                    fresh.contains(&id),
                    catalog,
                    &warm,
                )),
            };
            let mut run_meta = None;
            for i in start..end {
                if ts[i] <= st.last_ms {
                    // Duplicates from retried writes, or late samples: already scored.
                    continue;
                }
                let last_ms = std::mem::replace(&mut st.last_ms, ts[i]);
                if !st.tuned {
                    st.tuned = true;
                    if !cfg.sensitivity_overrides.is_empty() {
                        let meta = catalog.get(id);
                        st.detector.set_config(cfg.detector_for(meta.as_deref()));
                    }
                }
                let counter = st.is_counter.then_some(&mut st.counter_prev);
                let Some((value, s)) =
                    score_reading(&mut st.detector, counter, last_ms, (ts[i], vs[i]))
                else {
                    continue;
                };
                if !self.outputs.is_empty() {
                    self.derive(catalog, &mut st, &mut run_meta, id, ts[i], &s);
                }
                st.score = s.score;
                st.rank_score = s.rank_score;
                if !cfg.scaling.targets.is_empty()
                    && *st.scaling_member.get_or_insert_with(|| {
                        self.scaling.lock().is_member(&cfg.scaling, id, catalog)
                    })
                {
                    scaling_samples.push((ts[i], id, value));
                }
                self.scored += 1;
                self.after_score(cfg, catalog, &mut st, id, ts[i], value, &s, true);
            }
            self.series.insert(id, st);
        }
        self.scored_samples(cfg, catalog, scaling_samples, history);
        for o in &mut self.outputs {
            o.flush();
        }
    }

    /// Buffers a scored sample for the outputs that write this series (decided on its first
    /// sample; its meta looked up once per run).
    fn derive(
        &mut self,
        catalog: &SeriesCatalog,
        st: &mut SeriesState,
        run_meta: &mut Option<Option<Arc<aiops_models::SeriesMeta>>>,
        id: SeriesId,
        ts: i64,
        s: &crate::Scored,
    ) {
        let meta = run_meta.get_or_insert_with(|| catalog.get(id));
        let Some(meta) = meta.as_deref() else {
            return;
        };
        let mask = *st.output_mask.get_or_insert_with(|| {
            self.outputs
                .iter_mut()
                .enumerate()
                .take(8)
                .fold(0u8, |m, (i, o)| if o.admit(meta) { m | 1 << i } else { m })
        });
        for (i, o) in self.outputs.iter_mut().enumerate().take(8) {
            if mask & (1 << i) != 0 {
                o.push(meta, ts, s);
            }
        }
    }

    /// A first-seen series' state; warmed now, queued, or cold.
    pub(super) fn first_sight(
        &mut self,
        cfg: &DetectConfig,
        id: SeriesId,
        ts: i64,
        fresh: bool,
        catalog: &SeriesCatalog,
        warm: &Warm<'_>,
    ) -> SeriesState {
        let trained = self.profiles.remove(&id.0);
        // An event left open by a crash before the last checkpoint is still this series' open
        // event: it extends or closes like any other.
        let open_event = self
            .events
            .iter()
            .rev()
            .find(|e| e.series_id == id && e.end_ms.is_none())
            .map(|e| e.id.clone());
        let is_counter = catalog.get(id).is_some_and(|m| is_counter(&m.metric));
        // A trained detector has seen its history already; a series new to the archive has none.
        let warm_wanted = cfg.warm_start_secs > 0 && trained.is_none() && !fresh;
        if fresh {
            self.published.counters.fresh.fetch_add(1, Relaxed);
        }
        let mut st = SeriesState {
            detector: trained.unwrap_or_else(|| Detector::new(cfg.detector)),
            score: 0.0,
            rank_score: 0.0,
            last_ms: i64::MIN,
            open_event,
            counter_prev: None,
            is_counter,
            service: None,
            warming: false,
            scaling_member: None,
            output_mask: None,
            service_slot: SLOT_UNKNOWN,
            tuned: false,
        };
        if !warm_wanted {
            return st;
        }
        let from = ts - cfg.warm_start_secs as i64 * 1000;
        match warm {
            Warm::Now(history) => {
                for (t, v) in history(id, from, ts - 1) {
                    crate::warm::learn(
                        &mut st.detector,
                        &mut st.last_ms,
                        &mut st.counter_prev,
                        is_counter,
                        t,
                        v,
                    );
                }
            }
            Warm::Queue if self.warm_queue.len() < cfg.warm_queue_max => {
                st.warming = true;
                self.warm_queue.push_back(WarmRequest {
                    id,
                    from_ms: from,
                    live_from_ms: ts,
                    is_counter,
                });
            }
            Warm::Queue => {
                self.published.counters.warm_skipped.fetch_add(1, Relaxed);
            }
        }
        st
    }

    /// Hands a batch's scored samples to the scaling targets (or, on Kafka, to the load feed).
    pub(super) fn scored_samples(
        &mut self,
        cfg: &DetectConfig,
        catalog: &SeriesCatalog,
        mut samples: Vec<(i64, SeriesId, f64)>,
        history: &dyn Fn(SeriesId, i64, i64) -> Vec<(i64, f64)>,
    ) {
        if samples.is_empty() {
            return;
        }
        samples.sort_by_key(|&(t, _, _)| t);
        if let Some(out) = &mut self.load_out {
            let mut sc = self.scaling.lock();
            for (t, id, v) in samples {
                for target in sc.member_of(&cfg.scaling, id, catalog) {
                    out.push(crate::scaling::LoadSample {
                        target,
                        series: id,
                        ts_ms: t,
                        value: v,
                    });
                }
            }
            return;
        }
        // A target seen for the first time is warmed from its members' history before the
        // lock is taken: readers of served values never wait for that read.
        let warmed = crate::scaling::ScalingState::warm_new_targets(
            &self.scaling,
            &cfg.scaling,
            catalog,
            &samples,
            history,
        );
        let mut sc = self.scaling.lock();
        sc.insert_targets(warmed);
        for (t, id, v) in samples {
            sc.observe(&cfg.scaling, catalog, id, t, v);
        }
    }

    /// What follows a series' score: its event opens, extends or closes, and (with `services`)
    /// its service's vector takes the value.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn after_score(
        &mut self,
        cfg: &DetectConfig,
        catalog: &SeriesCatalog,
        st: &mut SeriesState,
        id: SeriesId,
        ts: i64,
        value: f64,
        s: &Scored,
        services: bool,
    ) {
        // The series is out of the map while it is scored: its event is tracked only when one
        // is open or the score reaches the event score (almost never), its service vector fed
        // through a slot hint.
        if st.service.is_none() {
            // One shared name per service, not one string per series.
            let name = catalog.get(id).as_deref().and_then(service_of);
            st.service = Some(name.map(|n| match self.service_names.get(n.as_str()) {
                Some(a) => a.clone(),
                None => {
                    let a: Arc<str> = Arc::from(n);
                    self.service_names.insert(a.clone());
                    a
                }
            }));
        }
        let service = st.service.as_ref().and_then(|s| s.as_ref());
        if let Some(reason) = s.reason {
            self.published.counters.alarm(reason);
        }
        if st.open_event.is_some() || s.score >= cfg.event_score {
            let open = st.open_event.take();
            st.open_event = self.track_event(cfg, open, ts, s, value, || {
                let meta = catalog.get(id);
                AnomalyEvent {
                    id: format!("{id}-{ts}"),
                    series_id: id,
                    metric: meta.as_ref().map(|m| m.metric.clone()).unwrap_or_default(),
                    service: service.map(|s| s.to_string()),
                    labels: meta.as_ref().map(|m| m.labels.to_vec()).unwrap_or_default(),
                    start_ms: ts,
                    peak_ms: ts,
                    last_ms: ts,
                    end_ms: None,
                    score: s.score,
                    observed: value,
                    expected: s.expected,
                    lower: s.lower,
                    upper: s.upper,
                    p_value: s.p_value,
                    reason: s.reason,
                }
            });
        }
        if services
            && cfg.services.enabled
            && let Some(service) = st.service.as_ref().and_then(|s| s.as_ref())
        {
            // A series of few events per sample is watched by its count's own tail: in the
            // service's standardised vector its quantised steps (one error, then none) would
            // read as the largest deviations there are.
            let fed = if s.counted { f64::NAN } else { value };
            st.service_slot =
                self.feed_service(cfg, service, id, st.service_slot, catalog, ts, fed);
        }
    }
}
