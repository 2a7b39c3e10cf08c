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
    inner: RwLock<IdHashMap<Arc<SeriesMeta>>>,
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
        self.read().get(&id).cloned()
    }

    /// Adds a series, detecting collisions.
    pub fn insert(&self, meta: Arc<SeriesMeta>) -> CatalogInsert {
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        match map.get(&meta.id) {
            Some(existing) if **existing == *meta => CatalogInsert::Known,
            Some(existing) => CatalogInsert::Collision(existing.clone()),
            None => {
                map.insert(meta.id, meta);
                CatalogInsert::New
            }
        }
    }

    /// All series matching `selector`, sorted by metric name then labels, at most `limit`.
    pub fn select(&self, selector: &Selector, limit: usize) -> Vec<Arc<SeriesMeta>> {
        let mut out: Vec<Arc<SeriesMeta>> = self
            .read()
            .values()
            .filter(|m| selector.matches(m))
            .cloned()
            .collect();
        out.sort_by(|a, b| (&a.metric, &a.labels).cmp(&(&b.metric, &b.labels)));
        out.truncate(limit);
        out
    }

    /// Every series, in no particular order.
    pub fn snapshot(&self) -> Vec<Arc<SeriesMeta>> {
        self.read().values().cloned().collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, IdHashMap<Arc<SeriesMeta>>> {
        // A poisoned lock only means a panic elsewhere while holding it; the map itself is
        // always consistent (inserts are single operations).
        self.inner.read().unwrap_or_else(|p| p.into_inner())
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
