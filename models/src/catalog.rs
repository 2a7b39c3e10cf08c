//! The series catalog: id → [`SeriesMeta`], shared by the sources (which fill it) and the API
//! (which reads it).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use crate::{IdHashMap, Selector, SeriesId, SeriesMeta};

/// What [`SeriesCatalog::insert`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogInsert {
    /// The series was new and is now in the catalog.
    New,
    /// The same series was already there.
    Known,
    /// A different series already holds this id (see the crate docs on collisions).
    Collision(Arc<SeriesMeta>),
}

/// Shards of the catalog: a writer locks one shard, a scan locks one shard at a time, so
/// inserting new series never waits for a long scan and a scan never stalls the receivers.
const SHARDS: usize = 64;

/// A concurrent map from [`SeriesId`] to [`SeriesMeta`], split into [`SHARDS`] independently
/// locked shards (by the id's top bits; ids are hashes, so shards fill evenly). Reads take a
/// shared lock on one shard and never allocate; no lock is held across an `.await` or longer
/// than one shard's scan.
#[derive(Debug)]
pub struct SeriesCatalog {
    shards: Box<[RwLock<IdHashMap<Entry>>]>,
    len: AtomicUsize,
    bytes: AtomicUsize,
}

impl Default for SeriesCatalog {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            len: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
        }
    }
}

#[derive(Debug)]
struct Entry {
    check: u64,
    meta: Arc<SeriesMeta>,
}

impl SeriesCatalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Bytes held by the catalog, estimated (the maps' entries and every meta).
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// True when there are no series.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when `id` is known.
    pub fn contains(&self, id: SeriesId) -> bool {
        self.shard(id).contains_key(&id)
    }

    /// The meta of `id`.
    pub fn get(&self, id: SeriesId) -> Option<Arc<SeriesMeta>> {
        self.shard(id).get(&id).map(|e| e.meta.clone())
    }

    /// The second hash of the series holding `id` (see
    /// [`SeriesHasher::finish_check`](crate::SeriesHasher::finish_check)), without touching its
    /// meta: the receiver's hot path.
    #[inline]
    pub fn check_of(&self, id: SeriesId) -> Option<u64> {
        self.shard(id).get(&id).map(|e| e.check)
    }

    /// Adds a series, detecting collisions.
    pub fn insert(&self, meta: Arc<SeriesMeta>) -> CatalogInsert {
        let check = meta.check();
        let mut map = self.shards[shard_of(meta.id)]
            .write()
            .unwrap_or_else(|p| p.into_inner());
        match map.get(&meta.id) {
            Some(existing) if *existing.meta == *meta => CatalogInsert::Known,
            Some(existing) => CatalogInsert::Collision(existing.meta.clone()),
            None => {
                // The entry in the map (with its control byte, at 7/8 load) and the meta.
                let bytes =
                    (std::mem::size_of::<(SeriesId, Entry)>() + 1) * 8 / 7 + meta.heap_bytes();
                map.insert(meta.id, Entry { check, meta });
                self.len.fetch_add(1, Ordering::Relaxed);
                self.bytes.fetch_add(bytes, Ordering::Relaxed);
                CatalogInsert::New
            }
        }
    }

    /// A read view for many look-ups (the receiver decodes a whole request with one).
    pub fn view(&self) -> CatalogView<'_> {
        CatalogView { catalog: self }
    }

    /// All series matching `selector`, sorted by metric name then labels, at most `limit`.
    pub fn select(&self, selector: &Selector, limit: usize) -> Vec<Arc<SeriesMeta>> {
        let mut out = Vec::new();
        self.scan(|meta| {
            if selector.matches(meta) {
                out.push(meta.clone());
            }
            true
        });
        out.sort_by(|a, b| (&a.metric, &a.labels).cmp(&(&b.metric, &b.labels)));
        out.truncate(limit);
        out
    }

    /// Calls `visit` with every series, one shard at a time (each shard's read lock held only
    /// while that shard is visited), until it returns false. Series inserted meanwhile may or
    /// may not be visited. Returns how many were visited.
    pub fn scan(&self, mut visit: impl FnMut(&Arc<SeriesMeta>) -> bool) -> usize {
        let mut n = 0;
        for shard in self.shards.iter() {
            let map = shard.read().unwrap_or_else(|p| p.into_inner());
            for e in map.values() {
                n += 1;
                if !visit(&e.meta) {
                    return n;
                }
            }
        }
        n
    }

    /// Every series, in no particular order.
    pub fn snapshot(&self) -> Vec<Arc<SeriesMeta>> {
        let mut out = Vec::with_capacity(self.len());
        self.scan(|m| {
            out.push(m.clone());
            true
        });
        out
    }

    fn shard(&self, id: SeriesId) -> std::sync::RwLockReadGuard<'_, IdHashMap<Entry>> {
        // A poisoned lock only means a panic elsewhere while holding it; the map itself is
        // always consistent (inserts are single operations).
        self.shards[shard_of(id)]
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }
}

#[inline]
fn shard_of(id: SeriesId) -> usize {
    // The hash map uses the low bits (bucket) and the top seven (tag): the shard takes bits
    // from the middle so neither loses entropy.
    (id.0 >> 40) as usize % SHARDS
}

/// See [`SeriesCatalog::view`].
#[derive(Debug)]
pub struct CatalogView<'a> {
    catalog: &'a SeriesCatalog,
}

impl CatalogView<'_> {
    /// As [`SeriesCatalog::check_of`].
    #[inline]
    pub fn check_of(&self, id: SeriesId) -> Option<u64> {
        self.catalog.check_of(id)
    }

    /// As [`SeriesCatalog::get`].
    pub fn get(&self, id: SeriesId) -> Option<Arc<SeriesMeta>> {
        self.catalog.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Source;

    fn meta(metric: &str, job: &str) -> Arc<SeriesMeta> {
        Arc::new(SeriesMeta::new(
            Source::Prometheus,
            metric,
            [("job".to_owned(), job.to_owned())],
        ))
    }

    #[test]
    fn insert_reports_new_then_known() {
        let c = SeriesCatalog::new();
        assert_eq!(c.insert(meta("up", "a")), CatalogInsert::New);
        assert_eq!(c.insert(meta("up", "a")), CatalogInsert::Known);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn detects_collisions() {
        let c = SeriesCatalog::new();
        let a = meta("up", "a");
        c.insert(a.clone());
        let mut forged = (*meta("up", "b")).clone();
        forged.id = a.id;
        assert!(matches!(c.insert(Arc::new(forged)), CatalogInsert::Collision(m) if m == a));
        assert_eq!(c.get(a.id), Some(a));
    }

    #[test]
    fn selects_by_matchers() {
        let c = SeriesCatalog::new();
        for (m, j) in [("up", "a"), ("up", "b"), ("down", "a")] {
            c.insert(meta(m, j));
        }
        let sel: Selector = r#"up{job=~"a|b"}"#.parse().expect("valid");
        assert_eq!(c.select(&sel, 10).len(), 2);
        let sel: Selector = r#"{job="a"}"#.parse().expect("valid");
        let got = c.select(&sel, 10);
        assert_eq!(
            got.iter().map(|m| m.metric.as_str()).collect::<Vec<_>>(),
            ["down", "up"]
        );
        assert_eq!(c.select(&sel, 1).len(), 1);
    }
}
