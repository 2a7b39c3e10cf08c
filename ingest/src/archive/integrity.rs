//! Detecting and containing damage in the archive's files.
//!
//! * **Checksums of parts**, computed when a part is written and kept in the part catalog
//!   (`parts.jsonl`, one line per part, rewritten at every open): a CRC-32 of the whole file, of
//!   its footer, and of each row group's column chunks. Every read checks the footer and the
//!   row groups it decodes; merges and the background check at open check whole files.
//!   Inside the file, every page carries Parquet's own page CRC besides (see `page_crc`), which
//!   the page decoder checks and which other Parquet readers can check too.
//! * **Quarantine**: a part that fails is moved to `quarantine/` (with a `.reason` file beside
//!   it) and leaves the part list; a damaged stretch of a WAL segment is copied there. Reads go
//!   on without it — never serving what it held as data — and `/readyz` reports the archive
//!   `degraded` while `quarantine/` holds files. `aiops archive repair` salvages the readable
//!   row groups of quarantined parts and moves what it handled to `quarantine/repaired/`.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::IngestError;

/// The checksums of one part (CRC-32, as in the WAL).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartSums {
    /// Size of the file.
    pub bytes: u64,
    /// Of the whole file.
    pub crc32: u32,
    /// Of the footer: metadata, its length and the closing magic.
    pub footer_crc32: u32,
    /// Of each row group's column chunks, in order.
    pub groups: Vec<u32>,
}

/// The byte range of each row group's column chunks.
fn group_ranges(meta: &ParquetMetaData) -> Vec<(u64, u64)> {
    meta.row_groups()
        .iter()
        .map(|rg| {
            let spans = rg.columns().iter().map(|c| c.byte_range());
            let start = spans.clone().map(|(s, _)| s).min().unwrap_or(0);
            let end = spans.map(|(s, l)| s + l).max().unwrap_or(0);
            (start, end)
        })
        .collect()
}

fn footer_range(len: u64, tail: &[u8]) -> Result<(u64, u64), IngestError> {
    let flen = u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")) as u64;
    if &tail[4..] != b"PAR1" || flen + 8 > len {
        return Err(IngestError::damaged("no parquet footer"));
    }
    Ok((len - 8 - flen, len))
}

fn read_at(file: &File, (start, end): (u64, u64)) -> Result<Vec<u8>, IngestError> {
    let mut buf = vec![0u8; end.saturating_sub(start) as usize];
    file.read_exact_at(&mut buf, start)
        .map_err(IngestError::io_at(format!("reading bytes {start}..{end}")))?;
    Ok(buf)
}

/// CRC-32s of the whole file at `path` and of each of `ranges`, streamed a MiB at a time (a
/// merged part may be hundreds of MB: it is never held in memory whole).
fn stream_crcs(
    file: &File,
    len: u64,
    ranges: &[(u64, u64)],
) -> Result<(u32, Vec<u32>), IngestError> {
    const CHUNK: usize = 1 << 20;
    let mut whole = crc32fast::Hasher::new();
    let mut parts: Vec<crc32fast::Hasher> =
        ranges.iter().map(|_| crc32fast::Hasher::new()).collect();
    let mut buf = vec![0u8; CHUNK];
    let mut off = 0u64;
    while off < len {
        let n = CHUNK.min((len - off) as usize);
        file.read_exact_at(&mut buf[..n], off)
            .map_err(IngestError::io_at(format!(
                "reading bytes {off}..{}",
                off + n as u64
            )))?;
        let chunk = &buf[..n];
        whole.update(chunk);
        let end = off + n as u64;
        for (h, &(s, e)) in parts.iter_mut().zip(ranges) {
            let (a, b) = (s.max(off), e.min(end));
            if a < b {
                h.update(&chunk[(a - off) as usize..(b - off) as usize]);
            }
        }
        off = end;
    }
    Ok((
        whole.finalize(),
        parts.into_iter().map(|h| h.finalize()).collect(),
    ))
}

