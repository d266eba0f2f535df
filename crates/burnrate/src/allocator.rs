//! The process's allocator: mimalloc (measured, see the workspace Cargo.toml), told to give freed
//! memory back to the system after 100 ms rather than mimalloc 3's one second.
//!
//! Why: under a memory limit, memory freed but kept counts as resident. Measured 2026-12-02:
//! - draining a Kafka backlog under `memory_limit` 192 MiB (`tests/kafka.rs`, debug build), the
//!   peak RSS was 182-192 MiB with the default delay, 173 MiB at 100 ms, 156-162 MiB at 10 ms,
//!   each drain taking the same time;
//! - a files backfill of 342 MB (release build, alternating runs): peak RSS 472-505 MiB at the
//!   default, 441-443 MiB at 100 ms; time within the machine's noise at 100 ms (median 11.4 s
//!   against 10.8 s), but 11-25% slower in four of four pairs at 10 ms. Returning it at once
//!   (0 ms) had cost decoding 35-60%.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc 3's `mi_option_purge_delay`: its place in `mi_option_e` (mimalloc.h), which the
/// Rust bindings do not name. A test holds it to that option's default.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Milliseconds freed memory is kept before it goes back to the system (see above).
const PURGE_DELAY_MS: std::ffi::c_long = 100;

/// Sets the purge delay, unless the operator chose one with `MIMALLOC_PURGE_DELAY`.
pub fn return_freed_memory_promptly() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets an integer option of the allocator; mimalloc reads it at each purge.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS) };
    }
}

// Not a `mod tests` with imports: benches include this file, and there the test is left out.
#[test]
fn the_option_set_is_the_purge_delay() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: reads an integer option of the allocator.
        let default = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        assert!(
            default == 1000 || default == PURGE_DELAY_MS,
            "option {PURGE_DELAY} is {default}: not mimalloc 3's purge delay (default 1000 ms)"
        );
    }
    return_freed_memory_promptly();
    // SAFETY: as above.
    let set = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
    match std::env::var("MIMALLOC_PURGE_DELAY") {
        Ok(chosen) => assert_eq!(set.to_string(), chosen),
        Err(_) => assert_eq!(set, PURGE_DELAY_MS),
    }
}
