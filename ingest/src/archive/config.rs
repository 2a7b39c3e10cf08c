//! The `[archive]` section: where and how the archive keeps data, and its checks.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where and how the archive keeps data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    /// Directory of the archive (created if missing). One process owns it at a time.
    pub data_dir: PathBuf,
    /// A WAL segment is sealed (and later compacted to Parquet) when it, or its samples in the
    /// in-memory head, reach this size.
    pub segment_max_bytes: u64,
    /// ... or at this age, whichever comes first.
    pub segment_max_secs: u64,
    /// `fdatasync` every group commit before acknowledging. Turning it off survives a process
    /// crash but not a power loss.
    pub fsync: bool,
    /// Parts whose newest sample is older than this are deleted.
    pub retention_secs: u64,
    /// Oldest parts are deleted while the archive is larger than this.
    pub retention_max_bytes: u64,
    /// How often retention runs.
    pub retention_check_secs: u64,
    /// Largest group commit, in encoded bytes.
    pub group_commit_max_bytes: usize,
    /// Parts of similar size merged into one at a time (0: never merge). Merged parts compress
    /// better (longer runs per series) and keep the number of files a read opens small.
    pub merge_fan_in: usize,
    /// Merging stops at parts of about this many samples.
    pub merge_max_rows: u64,
    /// Check every part's whole file against its checksum after opening, in the background
    /// (reads check the row groups they decode in any case).
    pub verify_on_open: bool,
    /// Ready (`/readyz`) only while the file system of `data_dir` has this much free space.
    pub min_free_bytes: u64,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            segment_max_bytes: 32 << 20,
            segment_max_secs: 600,
            fsync: true,
            retention_secs: 15 * 24 * 3600,
            retention_max_bytes: 10 << 30,
            retention_check_secs: 60,
            group_commit_max_bytes: 8 << 20,
            merge_fan_in: 8,
            merge_max_rows: 200_000_000,
            verify_on_open: true,
            min_free_bytes: 256 << 20,
        }
    }
}

impl ArchiveConfig {
    /// Problems with the values, each naming its key.
    pub fn validate(&self, prefix: &str, problems: &mut Vec<String>) {
        if self.data_dir.as_os_str().is_empty() {
            problems.push(format!("{prefix}.data_dir: must not be empty"));
        }
        if self.segment_max_bytes < (1 << 20) {
            problems.push(format!(
                "{prefix}.segment_max_bytes = {}: must be at least 1048576",
                self.segment_max_bytes
            ));
        }
        if self.segment_max_secs == 0 {
            problems.push(format!("{prefix}.segment_max_secs: must be at least 1"));
        }
        if self.retention_secs < 60 {
            problems.push(format!(
                "{prefix}.retention_secs = {}: must be at least 60",
                self.retention_secs
            ));
        }
        if self.retention_max_bytes < self.segment_max_bytes {
            problems.push(format!(
                "{prefix}.retention_max_bytes = {}: must be at least segment_max_bytes ({})",
                self.retention_max_bytes, self.segment_max_bytes
            ));
        }
        if self.retention_check_secs == 0 {
            problems.push(format!("{prefix}.retention_check_secs: must be at least 1"));
        }
        if self.merge_fan_in == 1 || self.merge_fan_in > 64 {
            problems.push(format!(
                "{prefix}.merge_fan_in = {}: must be 0 (no merging) or between 2 and 64",
                self.merge_fan_in
            ));
        }
        if !(64 << 10..=1 << 30).contains(&self.group_commit_max_bytes) {
            problems.push(format!(
                "{prefix}.group_commit_max_bytes = {}: must be between 65536 and 1073741824",
                self.group_commit_max_bytes
            ));
        }
    }
}