/// Computes the checksums of the part at `path` (just written, or met without any).
pub fn sums_of(path: &Path) -> Result<PartSums, IngestError> {
    let file = File::open(path).map_err(IngestError::io("open", path))?;
    let len = file
        .metadata()
        .map_err(IngestError::io("stat", path))?
        .len();
    if len < 12 {
        return Err(IngestError::damaged(format!(
            "{} is too short for a part",
            path.display()
        )));
    }
    let footer = footer_range(len, &read_at(&file, (len - 8, len))?)?;
    let meta = ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .map_err(IngestError::codec(format!(
            "parquet footer of {}",
            path.display()
        )))?;
    let mut ranges = group_ranges(&meta);
    if let Some(&(s, e)) = ranges.iter().find(|&&(s, e)| e > len || s > e) {
        return Err(IngestError::damaged(format!(
            "row group range {s}..{e} outside the file"
        )));
    }
    ranges.push(footer);
    let (crc32, mut crcs) = stream_crcs(&file, len, &ranges)?;
    let footer_crc32 = crcs.pop().expect("the footer's");
    Ok(PartSums {
        bytes: len,
        crc32,
        footer_crc32,
        groups: crcs,
    })
}

/// Checks a whole part file against its checksums.
pub fn verify_file(path: &Path, sums: &PartSums) -> Result<(), IngestError> {
    let file = File::open(path).map_err(IngestError::io("open", path))?;
    let len = file
        .metadata()
        .map_err(IngestError::io("stat", path))?
        .len();
    if len != sums.bytes {
        return Err(IngestError::damaged(format!(
            "{len} bytes where the part catalog recorded {}",
            sums.bytes
        )));
    }
    if stream_crcs(&file, len, &[])?.0 != sums.crc32 {
        return Err(IngestError::damaged("file checksum mismatch"));
    }
    Ok(())
}

/// Checks the footer of an open part; what follows may trust its metadata.
pub fn verify_footer(file: &File, sums: &PartSums) -> Result<(), IngestError> {
    let len = file.metadata().map_err(IngestError::io_at("stat"))?.len();
    if len != sums.bytes {
        return Err(IngestError::damaged(format!(
            "{len} bytes where the part catalog recorded {}",
            sums.bytes
        )));
    }
    if len < 12 {
        return Err(IngestError::damaged("too short for a part"));
    }
    let tail = read_at(file, (len - 8, len))?;
    let range = footer_range(len, &tail)?;
    if crc32fast::hash(&read_at(file, range)?) != sums.footer_crc32 {
        return Err(IngestError::damaged("footer checksum mismatch"));
    }
    Ok(())
}

