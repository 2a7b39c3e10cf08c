//! Prefetching a series' state before it is scored. At a hundred thousand series and more the
//! state (about a kilobyte a series) is far out of cache; scoring a run of samples waits on
//! memory more than it computes. The next run's state is fetched while this one is scored.

/// Asks the CPU to bring every cache line of `*value` into cache, without waiting for it (a
/// hint: never faults, never changes what the program computes).
#[allow(unsafe_code)]
pub fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let start = value as *const T as *const i8;
        for offset in (0..std::mem::size_of::<T>()).step_by(64) {
            // SAFETY: a prefetch does not access memory architecturally; the address is inside
            // `*value`, which the borrow keeps alive.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(offset)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
