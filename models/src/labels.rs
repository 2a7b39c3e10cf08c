//! A series' labels, kept compactly: the catalog holds one [`Labels`] per series for as long as
//! the series lives — a million of them on a large node.
//!
//! As `Vec<(String, String)>` six labels cost 13 allocations and about 450 bytes; here the names
//! and values are back to back in one string and their end offsets in one slice: two
//! allocations, about 200 bytes.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Label pairs sorted by name, names unique (`__name__` is not among them: it is the metric).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels {
    /// `name₀ value₀ name₁ value₁ …` without separators.
    text: Box<str>,
    /// Where each name and value ends in `text`.
    ends: Box<[u32]>,
}

impl Labels {
    /// Labels from pairs already sorted by name with unique names (not checked).
    ///
    /// # Panics
    /// When the text is over 4 GiB.
    pub fn from_sorted<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut text = String::new();
        let mut ends = Vec::new();
        for (n, v) in pairs {
            for part in [n, v] {
                text.push_str(part);
                ends.push(u32::try_from(text.len()).expect("labels under 4 GiB"));
            }
        }
        Self {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }

    /// Labels from pairs in any order: sorted by name, the first of a repeated name kept.
    pub fn new(mut pairs: Vec<(String, String)>) -> Self {
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs.dedup_by(|a, b| a.0 == b.0);
        Self::from_sorted(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())))
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.ends.len() / 2
    }

    /// True without any pair.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn part(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }

    /// The `i`th pair.
    pub fn pair(&self, i: usize) -> (&str, &str) {
        (self.part(2 * i), self.part(2 * i + 1))
    }

    /// The pairs, sorted by name.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            labels: self,
            next: 0,
            end: self.len(),
        }
    }

    /// The value of label `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let (n, v) = self.pair(mid);
            match n.cmp(name) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(v),
            }
        }
        None
    }

    /// The pairs as owned strings.
    pub fn to_vec(&self) -> Vec<(String, String)> {
        self.iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect()
    }

    /// Bytes on the heap (the allocator rounds each allocation up to 16).
    pub fn heap_bytes(&self) -> usize {
        let alloc = |n: usize| if n == 0 { 0 } else { n.div_ceil(16) * 16 };
        alloc(self.text.len()) + alloc(self.ends.len() * 4)
    }
}

/// The pairs of a [`Labels`], in name order.
#[derive(Clone, Debug)]
pub struct Iter<'a> {
    labels: &'a Labels,
    next: usize,
    end: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        (self.next < self.end).then(|| {
            self.next += 1;
            self.labels.pair(self.next - 1)
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.end - self.next, Some(self.end - self.next))
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        (self.next < self.end).then(|| {
            self.end -= 1;
            self.labels.pair(self.end)
        })
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Labels {
    type Item = (&'a str, &'a str);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// Ordered as the list of pairs (as `Vec<(String, String)>` was).
impl Ord for Labels {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.iter().cmp(other.iter())
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Debug for Labels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Written as the list of `[name, value]` pairs a `Vec<(String, String)>` makes, so that what
/// was stored before reads the same.
impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<(String, String)>::deserialize(d).map(Self::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pairs_come_back_sorted_and_found_by_name() {
        let l = Labels::new(pairs(&[
            ("pod", "web-1"),
            ("job", "api"),
            ("empty", ""),
            ("job", "dup"),
            ("ns", "shop"),
        ]));
        assert_eq!(l.len(), 4);
        assert_eq!(
            l.to_vec(),
            pairs(&[
                ("empty", ""),
                ("job", "api"),
                ("ns", "shop"),
                ("pod", "web-1")
            ])
        );
        assert_eq!(l.get("job"), Some("api"));
        assert_eq!(l.get("empty"), Some(""));
        assert_eq!(l.get("nope"), None);
        assert_eq!(l.iter().next_back(), Some(("pod", "web-1")));
        assert!(Labels::default().is_empty());
        assert_eq!(Labels::default().get("a"), None);
    }

    #[test]
    fn serialised_like_a_vector_of_pairs() {
        let old = pairs(&[("a", "1"), ("b", "x\"y")]);
        let json = serde_json::to_string(&old).expect("json");
        let l: Labels = serde_json::from_str(&json).expect("reads the old form");
        assert_eq!(serde_json::to_string(&l).expect("json"), json);
        let bin = postcard::to_allocvec(&old).expect("postcard");
        let l2: Labels = postcard::from_bytes(&bin).expect("reads the old form");
        assert_eq!(postcard::to_allocvec(&l2).expect("postcard"), bin);
        assert_eq!(l, l2);
    }

    #[test]
    fn smaller_than_a_vector_of_strings() {
        let p = pairs(&[
            ("container", "app"),
            ("instance", "10.0.3.17:9100"),
            ("job", "kubernetes-pods"),
            ("namespace", "shop"),
            ("node", "node-17"),
            ("pod", "checkout-7d9f8b6c5-x2x4q"),
        ]);
        let vec_bytes = p.len() * 48
            + p.iter()
                .map(|(n, v)| n.len().div_ceil(16) * 16 + v.len().div_ceil(16) * 16)
                .sum::<usize>();
        let l = Labels::new(p);
        assert!(
            l.heap_bytes() * 2 < vec_bytes,
            "{} vs {vec_bytes}",
            l.heap_bytes()
        );
    }
}
