//! `catalog.jsonl`: the series of compacted segments, appended by compaction and read back on
//! open (with the WAL's batches applied on top).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use aiops_models::{IdHashMap, SampleBatch, SeriesCatalog, SeriesMeta};
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::*;
use crate::IngestError;

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
pub(super) enum CatalogLine {
    Series(SeriesMeta),
    Stale { stale: SeriesId, timestamp_ms: i64 },
}

pub(super) fn load_catalog(
    path: &Path,
    catalog: &SeriesCatalog,
    stale: &mut IdHashMap<i64>,
) -> Result<(), IngestError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(IngestError::io("open", path)(e)),
    };
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(IngestError::io("read", path))?;
        match serde_json::from_str::<CatalogLine>(&line) {
            Ok(CatalogLine::Series(meta)) => {
                catalog.insert(Arc::new(meta));
            }
            Ok(CatalogLine::Stale {
                stale: id,
                timestamp_ms,
            }) => {
                stale.insert(id, timestamp_ms);
            }
            Err(e) => {
                // A torn last line after a crash: the segment it came from is still in the WAL.
                warn!(path = %path.display(), line = n + 1, error = %e, "Skipping unreadable catalog line.");
            }
        }
    }
    Ok(())
}

pub(super) fn apply_to_catalog(
    catalog: &SeriesCatalog,
    stale: &mut IdHashMap<i64>,
    b: &SampleBatch,
) {
    for meta in &b.new_series {
        catalog.insert(meta.clone());
    }
    for m in &b.stale {
        stale.insert(m.series_id, m.timestamp_ms);
    }
    if !stale.is_empty() {
        for (&id, &ts) in b.series_ids().iter().zip(b.timestamps()) {
            if stale.get(&SeriesId(id)).is_some_and(|&s| ts > s) {
                stale.remove(&SeriesId(id));
            }
        }
    }
}
