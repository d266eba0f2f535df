//! The process's allocator: mimalloc (measured, see the workspace Cargo.toml), told to give freed
//! memory back to the system after 500 ms rather than mimalloc 3's one second, with transparent
//! huge pages off for the process; and the C allocator's settings for what librdkafka allocates
//! (see [`return_freed_memory_promptly`]).
//!
//! Why: under a memory limit, memory freed but kept counts as resident. Measured 2026-12-02:
//! - draining a Kafka backlog under `memory_limit` 192 MiB (`tests/kafka.rs`, debug build), the
//!   peak RSS was 182-192 MiB with the default delay, 173 MiB at 100 ms, 156-162 MiB at 10 ms,
//!   each drain taking the same time;
//! - a files backfill of 342 MB (release build, alternating runs): peak RSS 472-505 MiB at the
//!   default, 441-443 MiB at 100 ms; time within the machine's noise at 100 ms (median 11.4 s
//!   against 10.8 s), but 11-25% slower in four of four pairs at 10 ms. Returning it at once
//!   (0 ms) had cost decoding 35-60%.
//!
//! And why huge pages go: mimalloc asks for them on its arenas (`MADV_HUGEPAGE`), so the first
//! touch of any memory there, fresh or given back by a purge, makes the kernel zero 2 MiB, and
//! the whole 2 MiB is resident however little of it is used. Measured 2026-12-04 (release,
//! `kafka_memory` at 512 MiB on 9 partitions, then `kafka_throughput` at 1,000,008 messages,
//! each the same hour): with huge pages off the peaks fell by 21 to 62 MiB (Tansu 437, 491, 473
//! → 399, 437, 452 MiB), which pays for a longer purge delay; with both, 500 ms and no huge
//! pages, 43,405 messages/s at 160% CPU against 37,205 at 159% as before (100 ms, huge pages):
//! 37 µs of CPU a message instead of 43, and 16.5M page faults instead of 19.5M. This build
//! against the one before, back to back: 43,435 against 41,760 messages/s, the whole bench's
//! CPU 399 s against 433 s; `kafka_memory`'s Tansu peaks 454, 452 and 481 MiB; the receiver
//! under 64 clients and a files backfill peaked at 231 and 466 MiB against 257 and 480 with the
//! old settings (see docs/benchmarks.md).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc 3's `mi_option_purge_delay`: its place in `mi_option_e` (mimalloc.h), which the
/// Rust bindings do not name. A test holds it to that option's default.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Milliseconds freed memory is kept before it goes back to the system (see above).
const PURGE_DELAY_MS: std::ffi::c_long = 500;

/// Sets the purge delay, unless the operator chose one with `MIMALLOC_PURGE_DELAY`; turns
/// transparent huge pages off for the process, unless the operator chose with
/// `MIMALLOC_ALLOW_THP` (mimalloc then does as told); and sets the C allocator's thresholds,
/// unless the operator set `GLIBC_TUNABLES`.
pub fn return_freed_memory_promptly() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets an integer option of the allocator; mimalloc reads it at each purge.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS) };
    }
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        disable_huge_pages();
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("GLIBC_TUNABLES").is_none() {
        fix_glibc_thresholds();
    }
}

/// What `MIMALLOC_ALLOW_THP=0` does, which mimalloc can only do as the process starts: the
/// kernel's flag that no page fault of this process gets a huge page, from now on. Mimalloc's
/// `MADV_HUGEPAGE` is then a no-op. Best effort: a kernel without the flag (before 3.15) fails
/// it, and huge pages stay as the system has them.
#[cfg(target_os = "linux")]
fn disable_huge_pages() {
    // The kernel reads each argument as a whole word; the unused ones must be zero.
    let (on, unused): (libc::c_ulong, libc::c_ulong) = (1, 0);
    // SAFETY: sets a flag of this process's memory map; takes no pointers.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, on, unused, unused, unused) };
}

/// Above this size glibc's `malloc` maps each block on its own, and unmaps it when freed; its
/// heaps give back what lies free at their top beyond the same size. zstd's compressor, which
/// allocates with `malloc` too, takes 200 KB to 1.6 MB a column chunk (pages of 13 KB to 1 MB),
/// so each is mapped afresh; at 4 MiB (from the heaps, reused) a Kafka catch-up was no faster:
/// 45.4 and 39.4 µs of CPU a message against 40.8 and 38.8 (`kafka_throughput`, 360,000
/// messages, 2026-12-06). Set through `GLIBC_TUNABLES`, which reaches the broker's process too,
/// it looked 8% faster: that was the broker's share.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const GLIBC_THRESHOLD: std::ffi::c_int = 128 << 10;

/// librdkafka allocates with the C library's `malloc`, not mimalloc: its fetch answers, the
/// buffers it decompresses them into, its queued messages. glibc starts mapping blocks of over
/// 128 KiB on their own, but each such block freed raises that threshold to its size (up to 32
/// MiB), and then blocks of that size come from its heaps and stay resident once freed. Tansu
/// answers with blocks of 8 to 20 MB, so draining it under the 512 MiB default, glibc held 150
/// to 285 MB free (`mallinfo2`) beside 20 to 100 MB in use, and the process's resident size sat
/// at 0.83 to 1.0 of `memory_limit` while the budget held 70 MB: every hold of the Kafka source
/// was for the resident size, none for the budget (2026-12-04, `kafka_throughput` at 108,000
/// messages). Setting the thresholds fixes them (glibc stops moving them): glibc then held 10 to
/// 36 MB free, the resident size at the holds was 0.52 to 0.74, and 94 of 106 holds were the
/// budget's.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn fix_glibc_thresholds() {
    for option in [libc::M_MMAP_THRESHOLD, libc::M_TRIM_THRESHOLD] {
        // SAFETY: sets an integer option of glibc's allocator; it takes effect for the
        // allocations after it, whichever thread makes them. It fails only for a mapping
        // threshold over 32 MiB, so what it returns is not looked at (this runs before logging).
        unsafe { libc::mallopt(option, GLIBC_THRESHOLD) };
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

#[cfg(target_os = "linux")]
#[test]
fn huge_pages_are_off_for_the_process() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    return_freed_memory_promptly();
    let unused: libc::c_ulong = 0;
    // SAFETY: reads a flag of this process's memory map.
    let disabled = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, unused, unused, unused, unused) };
    assert_eq!(disabled, 1, "PR_GET_THP_DISABLE answered {disabled}");
    // What the kernel reports for the process (Linux 5.0 and later).
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:"))
    {
        assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn blocks_the_c_allocator_frees_go_back_to_the_system() {
    if std::env::var_os("GLIBC_TUNABLES").is_some() {
        return;
    }
    return_freed_memory_promptly();
    // Left to itself, glibc maps the first block on its own and, once it is freed, takes the
    // second (smaller, but over its raised threshold no more) from a heap that keeps it.
    for block in [8usize << 20, 4 << 20] {
        // SAFETY: a block of C memory, freed once below and not used otherwise.
        unsafe {
            let before = libc::mallinfo2().hblkhd;
            let memory = libc::malloc(block);
            assert!(!memory.is_null());
            let mapped = libc::mallinfo2().hblkhd;
            libc::free(memory);
            assert!(
                mapped >= before + block,
                "a block of {block} bytes not mapped on its own ({before} then {mapped} bytes mapped)"
            );
        }
    }
}
