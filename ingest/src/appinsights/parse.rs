//! Turning App Insights responses into points.

use serde_json::{Map, Value};

/// One value of one series at one time, before it gets an id.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Series name.
    pub metric: String,
    /// Labels (not yet including `app`), in any order.
    pub labels: Vec<(String, String)>,
    /// Unix ms (the bucket start).
    pub ts_ms: i64,
    /// The value.
    pub value: f64,
}

const STRUCTURAL: [&str; 4] = ["start", "end", "interval", "segments"];
const AGGREGATIONS: [&str; 6] = ["min", "max", "avg", "sum", "count", "unique"];

fn ts(v: Option<&Value>) -> Option<i64> {
    v?.as_str()?
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|f| f.is_finite())
}

/// Parses a `GET /metrics/{metricId}` body into points: one per (dimension values, bucket,
/// aggregation). Missing and `null` aggregates are skipped, never zeros. With `interval_ms`,
/// buckets that do not span exactly one interval (the partial first and last ones, which the
/// API cuts at the requested span) are skipped too.
pub fn metrics_response(
    body: &[u8],
    metric_id: &str,
    interval_ms: Option<i64>,
    name: impl Fn(&str) -> String,
) -> Result<Vec<Point>, String> {
    let doc: Value =
        serde_json::from_slice(body).map_err(|e| format!("response is not JSON: {e}"))?;
    let value = doc
        .get("value")
        .and_then(Value::as_object)
        .ok_or("response has no \"value\" object")?;
    let span_start =
        ts(value.get("start")).ok_or("\"value.start\" is missing or not a timestamp")?;
    let mut out = Vec::new();
    let mut dims = Vec::new();
    // The root's start/end is the whole span, not a bucket.
    let mut root = value.clone();
    root.remove("end");
    walk(
        &root,
        metric_id,
        interval_ms,
        &name,
        span_start,
        true,
        &mut dims,
        &mut out,
    );
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn walk(
    obj: &Map<String, Value>,
    metric_id: &str,
    interval_ms: Option<i64>,
    name: &dyn Fn(&str) -> String,
    mut bucket_start: i64,
    mut complete: bool,
    dims: &mut Vec<(String, String)>,
    out: &mut Vec<Point>,
) {
    let pushed = dims.len();
    // A time bucket carries start/end; a dimension segment carries a dimension value.
    if let (Some(s), Some(e)) = (ts(obj.get("start")), ts(obj.get("end"))) {
        bucket_start = s;
        if let Some(i) = interval_ms {
            complete = complete && e - s == i;
        }
    }
    for (k, v) in obj {
        if STRUCTURAL.contains(&k.as_str()) {
            continue;
        }
        match v {
            Value::String(s) => dims.push((k.clone(), s.clone())),
            Value::Bool(b) => dims.push((k.clone(), b.to_string())),
            _ => {}
        }
    }
    if complete {
        let mut emit = |agg: &str, v: &Value| {
            if let Some(value) = number(v) {
                out.push(Point {
                    metric: name(agg),
                    labels: dims.clone(),
                    ts_ms: bucket_start,
                    value,
                });
            }
        };
        for (k, v) in obj {
            if let Value::Object(aggs) = v {
                if k == metric_id || (k.contains('/') && k != "segments") {
                    for (agg, val) in aggs {
                        emit(agg, val);
                    }
                }
            } else if AGGREGATIONS.contains(&k.as_str()) {
                // The flattened form of the published example: {"requests/count": null, "sum": 1}.
                emit(k, v);
            }
        }
    }
    if let Some(Value::Array(children)) = obj.get("segments") {
        for child in children {
            if let Value::Object(c) = child {
                walk(
                    c,
                    metric_id,
                    interval_ms,
                    name,
                    bucket_start,
                    complete,
                    dims,
                    out,
                );
            }
        }
    }
    dims.truncate(pushed);
}

/// Parses a KQL `tables` response: `time_column` gives the time; `value_columns` (or, when
/// empty, every numeric column) give values; every other column is a label. `null` values are
/// skipped; numbers may also arrive as numeric strings.
pub fn kql_response(
    body: &[u8],
    time_column: &str,
    value_columns: &[String],
    name: impl Fn(&str) -> String,
) -> Result<Vec<Point>, String> {
    let doc: Value =
        serde_json::from_slice(body).map_err(|e| format!("response is not JSON: {e}"))?;
    let table = doc
        .get("tables")
        .and_then(Value::as_array)
        .and_then(|t| t.first())
        .ok_or("response has no tables")?;
    let columns: Vec<(String, String)> = table
        .get("columns")
        .and_then(Value::as_array)
        .ok_or("table has no columns")?
        .iter()
        .map(|c| {
            let n = c
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let t = c
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            (n, t)
        })
        .collect();
    let time_idx = columns
        .iter()
        .position(|(n, _)| n == time_column)
        .ok_or_else(|| {
            format!(
                "the result has no time column {time_column:?}; columns: {}",
                names(&columns)
            )
        })?;
    let numeric = |t: &str| matches!(t, "int" | "long" | "real" | "decimal");
    let value_idx: Vec<usize> = if value_columns.is_empty() {
        (0..columns.len())
            .filter(|&i| i != time_idx && numeric(&columns[i].1))
            .collect()
    } else {
        value_columns
            .iter()
            .map(|v| {
                columns.iter().position(|(n, _)| n == v).ok_or_else(|| {
                    format!(
                        "the result has no value column {v:?}; columns: {}",
                        names(&columns)
                    )
                })
            })
            .collect::<Result<_, _>>()?
    };
    if value_idx.is_empty() {
        return Err(format!(
            "the result has no numeric column to take values from; columns: {}",
            names(&columns)
        ));
    }
    let label_idx: Vec<usize> = (0..columns.len())
        .filter(|i| *i != time_idx && !value_idx.contains(i))
        .collect();
    let metric_names: Vec<String> = value_idx.iter().map(|&i| name(&columns[i].0)).collect();
    let mut out = Vec::new();
    for row in table
        .get("rows")
        .and_then(Value::as_array)
        .ok_or("table has no rows")?
    {
        let Some(cells) = row.as_array() else {
            continue;
        };
        let Some(t) = ts(cells.get(time_idx)) else {
            continue;
        };
        let labels: Vec<(String, String)> = label_idx
            .iter()
            .filter_map(|&i| {
                let v = match cells.get(i)? {
                    Value::Null => return None,
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                Some((columns[i].0.clone(), v))
            })
            .collect();
        for (k, &i) in value_idx.iter().enumerate() {
            if let Some(value) = cells.get(i).and_then(number) {
                out.push(Point {
                    metric: metric_names[k].clone(),
                    labels: labels.clone(),
                    ts_ms: t,
                    value,
                });
            }
        }
    }
    Ok(out)
}

fn names(columns: &[(String, String)]) -> String {
    columns
        .iter()
        .map(|(n, t)| format!("{n}:{t}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agg_name(a: &str) -> String {
        a.to_owned()
    }

    #[test]
    fn single_aggregate() {
        let body = br#"{"value":{"start":"2024-05-01T00:00:00.000Z","end":"2024-05-01T12:00:00.000Z","requests/count":{"sum":22778}}}"#;
        let p = metrics_response(body, "requests/count", None, agg_name).expect("parses");
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].metric.as_str(), p[0].value), ("sum", 22778.0));
        assert_eq!(p[0].ts_ms, 1_714_521_600_000);
    }

    #[test]
    fn interval_buckets_skip_partial_ones() {
        let body = br#"{"value":{"start":"2024-05-01T10:07:12.345Z","end":"2024-05-01T13:07:12.345Z","interval":"PT1H",
          "segments":[
            {"start":"2024-05-01T10:07:12.345Z","end":"2024-05-01T11:00:00.000Z","requests/duration":{"avg":212.4,"max":1880.0}},
            {"start":"2024-05-01T11:00:00.000Z","end":"2024-05-01T12:00:00.000Z","requests/duration":{"avg":198.0,"max":1402.5}},
            {"start":"2024-05-01T12:00:00.000Z","end":"2024-05-01T13:07:12.345Z","requests/duration":{"avg":230.9,"max":2110.0}}]}}"#;
        let p =
            metrics_response(body, "requests/duration", Some(3_600_000), agg_name).expect("parses");
        let mut got: Vec<(String, f64)> = p.iter().map(|p| (p.metric.clone(), p.value)).collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got, vec![("avg".into(), 198.0), ("max".into(), 1402.5)]);
        // Without an interval every bucket counts.
        assert_eq!(
            metrics_response(body, "requests/duration", None, agg_name)
                .expect("parses")
                .len(),
            6
        );
    }

    #[test]
    fn segments_become_labels_and_nulls_are_skipped() {
        let body = br#"{"value":{"start":"2024-05-01T00:00:00.000Z","end":"2024-05-01T00:02:00.000Z","interval":"PT1M","segments":[
            {"start":"2024-05-01T00:00:00.000Z","end":"2024-05-01T00:01:00.000Z","segments":[
                {"cloud/roleName":"api","segments":[{"request/resultCode":"200","requests/count":{"sum":5}},{"request/resultCode":"500","requests/count":{"sum":null}}]},
                {"cloud/roleName":"web","segments":[{"request/resultCode":"200","requests/count":{"sum":7}}]}]},
            {"start":"2024-05-01T00:01:00.000Z","end":"2024-05-01T00:02:00.000Z","segments":[
                {"cloud/roleName":"api","segments":[{"request/resultCode":"200","requests/count":null}]}]}]}}"#;
        let p = metrics_response(body, "requests/count", Some(60_000), agg_name).expect("parses");
        assert_eq!(p.len(), 2, "{p:?}");
        let mut labels = p[0].labels.clone();
        labels.sort();
        assert_eq!(
            labels,
            vec![
                ("cloud/roleName".into(), "api".into()),
                ("request/resultCode".into(), "200".into())
            ]
        );
        assert_eq!(p[1].value, 7.0);
    }

    #[test]
    fn flattened_published_example_is_accepted() {
        let body = br#"{"value":{"start":"2024-05-01T00:00:00.000Z","end":"2024-05-01T01:00:00.000Z","segments":[
            {"request/resultCode":"200","requests/count":null,"sum":123}]}}"#;
        let p = metrics_response(body, "requests/count", None, agg_name).expect("parses");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].value, 123.0);
    }

    #[test]
    fn kql_tables_become_points() {
        let body = br#"{"tables":[{"name":"PrimaryResult","columns":[
            {"name":"timestamp","type":"datetime"},{"name":"cloud_RoleName","type":"string"},
            {"name":"count_","type":"long"},{"name":"avg_duration","type":"real"},{"name":"props","type":"dynamic"}],
          "rows":[["2024-05-01T10:00:00Z","api",255,201.7,"{\"a\":1}"],["2024-05-01T10:05:00Z","api","148",null,null]]}]}"#;
        let p = kql_response(body, "timestamp", &[], |c| c.to_owned()).expect("parses");
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].metric, "count_");
        assert_eq!(
            p[0].labels,
            vec![
                ("cloud_RoleName".into(), "api".into()),
                ("props".into(), "{\"a\":1}".into())
            ]
        );
        assert_eq!(p[2].value, 148.0);
        assert_eq!(p[2].labels, vec![("cloud_RoleName".into(), "api".into())]);
        let err =
            kql_response(body, "TimeGenerated", &[], |c| c.to_owned()).expect_err("no such column");
        assert!(
            err.contains("TimeGenerated") && err.contains("timestamp:datetime"),
            "{err}"
        );
        let only = kql_response(body, "timestamp", &["avg_duration".into()], |c| {
            c.to_owned()
        })
        .expect("parses");
        assert_eq!(only.len(), 1);
    }
}
