//! [`SampleBatch`]: samples in long format as an Arrow record batch.

use std::sync::{Arc, OnceLock};

use arrow::array::{Array, Float64Array, RecordBatch, TimestampMillisecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::{ModelError, SeriesId, SeriesMeta};

/// The Arrow schema of a sample batch:
///
/// | column | type | meaning |
/// |---|---|---|
/// | `series_id` | `UInt64` | [`SeriesId`] |
/// | `timestamp` | `Timestamp(ms, "UTC")` | sample time, Unix epoch milliseconds |
/// | `value` | `Float64` | the value; NaN allowed, stale markers never |
///
/// No column is nullable. Rows of one series are in ascending timestamp order within a batch.
pub fn sample_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("series_id", DataType::UInt64, false),
                Field::new(
                    "timestamp",
                    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                    false,
                ),
                Field::new("value", DataType::Float64, false),
            ]))
        })
        .clone()
}

/// The rows of each stretch of one series in `ids` (the `series_id` column), in order. A
/// remote_write body holds each series' samples one after another: work per series (a state
/// lookup, a run header) is done once per run, not per sample.
pub fn series_runs(ids: &[u64]) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        let first = *ids.get(start)?;
        let end = start + ids[start..].iter().take_while(|&&x| x == first).count();
        let run = start..end;
        start = end;
        Some(run)
    })
}

/// A Prometheus stale marker: the series ended at `timestamp_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaleMarker {
    /// The series that went stale.
    pub series_id: SeriesId,
    /// When, in Unix epoch milliseconds.
    pub timestamp_ms: i64,
}

/// One unit of work between stages: a batch of samples, the catalog entries of series that
/// appear in it for the first time, and stale markers.
#[derive(Debug, Clone)]
pub struct SampleBatch {
    /// Samples, schema [`sample_schema`].
    pub samples: RecordBatch,
    /// Series first seen by the producing source; downstream catalogs learn them from here.
    pub new_series: Vec<Arc<SeriesMeta>>,
    /// Series that ended.
    pub stale: Vec<StaleMarker>,
}

impl SampleBatch {
    /// Wraps a record batch after checking that it has the sample schema and no nulls.
    pub fn try_new(
        samples: RecordBatch,
        new_series: Vec<Arc<SeriesMeta>>,
        stale: Vec<StaleMarker>,
    ) -> Result<Self, ModelError> {
        if samples.schema() != sample_schema() {
            return Err(ModelError::InvalidBatch {
                reason: format!("schema {:?} is not the sample schema", samples.schema()),
            });
        }
        if samples.columns().iter().any(|c| c.null_count() > 0) {
            return Err(ModelError::InvalidBatch {
                reason: "sample columns must not contain nulls".into(),
            });
        }
        Ok(Self {
            samples,
            new_series,
            stale,
        })
    }

    /// An empty batch.
    pub fn empty() -> Self {
        SampleBatchBuilder::with_capacity(0).finish()
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.num_rows()
    }

    /// True when the batch carries neither samples, new series nor stale markers.
    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.new_series.is_empty() && self.stale.is_empty()
    }

    /// The `series_id` column.
    pub fn series_ids(&self) -> &[u64] {
        column::<UInt64Array>(&self.samples, 0).values()
    }

    /// The `timestamp` column, epoch milliseconds.
    pub fn timestamps(&self) -> &[i64] {
        column::<TimestampMillisecondArray>(&self.samples, 1).values()
    }

    /// The `value` column.
    pub fn values(&self) -> &[f64] {
        column::<Float64Array>(&self.samples, 2).values()
    }
}

impl SampleBatch {
    /// This batch without the samples, announcements and stale markers of the series `drop`
    /// picks (e.g. new series over a series limit). Returns the batch and the samples removed.
    pub fn without_series(&self, drop: impl Fn(SeriesId) -> bool) -> (SampleBatch, usize) {
        let mut b = SampleBatchBuilder::with_capacity(self.len());
        let mut removed = 0;
        for ((&id, &t), &v) in self
            .series_ids()
            .iter()
            .zip(self.timestamps())
            .zip(self.values())
        {
            if drop(SeriesId(id)) {
                removed += 1;
            } else {
                b.push(SeriesId(id), t, v);
            }
        }
        for m in &self.new_series {
            if !drop(m.id) {
                b.push_series(m.clone());
            }
        }
        for s in &self.stale {
            if !drop(s.series_id) {
                b.push_stale(*s);
            }
        }
        (b.finish(), removed)
    }
}

