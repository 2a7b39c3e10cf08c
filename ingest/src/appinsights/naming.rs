//! How App Insights metrics become Prometheus-style series. Stable: it is part of series ids.
//!
//! * Metric `requests/count` → `appinsights_requests_count`; a non-default aggregation is
//!   appended (`requests/duration` with `max` → `appinsights_requests_duration_max`). The default
//!   aggregation is `sum` for counting metrics (ids ending in `count`, `failed`, `authenticated`,
//!   `browser`, `server`, `telemetryCount`) and `avg` for all others.
//! * Dimensions become labels in snake case: `cloud/roleName` → `cloud_role_name`,
//!   `request/resultCode` → `request_result_code`.
//! * KQL: each value column `requests_count` → `appinsights_requests_count`; every other column
//!   (but the time column) is a label, named the same way: `cloud_RoleName` → `cloud_role_name`.
//! * Every series has `app` (the configured app label, by default the app or workspace id).
//!
//! So `requests/count` segmented by `cloud/roleName` and the KQL query
//! `requests | summarize requests_count = sum(itemCount) by bin(timestamp, 1m), cloud_RoleName`
//! give the same series.

/// `cloud/roleName` → `cloud_role_name`: camel case split, anything not alphanumeric becomes
/// `_`, runs of `_` collapse, lower case; a leading digit gets a `_` in front.
pub fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let mut prev: Option<char> = None;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            let boundary = c.is_ascii_uppercase()
                && prev.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit());
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
        prev = Some(c);
    }
    while out.ends_with('_') {
        out.pop();
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// The aggregation a metric is named without.
pub fn default_aggregation(metric_id: &str) -> &'static str {
    let last = metric_id.rsplit('/').next().unwrap_or(metric_id);
    match last {
        "count" | "failed" | "authenticated" | "browser" | "server" | "telemetryCount" => "sum",
        _ => "avg",
    }
}

/// The series name of `metric_id` under `aggregation`.
pub fn metric_name(metric_id: &str, aggregation: &str) -> String {
    let base = format!("appinsights_{}", snake(metric_id));
    if aggregation == default_aggregation(metric_id) {
        base
    } else {
        format!("{base}_{}", snake(aggregation))
    }
}

/// The series name of a KQL value column.
pub fn kql_metric_name(column: &str) -> String {
    format!("appinsights_{}", snake(column))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_and_columns_meet_in_snake_case() {
        assert_eq!(snake("cloud/roleName"), "cloud_role_name");
        assert_eq!(snake("cloud_RoleName"), "cloud_role_name");
        assert_eq!(snake("request/resultCode"), "request_result_code");
        assert_eq!(
            snake("performanceCounters/processCpuPercentage"),
            "performance_counters_process_cpu_percentage"
        );
        assert_eq!(snake("count_"), "count");
        assert_eq!(snake("95th"), "_95th");
        assert_eq!(snake("AppRoleName"), "app_role_name");
    }

    #[test]
    fn names_carry_only_non_default_aggregations() {
        assert_eq!(
            metric_name("requests/count", "sum"),
            "appinsights_requests_count"
        );
        assert_eq!(
            metric_name("requests/count", "avg"),
            "appinsights_requests_count_avg"
        );
        assert_eq!(
            metric_name("requests/duration", "avg"),
            "appinsights_requests_duration"
        );
        assert_eq!(
            metric_name("requests/duration", "max"),
            "appinsights_requests_duration_max"
        );
        assert_eq!(
            kql_metric_name("requests_count"),
            metric_name("requests/count", "sum")
        );
        assert_eq!(
            kql_metric_name("requests_duration_max"),
            metric_name("requests/duration", "max")
        );
    }
}
