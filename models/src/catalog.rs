//! The series catalog: id → [`SeriesMeta`], shared by the sources (which fill it) and the API
//! (which reads it).

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

/// A concurrent map from [`SeriesId`] to [`SeriesMeta`]. Reads take a shared lock and never
/// allocate; the lock is never held across an `.await`.
#[derive(Debug, Default)]
pub struct SeriesCatalog {
    inner: RwLock<IdHashMap<Entry>>,
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
        self.read().len()
    }

    /// True when there are no series.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when `id` is known.
    pub fn contains(&self, id: SeriesId) -> bool {
        self.read().contains_key(&id)
    }

    /// The meta of `id`.
    pub fn get(&self, id: SeriesId) -> Option<Arc<SeriesMeta>> {
        self.read().get(&id).map(|e| e.meta.clone())
    }

    /// The second hash of the series holding `id` (see
    /// [`SeriesHasher::finish_check`](crate::SeriesHasher::finish_check)), without touching its
    /// meta: the receiver's hot path.
    #[inline]
    pub fn check_of(&self, id: SeriesId) -> Option<u64> {
        self.read().get(&id).map(|e| e.check)
    }

    /// Adds a series, detecting collisions.
    pub fn insert(&self, meta: Arc<SeriesMeta>) -> CatalogInsert {
        let check = meta.check();
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        match map.get(&meta.id) {
            Some(existing) if *existing.meta == *meta => CatalogInsert::Known,
            Some(existing) => CatalogInsert::Collision(existing.meta.clone()),
            None => {
                map.insert(meta.id, Entry { check, meta });
                CatalogInsert::New
            }
        }
    }

    /// A read view for many look-ups under one lock acquisition (the receiver decodes a whole
    /// request with one). Writers wait while it lives: keep it short and never across `.await`.
    pub fn view(&self) -> CatalogView<'_> {
        CatalogView { map: self.read() }
    }

    /// All series matching `selector`, sorted by metric name then labels, at most `limit`.
    pub fn select(&self, selector: &Selector, limit: usize) -> Vec<Arc<SeriesMeta>> {
        let mut out: Vec<Arc<SeriesMeta>> = self
            .read()
            .values()
            .filter(|e| selector.matches(&e.meta))
            .map(|e| e.meta.clone())
            .collect();
        out.sort_by(|a, b| (&a.metric, &a.labels).cmp(&(&b.metric, &b.labels)));
        out.truncate(limit);
        out
    }

    /// Every series, in no particular order.
    pub fn snapshot(&self) -> Vec<Arc<SeriesMeta>> {
        self.read().values().map(|e| e.meta.clone()).collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, IdHashMap<Entry>> {
        // A poisoned lock only means a panic elsewhere while holding it; the map itself is
        // always consistent (inserts are single operations).
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// See [`SeriesCatalog::view`].
#[derive(Debug)]
pub struct CatalogView<'a> {
    map: std::sync::RwLockReadGuard<'a, IdHashMap<Entry>>,
}

impl CatalogView<'_> {
    /// As [`SeriesCatalog::check_of`].
    #[inline]
    pub fn check_of(&self, id: SeriesId) -> Option<u64> {
        self.map.get(&id).map(|e| e.check)
    }

    /// As [`SeriesCatalog::get`].
    pub fn get(&self, id: SeriesId) -> Option<Arc<SeriesMeta>> {
        self.map.get(&id).map(|e| e.meta.clone())
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
