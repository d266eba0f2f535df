//! Sinks: rows made durable.
//!
//! Owns: buffering decoded rows per table (cumulative metrics converted as they are buffered,
//! through the state [`crate::stream`] keeps), Parquet segments (Hive-partitioned, written to a
//! temporary name, fsynced and renamed, idempotent on replay) in Delta's column types, each
//! table's Delta log (the files a reader counts), dead letters, and the mirror of every file to
//! object storage.
//!
//! Must not know: which source the rows came from or how its positions are committed, windows,
//! or the Pushgateway.

pub mod dead_letters;
pub mod mirror;
pub mod parquet_sink;
pub mod stored_types;
pub(crate) mod table_buffer;
pub mod table_log;

use std::sync::OnceLock;

use crate::EngineError;

/// Runs async I/O (an object store call, a Delta commit) to completion from any thread, inside
/// a runtime or not, as blocking as the fsync it stands beside, driven by one runtime the
/// process keeps for it.
///
/// That runtime is a multi-threaded one on purpose: on a current-thread runtime, delta-rs
/// starts a thread with a runtime of its own for every engine it makes (26 such threads were
/// alive at the Kafka memory-limit test's peak when each call built its own runtime).
pub fn on_own_runtime<T, F, Fut>(call: F) -> Result<T, EngineError>
where
    T: Send,
    F: FnOnce() -> Fut + Send,
    Fut: std::future::Future<Output = Result<T, EngineError>>,
{
    static RUNTIME: OnceLock<std::io::Result<tokio::runtime::Runtime>> = OnceLock::new();
    let runtime = RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                // object_store's local filesystem runs each call on a blocking thread. Not
                // capped: delta-rs's synchronous parts block on calls that take a second one,
                // and a cap of 2 deadlocked three tests committing at once. An idle one goes
                // after a second instead of ten, with its allocator heap.
                .thread_keep_alive(std::time::Duration::from_secs(1))
                .thread_name("burnrate-io")
                .enable_all()
                .build()
        })
        .as_ref()
        .map_err(|e| EngineError::Config(format!("cannot start the I/O runtime: {e}")))?;
    let handle = runtime.handle();
    // A runtime cannot be blocked on from inside another: such a caller lends a thread.
    if tokio::runtime::Handle::try_current().is_err() {
        return handle.block_on(call());
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| handle.block_on(call()))
            .join()
            .unwrap_or_else(|_| Err(EngineError::Config("an I/O call panicked".into())))
    })
}
