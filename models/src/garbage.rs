//! What counts as garbage in a series: a value far beyond everything it has shown — an
//! exporter's overflow (2⁶⁴ − 1 for "unknown"), a unit slip, a corrupt sample — in a short run.
//!
//! One rule for every stage that learns from or ranks by values: the detector reports such a
//! value and does not learn it, the load forecaster and training leave it out, and the
//! root-cause ranking measures no move by it. A series that really moved that far stays far
//! for longer than [`RUN`] samples, and is followed from then on.

/// How far beyond a series' range (in spans of that range) a value is garbage: far past any
/// spike a series shows (a latency spike 100 times the usual spread is 100 ranges out at most),
/// well short of garbage (10⁹ on a series spread over 25 is 4·10⁷ ranges out).
pub const RANGES: f64 = 1e4;

/// The longest run of such values that is garbage; a longer one is a real move.
pub const RUN: u32 = 3;

/// Whether `value` is more than [`RANGES`] spans of `lo..=hi` beyond it (never when the span
/// is 0 or less: a series that has never varied, whose first change is news).
#[inline]
pub fn far_beyond(value: f64, lo: f64, hi: f64) -> bool {
    let span = hi - lo;
    span > 0.0 && (value - hi).max(lo - value) > RANGES * span
}

/// The middle 98 % of a history's values (`sorted`: ascending, finite), as `(lo, hi)` — at least
/// the [`RUN`] smallest and largest left out, so a run of garbage in a short history is not part
/// of the range it is judged by (`None`: fewer than eight values, too few to tell).
pub fn middle(sorted: &[f64]) -> Option<(f64, f64)> {
    let n = sorted.len();
    let k = (n / 100).max(RUN as usize);
    (n >= 2 * k + 2).then(|| (sorted[k], sorted[n - 1 - k]))
}

/// [`middle`] of `values` in any order (a sorted copy is made).
pub fn middle_of(values: &[f64]) -> Option<(f64, f64)> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    middle(&sorted)
}

/// Whether a counter's reading `now` is held back — the next reading stepped from `from`, the
/// reading before it — because its step from `from` is garbage (`garbage`): only a reading
/// that went up (one that went down is the honest reading after garbage, read as a reset), and
/// only when `from` was not held back already (then `from` is the suspect: a spurious low
/// reading read as a reset). Live scoring (the detector's judgement) and training (the
/// history's middle) step counters by it.
pub fn holds_back(from: f64, now: f64, garbage: bool, from_held: bool) -> bool {
    garbage && now >= from && !from_held
}

/// Which of `values` (in time order, finite) are garbage by the range of `middle` (see
/// [`middle`]): runs of at most [`RUN`] values in a row [`far_beyond`] it. A longer run is a
/// series that really moved there, and is kept.
pub fn garbage_runs(values: &[f64], (lo, hi): (f64, f64)) -> Vec<bool> {
    let mut out = vec![false; values.len()];
    let mut start = 0;
    while start < values.len() {
        if !far_beyond(values[start], lo, hi) {
            start += 1;
            continue;
        }
        let end = (start..values.len())
            .find(|&i| !far_beyond(values[i], lo, hi))
            .unwrap_or(values.len());
        if end - start <= RUN as usize {
            out[start..end].fill(true);
        }
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn far_beyond_needs_ten_thousand_spans_and_a_series_that_varied() {
        assert!(far_beyond(1e9, 90.0, 110.0));
        assert!(far_beyond(-1e9, 90.0, 110.0));
        assert!(!far_beyond(110.0 + 2e5, 90.0, 110.0));
        assert!(far_beyond(110.0 + 2.1e5, 90.0, 110.0));
        assert!(!far_beyond(1e9, 5.0, 5.0));
    }

    #[test]
    fn the_middle_leaves_at_least_a_run_out_at_each_end() {
        assert_eq!(middle(&[1.0; 7]), None);
        let short = [-1e9, 1.0, 1.0, 2.0, 3.0, 3.0, 1e9, 1e9];
        assert_eq!(middle(&short), Some((2.0, 3.0)));
        let many: Vec<f64> = (0..1000).map(f64::from).collect();
        assert_eq!(middle(&many), Some((10.0, 989.0)));
    }

    #[test]
    fn only_a_garbage_reading_that_went_up_is_held_back_and_only_once() {
        assert!(holds_back(5_000.0, 1e9, true, false));
        assert!(!holds_back(5_000.0, 1e9, false, false), "not garbage");
        assert!(!holds_back(1e9, 5_010.0, true, false), "went down: a reset");
        assert!(
            !holds_back(0.0, 5_010.0, true, true),
            "from held back already"
        );
        assert_eq!(
            middle_of(&[3.0, 1.0, 2.0, 8.0, 7.0, 6.0, 5.0, 4.0]),
            Some((4.0, 5.0))
        );
    }

    #[test]
    fn short_runs_far_out_are_garbage_and_a_long_one_is_a_move() {
        let mut v = vec![100.0, 101.0, 1e9, 99.0, 1e9, 1e9, 1e9, 100.0];
        v.extend([5e8; 4]);
        let g = garbage_runs(&v, (99.0, 101.0));
        assert_eq!(
            g,
            [
                false, false, true, false, true, true, true, false, false, false, false, false
            ]
        );
    }
}
