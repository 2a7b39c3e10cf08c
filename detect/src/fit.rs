//! Refitting services' multivariate models on a thread of their own: the scoring thread
//! paces the whole pipeline, and a PCA of a service's recent rows (a covariance and its
//! eigenvectors) costs as much as scoring thousands of samples. The scoring thread hands the
//! rows over ([`crate::multi::ServiceModel::take_fit`]), goes on with the current fit, and
//! installs the new one when it comes back
//! ([`crate::multi::ServiceModel::install_background`]).

use std::sync::mpsc;

use ndarray::Array2;

use crate::multi::{Fitted, MultiConfig};

/// Fits waiting for the fitting thread at most; beyond, a service asks again at its next row.
const QUEUE: usize = 64;

/// One service's rows to fit.
#[derive(Debug)]
pub struct FitRequest {
    /// The service.
    pub service: String,
    /// Metrics per row when asked (a model that started over since ignores the answer).
    pub dims: usize,
    /// The rows, oldest first.
    pub rows: Array2<f64>,
    /// The model's parameters.
    pub cfg: MultiConfig,
}

/// A fit made, or not made (`fitted: None`: the fitting thread was busy).
#[derive(Debug)]
pub struct FitDone {
    /// The service.
    pub service: String,
    /// Metrics per row of the fitted rows.
    pub dims: usize,
    /// The fit (`Some(None)`: too few usable rows), `None` when it was not made.
    pub fitted: Option<Option<Fitted>>,
}

/// The fitting thread: requests in, fits out. Stops when the request side is dropped.
#[derive(Debug)]
pub struct Fitter {
    tx: mpsc::SyncSender<FitRequest>,
    rx: mpsc::Receiver<FitDone>,
    thread: std::thread::JoinHandle<()>,
}

impl Fitter {
    /// Starts the thread.
    pub fn spawn() -> Self {
        let (tx, jobs) = mpsc::sync_channel::<FitRequest>(QUEUE);
        let (done, rx) = mpsc::channel::<FitDone>();
        let thread = std::thread::Builder::new()
            .name("aiops-fit".into())
            .spawn(move || {
                for req in jobs {
                    let fitted = Fitted::fit(&req.rows, &req.cfg);
                    let out = FitDone {
                        service: req.service,
                        dims: req.dims,
                        fitted: Some(fitted),
                    };
                    if done.send(out).is_err() {
                        break;
                    }
                }
            })
            .expect("spawning a thread only fails when the OS is out of resources");
        Self { tx, rx, thread }
    }

    /// Hands `reqs` over; those the queue has no room for come back as not made.
    pub fn submit(&self, reqs: Vec<FitRequest>) -> Vec<FitDone> {
        let mut refused = Vec::new();
        for req in reqs {
            if let Err(mpsc::TrySendError::Full(req) | mpsc::TrySendError::Disconnected(req)) =
                self.tx.try_send(req)
            {
                refused.push(FitDone {
                    service: req.service,
                    dims: req.dims,
                    fitted: None,
                });
            }
        }
        refused
    }

    /// Fits made since the last call.
    pub fn finished(&self) -> Vec<FitDone> {
        self.rx.try_iter().collect()
    }

    /// Stops the thread after the fits queued.
    pub fn stop(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multi::ServiceModel;
    use std::time::{Duration, Instant};

    fn row(i: usize) -> Vec<f64> {
        let load = 100.0 + 20.0 * ((i as f64) / 15.0).sin() + ((i * 7919 % 1009) as f64) / 101.0;
        vec![
            load,
            0.5 * load + ((i * 104_729 % 1009) as f64) / 202.0,
            3.0,
        ]
    }

    fn wait_for(fitter: &Fitter) -> Vec<FitDone> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let done = fitter.finished();
            if !done.is_empty() || Instant::now() > deadline {
                return done;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_fit_made_on_the_fitting_thread_is_the_fit_made_in_line() {
        let cfg = MultiConfig::default();
        let (mut deferred, mut inline) = (ServiceModel::new(cfg, 3), ServiceModel::new(cfg, 3));
        let fitter = Fitter::spawn();
        let mut asked = None;
        for i in 0..cfg.min_fit_rows {
            deferred.observe(&row(i));
            inline.update(&row(i));
            if let Some(r) = deferred.take_fit() {
                asked = Some(r);
            }
        }
        let (rows, mcfg) = asked.expect("a fit is asked for once enough rows arrived");
        // One at a time: no second request while the first is out.
        deferred.observe(&row(99));
        assert!(deferred.take_fit().is_none());
        assert!(
            deferred.fitted().is_none(),
            "scoring goes on without a fit meanwhile"
        );

        let refused = fitter.submit(vec![FitRequest {
            service: "carts".into(),
            dims: 3,
            rows,
            cfg: mcfg,
        }]);
        assert!(refused.is_empty());
        let done = wait_for(&fitter);
        assert_eq!(done.len(), 1, "the fit came back within the deadline");
        let d = done.into_iter().next().expect("one");
        assert_eq!(d.service, "carts");
        deferred.install_background(d.fitted, d.dims);
        assert_eq!(deferred.fitted(), inline.fitted());
        assert!(deferred.fitted().is_some());
        fitter.stop();
    }

    #[test]
    fn a_fit_for_a_model_that_started_over_is_ignored_and_a_refused_one_asked_again() {
        let cfg = MultiConfig::default();
        let mut m = ServiceModel::new(cfg, 3);
        let mut asked = None;
        for i in 0..cfg.min_fit_rows {
            m.observe(&row(i));
            asked = asked.or(m.take_fit());
        }
        let (rows, mcfg) = asked.expect("asked");
        let fit = Fitted::fit(&rows, &mcfg);
        assert!(fit.is_some());
        // Refused (the queue was full): nothing installed, and the next row asks again.
        m.install_background(None, 3);
        assert!(m.fitted().is_none());
        assert!(m.take_fit().is_some());
        // A fit of rows of another width (a member joined since) is not installed.
        m.install_background(Some(fit.clone()), 4);
        assert!(m.fitted().is_none());
        m.install_background(Some(fit), 3);
        assert!(m.fitted().is_some());
        // Nothing asked: an answer is ignored.
        m.install_background(Some(None), 3);
        assert!(m.fitted().is_some());
    }
}
