//! The data rules every series meets, whatever version carried it: label names, order and
//! sizes, `__name__`, sample order and time range, id collisions — checked on borrowed bytes.

use std::fmt::Write as _;
use std::sync::Arc;

use aiops_models::{
    CatalogView, Labels, METRIC_NAME_LABEL, SeriesHasher, SeriesId, SeriesMeta, Source,
};

use super::DecodeLimits;

pub(super) struct SeriesCheck {
    pub(super) id: SeriesId,
    pub(super) new_meta: Option<Arc<SeriesMeta>>,
}

#[derive(PartialEq, Eq)]
pub(super) enum ProblemKind {
    Invalid,
    Collision,
    OutOfRange,
}

pub(super) struct Problem {
    pub(super) message: String,
    pub(super) kind: ProblemKind,
}

pub(super) fn check_series(
    buf: &[u8],
    labels: &[(usize, usize, usize, usize)],
    samples: &[(i64, f64)],
    catalog: &CatalogView<'_>,
    hasher: &mut SeriesHasher,
    limits: &DecodeLimits,
) -> Result<SeriesCheck, Problem> {
    let bad = |reason: String| Problem {
        message: format!("series {}: {reason}", describe(buf, labels)),
        kind: ProblemKind::Invalid,
    };
    hasher.reset(Source::Prometheus);
    for &(ns, ne, vs, ve) in labels {
        hasher.label(&buf[ns..ne], &buf[vs..ve]);
    }
    let (id, check) = (hasher.finish(), hasher.finish_check());
    if let Some(w) = samples.windows(2).find(|w| w[1].0 < w[0].0) {
        return Err(bad(format!(
            "samples out of timestamp order ({} after {})",
            w[1].0, w[0].0
        )));
    }
    // In time order (checked above): the first and last samples bound the rest.
    if let Some(&t) = [samples.first(), samples.last()]
        .into_iter()
        .flatten()
        .map(|(t, _)| t)
        .find(|t| !limits.timestamps_ms.contains(t))
    {
        return Err(Problem {
            message: format!(
                "series {}: a sample at {} is outside the accepted range {} to {} (server.max_sample_age_secs, server.max_sample_future_secs)",
                describe(buf, labels),
                show_ms(t),
                show_ms(*limits.timestamps_ms.start()),
                show_ms(*limits.timestamps_ms.end())
            ),
            kind: ProblemKind::OutOfRange,
        });
    }
    let known = catalog.check_of(id);
    if known == Some(check) {
        // The very bytes of a series validated before: nothing more to check.
        return Ok(SeriesCheck { id, new_meta: None });
    }
    if labels.len() > limits.max_labels {
        return Err(bad(format!(
            "{} labels, over the limit of {} (server.max_labels_per_series)",
            labels.len(),
            limits.max_labels
        )));
    }
    let mut prev: Option<&[u8]> = None;
    let mut metric: Option<&[u8]> = None;
    for &(ns, ne, vs, ve) in labels {
        let (name, value) = (&buf[ns..ne], &buf[vs..ve]);
        if name.len() > limits.max_label_name_bytes {
            return Err(bad(format!(
                "label name {:?} is {} bytes, over the limit of {} (server.max_label_name_bytes)",
                lossy(name),
                name.len(),
                limits.max_label_name_bytes
            )));
        }
        if value.len() > limits.max_label_value_bytes {
            return Err(bad(format!(
                "label {:?} has a value of {} bytes, over the limit of {} (server.max_label_value_bytes)",
                lossy(name),
                value.len(),
                limits.max_label_value_bytes
            )));
        }
        if let Some(p) = prev {
            if name == p {
                return Err(bad(format!("duplicate label name {:?}", lossy(name))));
            }
            if name < p {
                return Err(bad(format!(
                    "labels not sorted by name ({:?} after {:?})",
                    lossy(name),
                    lossy(p)
                )));
            }
        }
        prev = Some(name);
        if name == METRIC_NAME_LABEL.as_bytes() {
            if !valid_metric_name(value) {
                return Err(bad(format!("invalid metric name {:?}", lossy(value))));
            }
            metric = Some(value);
        } else if !valid_label_name(name) {
            return Err(bad(format!("invalid label name {:?}", lossy(name))));
        }
        if value.is_empty() {
            return Err(bad(format!("label {:?} has an empty value", lossy(name))));
        }
        if std::str::from_utf8(value).is_err() {
            return Err(bad(format!(
                "label {:?} value is not valid UTF-8",
                lossy(name)
            )));
        }
    }
    let Some(metric) = metric else {
        return Err(bad("missing __name__ label".into()));
    };
    match known.and_then(|_| catalog.get(id)) {
        Some(known) => Err(Problem {
            message: format!(
                "series {} collides with known series {} (id {id}); its samples were not stored",
                describe(buf, labels),
                known.to_selector_string()
            ),
            kind: ProblemKind::Collision,
        }),
        None => {
            let text =
                |s: usize, e: usize| std::str::from_utf8(&buf[s..e]).expect("validated above");
            // In one allocation (two): a catalog entry lives as long as its series.
            let kept = Labels::from_sorted(
                labels
                    .iter()
                    .filter(|&&(ns, ne, _, _)| &buf[ns..ne] != METRIC_NAME_LABEL.as_bytes())
                    .map(|&(ns, ne, vs, ve)| (text(ns, ne), text(vs, ve))),
            );
            let meta = SeriesMeta {
                id,
                source: Source::Prometheus,
                metric: String::from_utf8_lossy(metric).into_owned(),
                labels: kept,
            };
            Ok(SeriesCheck {
                id,
                new_meta: Some(Arc::new(meta)),
            })
        }
    }
}

fn valid_label_name(name: &[u8]) -> bool {
    match name.split_first() {
        Some((first, rest)) => {
            (first.is_ascii_alphabetic() || *first == b'_')
                && rest.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        }
        None => false,
    }
}

fn valid_metric_name(name: &[u8]) -> bool {
    match name.split_first() {
        Some((first, rest)) => {
            (first.is_ascii_alphabetic() || *first == b'_' || *first == b':')
                && rest
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
        }
        None => false,
    }
}

/// Most bytes of one label name or value echoed in an error message.
const ECHO_BYTES: usize = 256;

/// A label name or value for an error message: at most [`ECHO_BYTES`] of it.
fn lossy(b: &[u8]) -> std::borrow::Cow<'_, str> {
    if b.len() <= ECHO_BYTES {
        return String::from_utf8_lossy(b);
    }
    let head = String::from_utf8_lossy(&b[..ECHO_BYTES]);
    std::borrow::Cow::Owned(format!(
        "{}…(+{} bytes)",
        head.trim_end_matches('\u{fffd}'),
        b.len() - ECHO_BYTES
    ))
}

/// A timestamp in ms for an error message: RFC 3339 when it has one.
fn show_ms(t: i64) -> String {
    match jiff::Timestamp::from_millisecond(t) {
        Ok(ts) => format!("{ts} ({t} ms)"),
        Err(_) => format!("{t} ms"),
    }
}

/// `{a="b", c="d"}` from wire labels, for error messages only.
fn describe(buf: &[u8], labels: &[(usize, usize, usize, usize)]) -> String {
    let mut s = String::from("{");
    for (i, &(ns, ne, vs, ve)) in labels.iter().enumerate().take(12) {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{}={:?}", lossy(&buf[ns..ne]), lossy(&buf[vs..ve]));
    }
    if labels.len() > 12 {
        s.push_str(", …");
    }
    s.push('}');
    s
}