fn column<A: 'static>(batch: &RecordBatch, i: usize) -> &A {
    batch
        .column(i)
        .as_any()
        .downcast_ref::<A>()
        .expect("schema checked in SampleBatch::try_new")
}

/// Accumulates samples column by column (no per-sample allocation) and builds a
/// [`SampleBatch`].
#[derive(Debug, Default)]
pub struct SampleBatchBuilder {
    ids: Vec<u64>,
    timestamps: Vec<i64>,
    values: Vec<f64>,
    new_series: Vec<Arc<SeriesMeta>>,
    stale: Vec<StaleMarker>,
}

impl SampleBatchBuilder {
    /// A builder with room for `samples` samples.
    pub fn with_capacity(samples: usize) -> Self {
        Self {
            ids: Vec::with_capacity(samples),
            timestamps: Vec::with_capacity(samples),
            values: Vec::with_capacity(samples),
            ..Self::default()
        }
    }

    /// Appends one sample.
    #[inline]
    pub fn push(&mut self, id: SeriesId, timestamp_ms: i64, value: f64) {
        self.ids.push(id.0);
        self.timestamps.push(timestamp_ms);
        self.values.push(value);
    }

    /// Records a series first seen.
    pub fn push_series(&mut self, meta: Arc<SeriesMeta>) {
        self.new_series.push(meta);
    }

    /// Records a stale marker.
    pub fn push_stale(&mut self, marker: StaleMarker) {
        self.stale.push(marker);
    }

    /// Samples so far.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.new_series.is_empty() && self.stale.is_empty()
    }

    /// Builds the batch; the vectors become Arrow buffers without copying.
    pub fn finish(mut self) -> SampleBatch {
        // Batches live in the archive's head until compacted: no spare capacity (a decoder
        // reserves for the most samples a body could hold, often twice what it holds).
        self.ids.shrink_to_fit();
        self.timestamps.shrink_to_fit();
        self.values.shrink_to_fit();
        let columns: Vec<Arc<dyn Array>> = vec![
            Arc::new(UInt64Array::from(self.ids)),
            Arc::new(TimestampMillisecondArray::from(self.timestamps).with_timezone("UTC")),
            Arc::new(Float64Array::from(self.values)),
        ];
        let samples = RecordBatch::try_new(sample_schema(), columns)
            .expect("columns built to the sample schema with equal lengths");
        SampleBatch {
            samples,
            new_series: self.new_series,
            stale: self.stale,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_runs_cover_every_row_once_in_order() {
        let runs: Vec<_> = series_runs(&[7, 7, 3, 7, 7, 7]).collect();
        assert_eq!(runs, [0..2, 2..3, 3..6]);
        assert_eq!(series_runs(&[]).count(), 0);
    }

    #[test]
    fn builder_round_trips_columns() {
        let mut b = SampleBatchBuilder::with_capacity(2);
        b.push(SeriesId(7), 1_000, 1.5);
        b.push(SeriesId(7), 2_000, f64::NAN);
        let batch = b.finish();
        assert_eq!(batch.len(), 2);
        assert_eq!(batch.series_ids(), &[7, 7]);
        assert_eq!(batch.timestamps(), &[1_000, 2_000]);
        assert!(batch.values()[1].is_nan());
        assert!(SampleBatch::try_new(batch.samples.clone(), vec![], vec![]).is_ok());
    }

    #[test]
    fn try_new_rejects_foreign_schema() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::UInt64, false)]));
        let rb = RecordBatch::try_new(schema, vec![Arc::new(UInt64Array::from(vec![1u64]))])
            .expect("valid");
        assert!(SampleBatch::try_new(rb, vec![], vec![]).is_err());
    }
}
