//! The profiles table: one Parquet row per series — the statistics in columns, one `bin_NN`
//! column per time-of-day bin, the calibrated detector state as JSON (`state`, what `serve`
//! loads) and its continuous score's state beside it (`rank`). Tables written by earlier
//! versions (polars; string columns as views, no `rank` column) still load.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float32Array, Float64Array, RecordBatch, StringArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::SeriesProfile;
use super::rows::{parquet_error, primitive, read_batches};
use crate::score::DAY_BINS;
use crate::{DetectError, Detector};

/// Writes profiles to `path` (through a temporary file, synced, then renamed into place).
pub fn write_profiles(path: &Path, profiles: &[SeriesProfile]) -> Result<(), DetectError> {
    let err = parquet_error(path, "writing profiles");
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| DetectError::Io { path, source }
    };
    let f64s = |f: fn(&SeriesProfile) -> f64| -> ArrayRef {
        Arc::new(profiles.iter().map(f).collect::<Float64Array>())
    };
    let json = |f: &dyn Fn(&SeriesProfile) -> String| -> ArrayRef {
        Arc::new(profiles.iter().map(|p| Some(f(p))).collect::<StringArray>())
    };
    let mut fields = vec![
        Field::new("series_id", DataType::UInt64, false),
        Field::new("samples", DataType::UInt64, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(
            profiles
                .iter()
                .map(|p| p.series_id)
                .collect::<UInt64Array>(),
        ),
        Arc::new(profiles.iter().map(|p| p.samples).collect::<UInt64Array>()),
    ];
    let stats = [
        ("level", f64s(|p| p.level)),
        ("scale", f64s(|p| p.scale)),
        ("min", f64s(|p| p.min)),
        ("max", f64s(|p| p.max)),
    ];
    for (name, column) in stats {
        fields.push(Field::new(name, DataType::Float64, false));
        columns.push(column);
    }
    for b in 0..DAY_BINS {
        fields.push(Field::new(format!("bin_{b:02}"), DataType::Float32, false));
        columns.push(Arc::new(
            profiles.iter().map(|p| p.day[b]).collect::<Float32Array>(),
        ));
    }
    fields.push(Field::new("state", DataType::Utf8, false));
    columns.push(json(&|p| {
        serde_json::to_string(&p.state).expect("a detector always serialises")
    }));
    fields.push(Field::new("rank", DataType::Utf8, false));
    columns.push(json(&|p| {
        serde_json::to_string(&p.state.rank).expect("plain numbers")
    }));
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| err(e.into()))?;

    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let tmp = path.with_extension("tmp");
    let file = File::create(&tmp).map_err(io(&tmp))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut writer = ArrowWriter::try_new(file, schema, Some(props)).map_err(err)?;
    writer.write(&batch).map_err(err)?;
    let file = writer.into_inner().map_err(err)?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    Ok(())
}

/// Reads the calibrated detectors of a profiles table, by series.
pub fn read_profiles(path: &Path) -> Result<HashMap<u64, Detector>, DetectError> {
    let err = parquet_error(path, "reading profiles");
    let bad = |reason: String| DetectError::BadInput {
        path: path.to_owned(),
        reason,
    };
    let mut out = HashMap::new();
    read_batches(
        path,
        "reading profiles",
        &["series_id", "state", "rank"],
        |batch| {
            let ids = primitive::<arrow::datatypes::UInt64Type>(batch, "series_id", path)?;
            // Whatever string layout the writer chose (plain, large, view), read as plain strings.
            let strings = |name: &str| -> Result<Option<ArrayRef>, DetectError> {
                batch
                    .column_by_name(name)
                    .map(|c| arrow::compute::cast(c, &DataType::Utf8).map_err(|e| err(e.into())))
                    .transpose()
            };
            let states = strings("state")?.ok_or_else(|| bad("no column state".into()))?;
            let states = states.as_string::<i32>();
            // Tables written before the continuous score have no `rank` column.
            let ranks = strings("rank")?;
            let ranks = ranks.as_ref().map(|r| r.as_string::<i32>());
            for i in 0..batch.num_rows() {
                if ids.is_null(i) || states.is_null(i) {
                    continue;
                }
                let id = ids.value(i);
                let json = |e: serde_json::Error| bad(format!("series {id:016x}: {e}"));
                let mut d: Detector = serde_json::from_str(states.value(i)).map_err(json)?;
                if let Some(r) = ranks.filter(|r| r.is_valid(i)) {
                    d.rank = serde_json::from_str(r.value(i)).map_err(json)?;
                }
                out.insert(id, d);
            }
            Ok(())
        },
    )?;
    Ok(out)
}