/// Checks the column chunks of row group `i` of an open part.
pub fn verify_group(
    file: &File,
    meta: &ParquetMetaData,
    sums: &PartSums,
    i: usize,
) -> Result<(), IngestError> {
    let range = *group_ranges(meta)
        .get(i)
        .ok_or_else(|| IngestError::damaged(format!("no row group {i}")))?;
    let want = sums.groups.get(i).ok_or_else(|| {
        IngestError::damaged(format!(
            "the part catalog has no checksum for row group {i}"
        ))
    })?;
    if crc32fast::hash(&read_at(file, range)?) != *want {
        return Err(IngestError::damaged(format!(
            "checksum mismatch in row group {i} (bytes {}..{})",
            range.0, range.1
        )));
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct Line {
    part: String,
    #[serde(flatten)]
    sums: PartSums,
}

/// The part catalog: the checksums of every part, by file name.
#[derive(Debug)]
pub struct PartCatalog {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl PartCatalog {
    /// The catalog of the archive in `dir` (not read yet).
    pub fn new(dir: &Path) -> Self {
        Self {
            path: dir.join("parts.jsonl"),
            file: Mutex::new(None),
        }
    }

    /// Checksums recorded so far, by part file name (the last line of a name wins).
    pub fn load(&self) -> Result<HashMap<String, PartSums>, IngestError> {
        let mut out = HashMap::new();
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(IngestError::io("open", &self.path)(e)),
        };
        for (n, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(IngestError::io("read", &self.path))?;
            match serde_json::from_str::<Line>(&line) {
                Ok(l) => {
                    out.insert(l.part, l.sums);
                }
                // A torn last line: that part is checksummed again at open.
                Err(e) => {
                    warn!(path = %self.path.display(), line = n + 1, error = %e, "Skipping unreadable part catalog line.")
                }
            }
        }
        Ok(out)
    }

    /// Replaces the catalog with the lines of `parts` (the parts in place at open).
    pub fn rewrite<'a>(
        &self,
        parts: impl IntoIterator<Item = (&'a Path, &'a PartSums)>,
    ) -> Result<(), IngestError> {
        let mut buf = Vec::new();
        for (path, sums) in parts {
            line(path, sums, &mut buf);
        }
        let tmp = self.path.with_extension("jsonl.tmp");
        let mut f = File::create(&tmp).map_err(IngestError::io("create", &tmp))?;
        f.write_all(&buf).map_err(IngestError::io("write", &tmp))?;
        f.sync_all().map_err(IngestError::io("fsync", &tmp))?;
        fs::rename(&tmp, &self.path).map_err(IngestError::io("rename", &self.path))?;
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(())
    }

    /// Appends the checksums of the part at `path`, synced.
    pub fn record(&self, path: &Path, sums: &PartSums) -> Result<(), IngestError> {
        let mut buf = Vec::new();
        line(path, sums, &mut buf);
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if file.is_none() {
            *file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .map_err(IngestError::io("open", &self.path))?,
            );
        }
        let f = file.as_mut().expect("opened above");
        f.write_all(&buf)
            .map_err(IngestError::io("append", &self.path))?;
        f.sync_data().map_err(IngestError::io("fsync", &self.path))
    }
}

fn line(path: &Path, sums: &PartSums, out: &mut Vec<u8>) {
    let part = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    serde_json::to_writer(
        &mut *out,
        &Line {
            part,
            sums: sums.clone(),
        },
    )
    .expect("serialising checksums cannot fail");
    out.push(b'\n');
}

/// The `quarantine/` directory of an archive.
#[derive(Debug, Clone)]
pub struct Quarantine {
    dir: PathBuf,
}

impl Quarantine {
    /// The quarantine of the archive in `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("quarantine"),
        }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Damaged files waiting for an operator (`.reason` and `.sums` files and `repaired/` not
    /// counted).
    pub fn pending(&self) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "reason" && e != "sums"))
            .collect();
        out.sort();
        out
    }

    fn write_reason(&self, name: &str, reason: &str) {
        let path = self.dir.join(format!("{name}.reason"));
        if let Err(e) = fs::write(&path, format!("{reason}\n")) {
            warn!(path = %path.display(), error = %e, "Could not write a quarantine reason.");
        }
    }

    /// Moves the part at `path` into quarantine, with its checksums when known (so that
    /// `aiops archive repair` can tell its sound row groups); returns where it went.
    pub fn take(
        &self,
        path: &Path,
        reason: &str,
        sums: Option<&PartSums>,
    ) -> Result<PathBuf, IngestError> {
        fs::create_dir_all(&self.dir).map_err(IngestError::io("create directory", &self.dir))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "part".into());
        let to = self.dir.join(&name);
        if let Some(sums) = sums {
            let at = self.dir.join(format!("{name}.sums"));
            let json = serde_json::to_vec(sums).expect("serialising checksums cannot fail");
            if let Err(e) = fs::write(&at, json) {
                warn!(path = %at.display(), error = %e, "Could not keep a quarantined part's checksums.");
            }
        }
        fs::rename(path, &to).map_err(IngestError::io("move to quarantine", path))?;
        self.write_reason(&name, reason);
        Ok(to)
    }

    /// Keeps a copy of damaged bytes under `name`.
    pub fn keep(&self, name: &str, bytes: &[u8], reason: &str) -> Result<PathBuf, IngestError> {
        fs::create_dir_all(&self.dir).map_err(IngestError::io("create directory", &self.dir))?;
        let to = self.dir.join(name);
        fs::write(&to, bytes).map_err(IngestError::io("write", &to))?;
        self.write_reason(name, reason);
        Ok(to)
    }
}
