//! Anomaly scoring and forecasting (planned): consumes `SampleBatch`es from the transport seam. Nothing here yet; see issues 4 and 5.
