//! Each table's Delta Lake log (`<table>/_delta_log/`): the table of contents readers go by. A
//! Parquet file counts from the commit that adds it until the commit that removes it; a file in
//! the directory that no commit added (a crashed flush's) is never read.
//!
//! Owns: creating a table's log (its Delta schema from the table's Arrow schema, partitioned by
//! `date`), adopting the files of a dataset written before the logs existed (plain
//! Hive-partitioned Parquet, kept as it is, not rewritten), committing the files a flush made
//! durable or a replay removed, and listing a table's files at its latest version; the same for
//! a table's log on object storage ([`ObjectLog`]), which [`crate::sink::mirror`] is handed
//! every local commit for. A dataset can also be written with no logs at all
//! ([`write_without_logs`]).
//!
//! Must not know: which source wrote a file or what its name means; that is the caller's.
//!
//! Every writer reaches the log through [`crate::ParquetSink::write_segment`] and
//! [`crate::sink::parquet_sink::remove_segments`], so a process keeps one open log per table
//! here, found by the table's directory, and its commits to one table take turns.
//!
//! A flush's commit is a blind append: it only adds files no one else names, so it conflicts
//! with nothing and needs no snapshot of the table. It is written as the next version with
//! put-if-absent; when another process (a second Kafka member on one volume) took that
//! version, it goes on the next free one. delta-rs's own commit path instead reloads the
//! table's state and lists its log on every commit: 95 ms a commit at first and 230 ms after
//! 300 in the test build, against 8 ms for the flush's Parquet file (`benches/table_log.rs`),
//! and the Kafka memory-limit test peaked at 232-247 MiB with it (177 MiB without the logs).
//! Removals read the table afresh and go through delta-rs's commit with its conflict checks:
//! they are rare (a replay's start) and must not race a rewrite of the same files. Every
//! hundredth commit (the table's `delta.checkpointInterval`) also writes a checkpoint, so a
//! reader replays at most that many commit files, and then removes the log files older than
//! the table's `delta.logRetentionDuration` (7 days on the tables burnrate creates).

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use buoyant_kernel::Engine;
use buoyant_kernel::snapshot::CheckpointWriteResult;
use buoyant_kernel_engine::DefaultEngineBuilder;
use buoyant_kernel_engine::executor::tokio::{TokioBackgroundExecutor, TokioMultiThreadExecutor};
use burnrate_otlp::Table;
use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake_core::kernel::transaction::{
    CommitBuilder, CommitData, CommitProperties, PROTOCOL, TransactionError,
};
use deltalake_core::kernel::{
    Action, Add, DataType, PrimitiveType, Remove, StructField, Transaction, Version,
};
use deltalake_core::logstore::{
    CommitOrBytes, LogStore, LogStoreConfig, LogStoreRef, StorageConfig, default_logstore,
    get_latest_version,
};
use deltalake_core::operations::create::CreateBuilder;
use deltalake_core::operations::vacuum::VacuumMode;
use deltalake_core::protocol::checkpoints::cleanup_expired_logs_for;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::table::config::{TablePropertiesExt, TableProperty};
use deltalake_core::table::state::DeltaTableState;
use deltalake_core::{DeltaResult, DeltaTable, DeltaTableBuilder, DeltaTableError};
use uuid::Uuid;

use crate::EngineError;
use crate::sink::parquet_sink::{segment_files, sync_dir};
use crate::sink::stored_types;
use crate::sink::{mirror, on_own_runtime};

/// The partition column every table is split by: the UTC day of its time column.
pub const PARTITION_COLUMN: &str = "date";

/// The directory of a table's log, inside the table's directory.
pub const LOG_DIR: &str = "_delta_log";

/// A commit that keeps finding its version taken gives up after this many: another writer is
/// committing faster than this one can follow, and the flush is retried later.
const APPEND_ATTEMPTS: usize = 1_000;

/// How many log files the log's engine reads ahead. delta-kernel's default engine reads up to
/// 1,000 at once; at 2,000 commits of `api_requests` the bench's process peaked at 124 MiB with
/// that and 68 MiB with 8, and a reader opened the table in about the same time.
const LOG_READ_AHEAD: NonZeroUsize = NonZeroUsize::new(8).expect("non-zero");

/// The positions table, below a dataset's root: a Delta table with no rows, whose log holds
/// the positions sources have made durable as transaction ids (`txn`: an app id and a version),
/// as delta-io's kafka-delta-ingest keeps its offsets. A flush spans several tables, each with
/// its own log, so its positions go here once every table has committed it.
pub const POSITIONS_DIR: &str = "_burnrate/positions";

/// Rows in a batch of the log as the log's engine reads it. Each JSON commit file being read
/// gets a decoder sized for a whole batch of the log's wide schema: at delta-kernel's 1,000
/// rows, 8 files read ahead held about 13 MiB; a commit holds a few actions.
const LOG_BATCH_ROWS: NonZeroUsize = NonZeroUsize::new(64).expect("non-zero");

/// Rows in a batch of a checkpoint (Parquet) as the log's engine reads it: delta-kernel's
/// default. A checkpoint is one file, read column by column; at 64-row batches, opening a table
/// whose checkpoint holds 97,000 tombstones (a compacted quarter) took 0.8 s instead of 0.1.
const CHECKPOINT_BATCH_ROWS: NonZeroUsize = NonZeroUsize::new(1024).expect("non-zero");

/// The log retention burnrate gives the tables it creates: a week of time travel, and a bounded
/// `_delta_log` (a flush every 10 s is about 60,000 commit files a week per table).
const CREATED_LOG_RETENTION: &str = "interval 7 days";

/// A data file as a table's log lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedFile {
    /// Below the table's directory: `date=YYYY-MM-DD/<segment>.parquet`.
    pub path: String,
    /// The file's `date` partition value.
    pub date: String,
    /// Bytes.
    pub size: u64,
}

/// A data file a flush made durable, to be added to its table's log.
#[derive(Debug, Clone)]
pub struct DurableFile {
    pub table: Table,
    /// Where it is: `<root>/<table>/date=<date>/<segment>.parquet`.
    pub path: PathBuf,
    pub date: String,
    pub rows: usize,
}

/// What opening a table's log found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// The log was there, at this version.
    Existing { version: u64 },
    /// There was no log: one was created, listing the files the directory already held.
    Adopted { files: usize },
}

/// What a log describes.
#[derive(Debug, Clone, Copy)]
enum LogKind {
    /// One of the dataset's tables, partitioned by `date`.
    Data(Table),
    /// The positions table ([`POSITIONS_DIR`]).
    Positions,
}

/// Datasets written as plain Parquet, with no logs ([`write_without_logs`]).
fn unlogged() -> &'static Mutex<Vec<PathBuf>> {
    static ROOTS: OnceLock<Mutex<Vec<PathBuf>>> = OnceLock::new();
    ROOTS.get_or_init(Mutex::default)
}

/// From now on, the files written or removed under `root` are committed to no log and the
/// sources' positions to no positions table: the dataset as burnrate wrote it before the logs,
/// plain Hive-partitioned Parquet that readers list, exactly-once by file names alone (a replay
/// rewrites the same names). What the ingest benches measure the logs against
/// (`table_logs = false`). Refused for a dataset that has a log, whose readers would never see
/// the files written without it.
pub fn write_without_logs(root: &Path) -> Result<(), EngineError> {
    let logged: Vec<&str> = Table::ALL
        .iter()
        .filter(|table| has_log(&root.join(table.name())))
        .map(|table| table.name())
        .collect();
    if !logged.is_empty() {
        return Err(EngineError::Config(format!(
            "{}: its tables {} have Delta logs, whose readers would not see files written without them; keep table_logs = true",
            root.display(),
            logged.join(", ")
        )));
    }
    let root = std::path::absolute(root).map_err(|e| EngineError::io(root, e))?;
    let mut roots = unlogged()
        .lock()
        .map_err(|_| EngineError::Config("the table log registry panicked".into()))?;
    if !roots.contains(&root) {
        roots.push(root);
    }
    Ok(())
}

/// Whether the dataset at `root` is written without logs.
pub fn without_logs(root: &Path) -> bool {
    let Ok(roots) = unlogged().lock() else {
        return false;
    };
    !roots.is_empty() && std::path::absolute(root).is_ok_and(|root| roots.contains(&root))
}

/// Commits `positions` (an app id and the version it has reached, for instance a partition's
/// next offset) to the positions table under `root`, in one commit. Call once what they cover
/// is committed to every data table: a source resumes from them.
pub fn commit_positions(root: &Path, positions: &[(String, i64)]) -> Result<(), EngineError> {
    if positions.is_empty() || without_logs(root) {
        return Ok(());
    }
    let updated = chrono::Utc::now().timestamp_millis();
    let actions = positions
        .iter()
        .map(|(app_id, version)| {
            Action::Txn(Transaction {
                app_id: app_id.clone(),
                version: *version,
                last_updated: Some(updated),
            })
        })
        .collect();
    let dir = root.join(POSITIONS_DIR);
    let log = log_of(&dir)?;
    let mut guard = log
        .lock()
        .map_err(|_| EngineError::Config("the positions log panicked".into()))?;
    let log: &mut TableLog = &mut guard;
    on_own_runtime(|| async {
        log.open(LogKind::Positions).await?;
        log.append(actions).await
    })
}

/// The version the positions table under `root` holds for each of `app_ids` that has one,
/// read afresh.
pub fn logged_positions(
    root: &Path,
    app_ids: &[String],
) -> Result<HashMap<String, i64>, EngineError> {
    let dir = root.join(POSITIONS_DIR);
    if !has_log(&dir) || app_ids.is_empty() {
        return Ok(HashMap::new());
    }
    on_own_runtime(|| async {
        let table = load_table(&dir).await?;
        let state = table.snapshot().map_err(|e| log_error(dir.display(), e))?;
        let mut positions = HashMap::new();
        for app_id in app_ids {
            let version = state
                .transaction_version(table.log_store().as_ref(), app_id)
                .await
                .map_err(|e| log_error(dir.display(), e))?;
            if let Some(version) = version {
                positions.insert(app_id.clone(), version);
            }
        }
        Ok(positions)
    })
}

/// Whether `table_dir` holds a Delta log.
pub fn has_log(table_dir: &Path) -> bool {
    table_dir.join(LOG_DIR).is_dir()
}

/// Commits `files` to their tables' logs, one commit per table, creating a log where there is
/// none. Call only once the files are durable: a reader may read them at once.
pub fn add_files(root: &Path, files: &[DurableFile]) -> Result<(), EngineError> {
    if without_logs(root) {
        return Ok(());
    }
    let mut by_table: BTreeMap<Table, Vec<Action>> = BTreeMap::new();
    for file in files {
        by_table
            .entry(file.table)
            .or_default()
            .push(Action::Add(add_action(root, file)?));
    }
    for (table, actions) in by_table {
        let log = log_of(&root.join(table.name()))?;
        let mut guard = log.lock().map_err(|_| poisoned(table))?;
        let log: &mut TableLog = &mut guard;
        on_own_runtime(|| async {
            log.open(LogKind::Data(table)).await?;
            log.append(actions).await
        })?;
        drop(guard);
        mirror::publish(root, table);
    }
    Ok(())
}

/// Commits the removal of `files` (data files under `root`) from their tables' logs, before
/// the caller deletes them: a reader then never lists a file that is gone. Files no log lists
/// are left out.
pub fn remove_files(root: &Path, files: &[(Table, PathBuf)]) -> Result<(), EngineError> {
    if without_logs(root) {
        return Ok(());
    }
    let mut by_table: BTreeMap<Table, Vec<&Path>> = BTreeMap::new();
    for (table, path) in files {
        by_table.entry(*table).or_default().push(path);
    }
    for (table, paths) in by_table {
        let dir = root.join(table.name());
        let log = log_of(&dir)?;
        let mut guard = log.lock().map_err(|_| poisoned(table))?;
        let log: &mut TableLog = &mut guard;
        on_own_runtime(|| async {
            log.open(LogKind::Data(table)).await?;
            // Afresh: another process may have added the files being removed since.
            let state = log.load().await?;
            let listed: HashMap<String, LoggedFile> = listed_files(&state)?
                .into_iter()
                .map(|file| (file.path.clone(), file))
                .collect();
            let deleted_at = chrono::Utc::now().timestamp_millis();
            let mut actions = Vec::new();
            for path in paths {
                let relative = relative_path(&dir, path)?;
                if let Some(file) = listed.get(&relative) {
                    actions.push(Action::Remove(Remove {
                        path: relative,
                        data_change: true,
                        deletion_timestamp: Some(deleted_at),
                        extended_file_metadata: Some(true),
                        partition_values: Some(partition_values(&file.date)),
                        size: i64::try_from(file.size).ok(),
                        ..Default::default()
                    }));
                }
            }
            if actions.is_empty() {
                return Ok(());
            }
            log.commit_checked(
                &state,
                actions,
                DeltaOperation::Delete { predicate: None },
                false,
            )
            .await
        })?;
        drop(guard);
        mirror::publish(root, table);
    }
    Ok(())
}

/// Opens every table's log under `root`, creating (and adopting the files of) each table that
/// has a directory but no log yet: `burnrate migrate`. Tables without a directory are left out.
/// With each table, the files its log lists now.
pub fn open_dataset_logs(root: &Path) -> Result<Vec<(Table, Opened, usize)>, EngineError> {
    let mut opened = Vec::new();
    for table in Table::ALL {
        let dir = root.join(table.name());
        if !dir.is_dir() {
            continue;
        }
        let log = log_of(&dir)?;
        let mut guard = log.lock().map_err(|_| poisoned(table))?;
        let log: &mut TableLog = &mut guard;
        let (found, files) = on_own_runtime(|| async {
            let found = log.open(LogKind::Data(table)).await?;
            let files = listed_files(&log.load().await?)?.len();
            Ok((found, files))
        })?;
        drop(guard);
        mirror::publish(root, table);
        opened.push((table, found, files));
    }
    Ok(opened)
}

/// A table's files as its log listed them at one version: what a rewrite of some of them
/// commits against, so that it fails instead of racing another change to the same files.
pub struct TableFiles {
    pub table: Table,
    pub files: Vec<LoggedFile>,
    state: DeltaTableState,
}

/// The files of `table` under `root` at its latest version, or `None` when it has no log.
pub fn read_table(root: &Path, table: Table) -> Result<Option<TableFiles>, EngineError> {
    let dir = root.join(table.name());
    if !has_log(&dir) {
        return Ok(None);
    }
    let state = on_own_runtime(|| load_state(&dir))?;
    let files = listed_files(&state)?;
    Ok(Some(TableFiles {
        table,
        files,
        state,
    }))
}

/// The files (below the table's directory) that commits up to `read`'s version removed and
/// whose tombstones the log still keeps: Delta's `deletedFileRetentionDuration`, a week by
/// default. They may still be on disk until a vacuum.
pub fn removed_files(root: &Path, read: &TableFiles) -> Result<Vec<String>, EngineError> {
    use futures::TryStreamExt;
    let dir = root.join(read.table.name());
    let store = log_store(&dir)?;
    on_own_runtime(|| async {
        read.state
            .all_tombstones(store.as_ref())
            .map_ok(|tombstone| tombstone.path().into_owned())
            .try_collect()
            .await
            .map_err(|e| log_error(dir.display(), e))
    })
}

/// Why files leave a table's log in [`replace_files`].
#[derive(Debug, Clone)]
pub enum Rewrite {
    /// Merged into `added`, the same rows in fewer files (`OPTIMIZE`): no data changes.
    Compaction { target_size: u64 },
    /// Their days are past the table's retention (`DELETE WHERE date < before`): their rows go.
    Retention { before: String },
    /// One person's rows left them (`burnrate forget`): `added` hold their other rows. The
    /// commit does not name the person: the log outlives the erasure by its retention.
    Erasure,
}

/// Replaces `removed` (files `read` listed) by `added` in one commit: a reader sees the old
/// files or the new ones, never both. A compaction's files are marked as moving no data
/// (`dataChange: false`), as Delta's OPTIMIZE does, so a streaming reader skips them. If a
/// commit since `read` removed any of `removed` (a replay, another compaction), this fails,
/// retryably, and commits nothing.
pub fn replace_files(
    root: &Path,
    read: &TableFiles,
    removed: &[LoggedFile],
    added: &[DurableFile],
    why: &Rewrite,
) -> Result<(), EngineError> {
    let table = read.table;
    let dir = root.join(table.name());
    let now = chrono::Utc::now().timestamp_millis();
    let data_change = !matches!(why, Rewrite::Compaction { .. });
    let mut actions = Vec::with_capacity(removed.len() + added.len());
    for file in added {
        let mut add = add_action(root, file)?;
        add.data_change = data_change;
        actions.push(Action::Add(add));
    }
    for file in removed {
        actions.push(Action::Remove(Remove {
            path: file.path.clone(),
            data_change,
            deletion_timestamp: Some(now),
            extended_file_metadata: Some(true),
            partition_values: Some(partition_values(&file.date)),
            size: i64::try_from(file.size).ok(),
            ..Default::default()
        }));
    }
    let log = log_of(&dir)?;
    let mut guard = log.lock().map_err(|_| poisoned(table))?;
    let log: &mut TableLog = &mut guard;
    let operation = match why {
        Rewrite::Compaction { target_size } => DeltaOperation::Optimize {
            predicate: None,
            target_size: i64::try_from(*target_size).unwrap_or(i64::MAX),
        },
        Rewrite::Retention { before } => DeltaOperation::Delete {
            predicate: Some(format!("{PARTITION_COLUMN} < '{before}'")),
        },
        Rewrite::Erasure => DeltaOperation::Delete {
            predicate: Some("the rows of one person (burnrate forget)".into()),
        },
    };
    on_own_runtime(|| async {
        log.open(LogKind::Data(table)).await?;
        // A rewrite swaps many files: readers start from its checkpoint rather than replay
        // thousands of adds and removes until the next one is due.
        log.commit_checked(&read.state, actions, operation, true)
            .await
    })?;
    drop(guard);
    mirror::publish(root, table);
    Ok(())
}

/// Deletes the files below `table`'s directory that its log no longer lists (removed by a
/// rewrite, or never committed: a crashed flush's) once they are older than `keep`: a reader
/// that opened an older version may still be reading them until then. delta-rs's VACUUM, in its
/// full mode. Returns how many files went.
pub fn vacuum(root: &Path, table: Table, keep: std::time::Duration) -> Result<usize, EngineError> {
    let dir = root.join(table.name());
    if !has_log(&dir) {
        return Ok(0);
    }
    on_own_runtime(|| async { vacuum_table(load_table(&dir).await?, keep, dir.display()).await })
}

/// delta-rs's VACUUM of `table` in its full mode: the files below it that its log no longer
/// lists, older than `keep`. Returns how many went.
async fn vacuum_table(
    table: DeltaTable,
    keep: std::time::Duration,
    place: impl std::fmt::Display,
) -> Result<usize, EngineError> {
    let keep = chrono::Duration::from_std(keep)
        .map_err(|e| EngineError::Config(format!("vacuum retention: {e}")))?;
    let (_, metrics) = table
        .vacuum()
        .with_mode(VacuumMode::Full)
        .with_retention_period(keep)
        .with_enforce_retention_duration(false)
        .with_commit_properties(CommitProperties::default().with_create_checkpoint(false))
        .await
        .map_err(|e| log_error(place, e))?;
    Ok(metrics.files_deleted.len())
}

/// The files the log of the table at `table_dir` lists at its latest version, read afresh
/// (another process may have committed since), or `None` when the table has no log.
pub async fn logged_files(table_dir: &Path) -> Result<Option<Vec<LoggedFile>>, EngineError> {
    if !has_log(table_dir) {
        return Ok(None);
    }
    listed_files(&load_state(table_dir).await?).map(Some)
}

/// A table's log in the dataset's copy on object storage, open in this process: the log
/// [`crate::sink::mirror`] replays this directory's commits into. Commits are put-if-absent
/// (S3's conditional `If-None-Match: *`), so several replicas append to one table at once.
pub(crate) struct ObjectLog {
    log: TableLog,
}

impl ObjectLog {
    /// Opens the log of `table` at `url` (`s3://bucket/prefix/<table>`, in `store`, the
    /// bucket), creating it, with no files, where there is none yet.
    pub(crate) async fn open(
        table: Table,
        url: url::Url,
        store: Arc<dyn deltalake_core::ObjectStore>,
    ) -> Result<Self, EngineError> {
        let mut log = TableLog::in_store(url, store)?;
        log.open(LogKind::Data(table)).await?;
        Ok(ObjectLog { log })
    }

    /// The version the log holds for `app_id`, read afresh.
    pub(crate) async fn transaction_version(
        &self,
        app_id: &str,
    ) -> Result<Option<i64>, EngineError> {
        let table = self.log.table().await?;
        let state = table.snapshot().map_err(|e| self.log.error(e))?;
        state
            .transaction_version(table.log_store().as_ref(), app_id)
            .await
            .map_err(|e| self.log.error(e))
    }

    /// Commits `actions` (adds and removes of files no other writer touches) with `app_id`
    /// at `version`, as the next free version.
    pub(crate) async fn append(
        &mut self,
        mut actions: Vec<Action>,
        app_id: &str,
        version: i64,
    ) -> Result<(), EngineError> {
        actions.push(Action::Txn(Transaction {
            app_id: app_id.to_string(),
            version,
            last_updated: Some(chrono::Utc::now().timestamp_millis()),
        }));
        self.log.append(actions).await
    }
}

/// Vacuums the table at `url` (in `store`) as [`vacuum`] does a local one: the objects below it
/// that its log no longer lists (removed by a commit, or put by a flush that crashed before its
/// commit) go once older than `keep`, which is what a reader of an older version may still
/// need. An object a replica put but has not committed yet is younger than that, and one that
/// went anyway is put again when its commit is replayed ([`crate::sink::mirror`]). Returns how
/// many went; 0 when there is no log.
pub(crate) async fn vacuum_object_table(
    url: url::Url,
    store: Arc<dyn deltalake_core::ObjectStore>,
    keep: std::time::Duration,
) -> Result<usize, EngineError> {
    let log = TableLog::in_store(url, store)?;
    if !log.exists().await? {
        return Ok(0);
    }
    vacuum_table(log.table().await?, keep, &log.place).await
}

/// The files the log of the table at `url` (in `store`) lists at its latest version, or `None`
/// when it has no log.
pub(crate) async fn object_logged_files(
    url: url::Url,
    store: Arc<dyn deltalake_core::ObjectStore>,
) -> Result<Option<Vec<LoggedFile>>, EngineError> {
    let log = TableLog::in_store(url, store)?;
    if !log.exists().await? {
        return Ok(None);
    }
    listed_files(&log.load().await?).map(Some)
}

/// The table at `dir` in this directory, as the mirror starts from it: its id (unique to this
/// log), its latest version and the files listed there.
pub(crate) fn local_head(
    dir: &Path,
) -> Result<Option<(String, u64, Vec<LoggedFile>)>, EngineError> {
    if !has_log(dir) {
        return Ok(None);
    }
    let state = on_own_runtime(|| load_state(dir))?;
    let files = listed_files(&state)?;
    Ok(Some((
        state.metadata().id().to_string(),
        state.version(),
        files,
    )))
}

/// What the commit `version` of the log of the table at `dir` did to its files: its adds and
/// removes, in order. `None` when there is no such commit file: not made yet, or removed past
/// the log's retention.
pub(crate) fn local_commit(dir: &Path, version: u64) -> Result<Option<Vec<Action>>, EngineError> {
    let path = dir.join(LOG_DIR).join(format!("{version:020}.json"));
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(EngineError::io(&path, e)),
    };
    let mut actions = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let action: Action = serde_json::from_str(line).map_err(|e| EngineError::TableLog {
            table: dir.display().to_string(),
            message: format!("{}: {e}", path.display()),
            retryable: false,
        })?;
        if matches!(action, Action::Add(_) | Action::Remove(_)) {
            actions.push(action);
        }
    }
    Ok(Some(actions))
}

/// The version of the latest checkpoint of the log of the table at `dir`, if it has one:
/// commits before it may have been removed.
pub(crate) fn local_checkpoint(dir: &Path) -> Option<u64> {
    let text = fs::read_to_string(dir.join(LOG_DIR).join("_last_checkpoint")).ok()?;
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()?
        .get("version")?
        .as_u64()
}

/// The table at `dir` at its latest version, read from its log.
async fn load_state(dir: &Path) -> Result<DeltaTableState, EngineError> {
    let table = load_table(dir).await?;
    Ok(table
        .snapshot()
        .map_err(|e| log_error(dir.display(), e))?
        .clone())
}

/// Where a table's log is.
#[derive(Debug, Clone)]
enum Place {
    /// A directory here: commits are fsynced, and a table's first log adopts the files in it.
    Dir(PathBuf),
    /// A table on object storage (the dataset's copy there, [`crate::sink::mirror`]).
    Object(url::Url),
}

impl Place {
    fn url(&self) -> Result<url::Url, EngineError> {
        match self {
            Place::Dir(dir) => table_url(dir),
            Place::Object(url) => Ok(url.clone()),
        }
    }
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Dir(dir) => write!(f, "{}", dir.display()),
            Place::Object(url) => write!(f, "{url}"),
        }
    }
}

/// A table's log, open in this process.
struct TableLog {
    place: Place,
    log_store: LogStoreRef,
    /// The version this process's next commit tries first; `None` until opened.
    next_version: Option<Version>,
    /// A commit whose version is a multiple of this writes a checkpoint: the table's
    /// `delta.checkpointInterval` as last read (at open, and at each checkpoint), else Delta's
    /// default of 100.
    checkpoint_interval: u64,
}

impl TableLog {
    /// The log of the table at `url` in `store` (the object store's copy), not opened yet.
    fn in_store(
        url: url::Url,
        store: Arc<dyn deltalake_core::ObjectStore>,
    ) -> Result<TableLog, EngineError> {
        Ok(TableLog {
            log_store: object_log_store(&url, store)?,
            place: Place::Object(url),
            next_version: None,
            checkpoint_interval: default_checkpoint_interval(),
        })
    }

    /// Loads the log, or creates it: a data table's listing the files already in its
    /// directory, the positions table's empty.
    async fn open(&mut self, kind: LogKind) -> Result<Opened, EngineError> {
        if let Some(next) = self.next_version {
            return Ok(Opened::Existing { version: next - 1 });
        }
        if self.exists().await? {
            return self.load_existing(kind).await;
        }
        let mut create = CreateBuilder::new()
            .with_log_store(self.log_store.clone())
            .with_configuration_property(
                TableProperty::LogRetentionDuration,
                Some(CREATED_LOG_RETENTION),
            )
            .with_save_mode(SaveMode::ErrorIfExists);
        let mut files = 0;
        match kind {
            LogKind::Data(table) => {
                let adopted = match &self.place {
                    Place::Dir(dir) => files_on_disk(dir)?,
                    Place::Object(_) => Vec::new(),
                };
                files = adopted.len();
                create = create
                    .with_table_name(table.name())
                    .with_columns(delta_columns(table)?)
                    .with_partition_columns([PARTITION_COLUMN])
                    .with_actions(adopted.into_iter().map(Action::Add));
            }
            LogKind::Positions => {
                create = create.with_table_name("positions").with_columns([
                    StructField::new("app_id", DataType::Primitive(PrimitiveType::String), false),
                    StructField::new("version", DataType::Primitive(PrimitiveType::Long), false),
                ]);
            }
        }
        match create.await {
            Ok(_) => {}
            // Another process created it first: its log is ours to load.
            Err(_) if self.exists().await? => return self.load_existing(kind).await,
            Err(e) => return Err(self.error(e)),
        }
        self.sync_version(0)?;
        if let Place::Dir(dir) = &self.place {
            sync_dir(dir)?;
        }
        self.next_version = Some(1);
        if files > 0 {
            tracing::info!(
                table = %self.place,
                files,
                "adopted the table's files into a new Delta log"
            );
        }
        Ok(Opened::Adopted { files })
    }

    async fn load_existing(&mut self, kind: LogKind) -> Result<Opened, EngineError> {
        let mut state = self.load().await?;
        // A table another engine upgraded (deletion vectors, say) is not written blind.
        PROTOCOL
            .can_write_to(&state)
            .map_err(|e| self.error(e.into()))?;
        if let LogKind::Data(table) = kind {
            state = self.add_new_columns(table, state).await?;
        }
        self.next_version = Some(state.version() + 1);
        self.checkpoint_interval = state.table_config().checkpoint_interval().get();
        Ok(Opened::Existing {
            version: state.version(),
        })
    }

    /// Schema evolution: columns this version of burnrate writes that the log's schema lacks
    /// (a Claude Code attribute that became a column) are added to it, nullable, in an
    /// `ADD COLUMN` commit. Files written before do not have them, and every reader reads them
    /// there as null; nothing is rewritten. Returns the state after.
    async fn add_new_columns(
        &mut self,
        table: Table,
        state: DeltaTableState,
    ) -> Result<DeltaTableState, EngineError> {
        let logged = state.schema();
        let missing: Vec<StructField> = delta_columns(table)?
            .into_iter()
            .filter(|column| logged.field(column.name()).is_none())
            .map(|column| StructField::new(column.name(), column.data_type().clone(), true))
            .collect();
        if missing.is_empty() {
            return Ok(state);
        }
        let names: Vec<String> = missing.iter().map(|c| c.name().to_string()).collect();
        let added = self
            .table()
            .await?
            .add_columns()
            .with_fields(missing)
            .with_commit_properties(CommitProperties::default().with_create_checkpoint(false))
            .await;
        let state = match added {
            Ok(evolved) => {
                let state = evolved.snapshot().map_err(|e| self.error(e))?.clone();
                self.sync_version(state.version())?;
                tracing::info!(table = table.name(), columns = ?names, "added new columns to the table's schema");
                state
            }
            // Another writer may have added them first.
            Err(error) => {
                let state = self.load().await?;
                let schema = state.schema();
                if names.iter().any(|name| schema.field(name).is_none()) {
                    return Err(self.error(error));
                }
                state
            }
        };
        Ok(state)
    }

    /// Whether the log has a commit yet.
    async fn exists(&self) -> Result<bool, EngineError> {
        match &self.place {
            Place::Dir(dir) => Ok(has_log(dir)),
            Place::Object(_) => self
                .log_store
                .is_delta_table_location()
                .await
                .map_err(|e| self.error(e)),
        }
    }

    /// The table at its latest version.
    async fn table(&self) -> Result<DeltaTable, EngineError> {
        let mut table = DeltaTable::new(self.log_store.clone());
        table.load().await.map_err(|e| self.error(e))?;
        Ok(table)
    }

    async fn load(&self) -> Result<DeltaTableState, EngineError> {
        let table = self.table().await?;
        Ok(table.snapshot().map_err(|e| self.error(e))?.clone())
    }

    /// Commits `actions`, which only add files, as the next free version.
    async fn append(&mut self, actions: Vec<Action>) -> Result<(), EngineError> {
        let bytes = CommitData::new(actions, append_operation(), HashMap::new(), Vec::new())
            .get_bytes()
            .map_err(|e| self.error(e.into()))?;
        let mut version = self.next_version.unwrap_or(0);
        let mut attempts = 0;
        loop {
            let entry = CommitOrBytes::LogBytes(bytes.clone());
            match self
                .log_store
                .write_commit_entry(version, entry, Uuid::new_v4())
                .await
            {
                Ok(()) => break,
                Err(TransactionError::VersionAlreadyExists(_)) if attempts < APPEND_ATTEMPTS => {
                    attempts += 1;
                    tracing::debug!(
                        table = %self.place,
                        version,
                        "another writer committed this version first; trying the next"
                    );
                    version = get_latest_version(self.log_store.as_ref(), version)
                        .await
                        .map_err(|e| self.error(e))?
                        + 1;
                }
                Err(e) => return Err(self.error(e.into())),
            }
        }
        self.committed(version, false).await
    }

    /// Commits `actions` on top of `state` through delta-rs's conflict checks, with a
    /// checkpoint of the new version if `checkpoint`.
    async fn commit_checked(
        &mut self,
        state: &DeltaTableState,
        actions: Vec<Action>,
        operation: DeltaOperation,
        checkpoint: bool,
    ) -> Result<(), EngineError> {
        let committed =
            CommitBuilder::from(CommitProperties::default().with_create_checkpoint(false))
                .with_actions(actions)
                .build(Some(state), self.log_store.clone(), operation)
                .await
                .map_err(|e| self.error(e))?;
        self.committed(committed.version(), checkpoint).await
    }

    /// Makes `version` durable, and writes a checkpoint when `version` is due one (or
    /// `checkpoint` asks for it). Exactly one writer commits each version, so with several
    /// writers each checkpoint is written once.
    async fn committed(&mut self, version: Version, checkpoint: bool) -> Result<(), EngineError> {
        // The log's own writes are not fsynced; a commit a caller counts on must survive a
        // power cut like the files it lists.
        self.sync_version(version)?;
        self.next_version = Some(version + 1);
        if checkpoint || (version > 0 && version.is_multiple_of(self.checkpoint_interval)) {
            // The commit stands whatever happens here: a missing checkpoint only makes readers
            // replay more commit files, until the next one.
            if let Err(error) = self.checkpoint(version).await {
                tracing::warn!(
                    table = %self.place,
                    version,
                    error = %error,
                    "could not write the table's checkpoint; readers replay its commits instead"
                );
            }
        }
        Ok(())
    }

    /// Writes the checkpoint of `version` (the table's state as one Parquet file, which readers
    /// start from), fsyncs it, and removes the log files the table's `delta.logRetentionDuration`
    /// no longer keeps. delta-kernel writes it, through an engine that reads the log a few files
    /// at a time in small batches ([`LOG_READ_AHEAD`], [`LOG_BATCH_ROWS`]). delta-rs's own
    /// checkpoint, through delta-kernel's default engine (up to 1,000 files read at once, each
    /// with a decoder sized for 1,000 rows), took the bench's process from 124 MiB to 1.37 GiB.
    async fn checkpoint(&mut self, version: Version) -> Result<(), EngineError> {
        let url = self.place.url()?;
        let engine = self.log_store.engine(None);
        let (written, properties) = tokio::task::spawn_blocking(move || {
            let snapshot = buoyant_kernel::Snapshot::builder_for(url)
                .at_version(version)
                .build(engine.as_ref())?;
            let (written, _) = snapshot.checkpoint(engine.as_ref(), None)?;
            Ok::<_, buoyant_kernel::Error>((written, snapshot.table_properties().clone()))
        })
        .await
        .map_err(|e| EngineError::Config(format!("the checkpoint task failed: {e}")))?
        .map_err(|e| self.error(e.into()))?;
        self.checkpoint_interval = properties.checkpoint_interval().get();
        if let (CheckpointWriteResult::Written, Place::Dir(dir)) = (&written, &self.place) {
            let log_dir = dir.join(LOG_DIR);
            for name in [
                format!("{version:020}.checkpoint.parquet"),
                "_last_checkpoint".to_string(),
            ] {
                let path = log_dir.join(name);
                File::open(&path)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| EngineError::io(&path, e))?;
            }
            sync_dir(&log_dir)?;
        }
        if properties.enable_expired_log_cleanup() {
            let retention = properties.log_retention_duration();
            let cutoff = SystemTime::now()
                .checked_sub(retention)
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as i64);
            let removed = cleanup_expired_logs_for(version, self.log_store.as_ref(), cutoff, None)
                .await
                .map_err(|e| self.error(e))?;
            tracing::debug!(
                table = %self.place,
                version,
                removed,
                "wrote a checkpoint and removed expired log files"
            );
        }
        Ok(())
    }

    /// Makes the commit of `version` durable here: an object store's put already is.
    fn sync_version(&self, version: u64) -> Result<(), EngineError> {
        let Place::Dir(dir) = &self.place else {
            return Ok(());
        };
        let log_dir = dir.join(LOG_DIR);
        let commit = log_dir.join(format!("{version:020}.json"));
        File::open(&commit)
            .and_then(|f| f.sync_all())
            .map_err(|e| EngineError::io(&commit, e))?;
        sync_dir(&log_dir)
    }

    fn error(&self, error: DeltaTableError) -> EngineError {
        log_error(&self.place, error)
    }
}

/// The data files in the table directory `dir`, as `add` actions: every segment file but a
/// crashed write's temporary one.
fn files_on_disk(dir: &Path) -> Result<Vec<Add>, EngineError> {
    let mut adds = Vec::new();
    for file in segment_files(dir)? {
        if file.temporary {
            continue;
        }
        let metadata = fs::metadata(&file.path).map_err(|e| EngineError::io(&file.path, e))?;
        adds.push(Add {
            path: relative_path(dir, &file.path)?,
            partition_values: partition_values(&file.date),
            size: metadata.len() as i64,
            modification_time: modified_millis(&metadata),
            data_change: true,
            ..Default::default()
        });
    }
    adds.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(adds)
}

/// The `add` of a durable file: its place below the table, its day, size and row count.
fn add_action(root: &Path, file: &DurableFile) -> Result<Add, EngineError> {
    let metadata = fs::metadata(&file.path).map_err(|e| EngineError::io(&file.path, e))?;
    Ok(Add {
        path: relative_path(&root.join(file.table.name()), &file.path)?,
        partition_values: partition_values(&file.date),
        size: metadata.len() as i64,
        modification_time: modified_millis(&metadata),
        data_change: true,
        // Readers plan with the row count (Spark and Trino answer count(*) from it).
        stats: Some(format!(r#"{{"numRecords":{}}}"#, file.rows)),
        ..Default::default()
    })
}

/// The `add` of a file another log lists, for the store's log ([`crate::sink::mirror`]).
pub(crate) fn add_of(file: &LoggedFile) -> Action {
    Action::Add(Add {
        path: file.path.clone(),
        partition_values: partition_values(&file.date),
        size: i64::try_from(file.size).unwrap_or(i64::MAX),
        modification_time: chrono::Utc::now().timestamp_millis(),
        data_change: true,
        ..Default::default()
    })
}

/// How burnrate's commits are described in the log: appends to a table partitioned by day.
fn append_operation() -> DeltaOperation {
    DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: Some(vec![PARTITION_COLUMN.to_string()]),
        predicate: None,
    }
}

fn listed_files(state: &DeltaTableState) -> Result<Vec<LoggedFile>, EngineError> {
    let mut files = Vec::with_capacity(state.log_data().num_files());
    for view in state.log_data().iter() {
        let date = view
            .partition_values_map()
            .remove(PARTITION_COLUMN)
            .flatten()
            .ok_or_else(|| {
                EngineError::Schema(format!(
                    "{}: a file without a {PARTITION_COLUMN}",
                    view.path()
                ))
            })?;
        files.push(LoggedFile {
            path: view.path().into_owned(),
            date,
            size: u64::try_from(view.size()).unwrap_or(0),
        });
    }
    Ok(files)
}

/// The table's columns in Delta's types, as its files hold them (microsecond `timestamp`s,
/// signed integers: see [`stored_types`]), and the `date` partition column.
fn delta_columns(table: Table) -> Result<Vec<StructField>, EngineError> {
    let mut columns = Vec::new();
    for field in stored_types::stored_schema(&table.schema()).fields() {
        let column: StructField = field
            .as_ref()
            .try_into_kernel()
            .map_err(|e| EngineError::Schema(format!("{}.{}: {e}", table.name(), field.name())))?;
        columns.push(column);
    }
    columns.push(StructField::new(
        PARTITION_COLUMN,
        DataType::Primitive(PrimitiveType::String),
        true,
    ));
    Ok(columns)
}

fn partition_values(date: &str) -> HashMap<String, Option<String>> {
    HashMap::from([(PARTITION_COLUMN.to_string(), Some(date.to_string()))])
}

/// `path` below `dir`, with `/` between its parts, as a Delta log names files.
fn relative_path(dir: &Path, path: &Path) -> Result<String, EngineError> {
    let relative = path.strip_prefix(dir).map_err(|_| {
        EngineError::Config(format!("{} is not under {}", path.display(), dir.display()))
    })?;
    let parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    Ok(parts.join("/"))
}

fn modified_millis(metadata: &fs::Metadata) -> i64 {
    metadata
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64)
}

fn table_url(dir: &Path) -> Result<url::Url, EngineError> {
    let absolute = std::path::absolute(dir).map_err(|e| EngineError::io(dir, e))?;
    url::Url::from_directory_path(&absolute)
        .map_err(|()| EngineError::Config(format!("{}: not a directory path", absolute.display())))
}

fn log_error(table: impl std::fmt::Display, error: DeltaTableError) -> EngineError {
    let retryable = match &error {
        DeltaTableError::Io { source } => crate::is_transient_io(source),
        DeltaTableError::ObjectStore { source } => {
            matches!(source, object_store::Error::Generic { .. })
        }
        // Another writer won every attempt: the same commit can go through later.
        DeltaTableError::Transaction { .. } | DeltaTableError::VersionAlreadyExists(_) => true,
        _ => false,
    };
    EngineError::TableLog {
        table: table.to_string(),
        message: error
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
        retryable,
    }
}

fn poisoned(table: Table) -> EngineError {
    EngineError::Config(format!("{}: a commit to its log panicked", table.name()))
}

/// Delta's default checkpoint interval (100 commits), for a table not read yet.
fn default_checkpoint_interval() -> u64 {
    buoyant_kernel::table_properties::TableProperties::default()
        .checkpoint_interval()
        .get()
}

/// delta-kernel's engine over the table's store, reading [`LOG_READ_AHEAD`] log files at a
/// time, its tasks on the calling runtime as delta-rs's own engine has them: on a
/// multi-threaded one (the I/O runtime of `on_own_runtime`, the CLI's), or on a thread of its
/// own beside a current-thread one. Commit files (JSON) are decoded [`LOG_BATCH_ROWS`] rows at a
/// time, checkpoints (Parquet) [`CHECKPOINT_BATCH_ROWS`].
fn log_engine(store: Arc<dyn deltalake_core::ObjectStore>) -> Arc<dyn Engine> {
    let handle = tokio::runtime::Handle::current();
    let build = |rows: NonZeroUsize| -> Arc<dyn Engine> {
        let builder = DefaultEngineBuilder::new(store.clone())
            .with_buffer_size(LOG_READ_AHEAD)
            .with_batch_size(rows);
        match handle.runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => Arc::new(
                builder
                    .with_task_executor(Arc::new(TokioMultiThreadExecutor::new(handle.clone())))
                    .build(),
            ),
            _ => Arc::new(
                builder
                    .with_task_executor(Arc::new(TokioBackgroundExecutor::new()))
                    .build(),
            ),
        }
    };
    Arc::new(LogEngine {
        commits: build(LOG_BATCH_ROWS),
        checkpoints: build(CHECKPOINT_BATCH_ROWS),
    })
}

/// delta-kernel's default engine, one batch size for commit files and another for checkpoints
/// (its builder sets one for both).
struct LogEngine {
    commits: Arc<dyn Engine>,
    checkpoints: Arc<dyn Engine>,
}

impl Engine for LogEngine {
    fn evaluation_handler(&self) -> Arc<dyn buoyant_kernel::EvaluationHandler> {
        self.commits.evaluation_handler()
    }

    fn storage_handler(&self) -> Arc<dyn buoyant_kernel::StorageHandler> {
        self.commits.storage_handler()
    }

    fn json_handler(&self) -> Arc<dyn buoyant_kernel::JsonHandler> {
        self.commits.json_handler()
    }

    fn parquet_handler(&self) -> Arc<dyn buoyant_kernel::ParquetHandler> {
        self.checkpoints.parquet_handler()
    }
}

/// delta-rs's log store for a table, but for the kernel engine it hands out, which reads
/// [`LOG_READ_AHEAD`] log files at a time instead of delta-kernel's 1,000: every read of a
/// log through delta-rs (loading a table, conflict checks, vacuum) goes through it.
struct BoundedReads(LogStoreRef);

#[async_trait::async_trait]
impl LogStore for BoundedReads {
    fn name(&self) -> String {
        self.0.name()
    }

    async fn refresh(&self) -> DeltaResult<()> {
        self.0.refresh().await
    }

    async fn read_commit_entry(&self, version: Version) -> DeltaResult<Option<bytes::Bytes>> {
        self.0.read_commit_entry(version).await
    }

    async fn write_commit_entry(
        &self,
        version: Version,
        commit_or_bytes: CommitOrBytes,
        operation_id: Uuid,
    ) -> Result<(), TransactionError> {
        self.0
            .write_commit_entry(version, commit_or_bytes, operation_id)
            .await
    }

    async fn abort_commit_entry(
        &self,
        version: Version,
        commit_or_bytes: CommitOrBytes,
        operation_id: Uuid,
    ) -> Result<(), TransactionError> {
        self.0
            .abort_commit_entry(version, commit_or_bytes, operation_id)
            .await
    }

    async fn get_latest_version(&self, start_version: Version) -> DeltaResult<Version> {
        self.0.get_latest_version(start_version).await
    }

    fn object_store(&self, operation_id: Option<Uuid>) -> Arc<dyn deltalake_core::ObjectStore> {
        self.0.object_store(operation_id)
    }

    fn root_object_store(
        &self,
        operation_id: Option<Uuid>,
    ) -> Arc<dyn deltalake_core::ObjectStore> {
        self.0.root_object_store(operation_id)
    }

    fn engine(&self, operation_id: Option<Uuid>) -> Arc<dyn Engine> {
        log_engine(self.0.root_object_store(operation_id))
    }

    fn to_uri(&self, location: &deltalake_core::Path) -> String {
        self.0.to_uri(location)
    }

    fn root_url(&self) -> &url::Url {
        self.0.root_url()
    }

    fn log_path(&self) -> &deltalake_core::Path {
        self.0.log_path()
    }

    fn transaction_url(&self, operation_id: Option<Uuid>) -> DeltaResult<url::Url> {
        self.0.transaction_url(operation_id)
    }

    async fn is_delta_table_location(&self) -> DeltaResult<bool> {
        self.0.is_delta_table_location().await
    }

    fn config(&self) -> &LogStoreConfig {
        self.0.config()
    }
}

/// The log store of the table at `url` in the object store `store` (rooted at its bucket),
/// its reads bounded. delta-rs's default log store, whose commits are put-if-absent: on S3,
/// object_store sends them with `If-None-Match: *` (S3's conditional writes, and moto's), so
/// no lock is needed. delta-rs's S3 log store (`deltalake-aws`) is for stores without
/// conditional writes: a DynamoDB lock, or unsafe renames for a single writer.
fn object_log_store(
    url: &url::Url,
    store: Arc<dyn deltalake_core::ObjectStore>,
) -> Result<LogStoreRef, EngineError> {
    let options = StorageConfig::default();
    let prefixed = options
        .decorate_store(store.clone(), url)
        .map_err(|e| log_error(url, e))?;
    Ok(Arc::new(BoundedReads(default_logstore(
        Arc::from(prefixed),
        store,
        url,
        &options,
    ))))
}

/// The log store of the table at `dir`, its reads bounded ([`BoundedReads`]).
fn log_store(dir: &Path) -> Result<LogStoreRef, EngineError> {
    let inner = DeltaTableBuilder::from_url(table_url(dir)?)
        .and_then(|builder| builder.build_storage())
        .map_err(|e| log_error(dir.display(), e))?;
    Ok(Arc::new(BoundedReads(inner)))
}

/// The table at `dir` at its latest version, read through [`log_store`].
async fn load_table(dir: &Path) -> Result<DeltaTable, EngineError> {
    let mut table = DeltaTable::new(log_store(dir)?);
    table
        .load()
        .await
        .map_err(|e| log_error(dir.display(), e))?;
    Ok(table)
}

type Registry = Mutex<HashMap<PathBuf, Arc<Mutex<TableLog>>>>;

/// This process's log of the table at `dir`, opened on first use.
fn log_of(dir: &Path) -> Result<Arc<Mutex<TableLog>>, EngineError> {
    static LOGS: OnceLock<Registry> = OnceLock::new();
    let dir = std::path::absolute(dir).map_err(|e| EngineError::io(dir, e))?;
    let mut logs = LOGS
        .get_or_init(Default::default)
        .lock()
        .map_err(|_| EngineError::Config("the table log registry panicked".into()))?;
    if let Some(log) = logs.get(&dir) {
        return Ok(log.clone());
    }
    let log = Arc::new(Mutex::new(TableLog {
        place: Place::Dir(dir.clone()),
        log_store: log_store(&dir)?,
        next_version: None,
        checkpoint_interval: default_checkpoint_interval(),
    }));
    logs.insert(dir, log.clone());
    Ok(log)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use datafusion::arrow::array::{AsArray, RecordBatch};
    use datafusion::arrow::datatypes::{Int64Type, Schema};
    use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionContext, lit};

    use super::*;
    use crate::ParquetSink;
    use crate::sink::dead_letters::{DeadLetter, dead_letter_batch};
    use crate::sink::parquet_sink::{remove_segments, write_atomically};
    use deltalake_core::kernel::engine::arrow_conversion::TryIntoArrow;

    const DAY: i64 = 86_400_000_000_000;
    /// 2026-01-01T00:00:00Z.
    const NEW_YEAR: i64 = 1_767_225_600_000_000_000;

    /// `count` dead letters, the first `on_new_year` on 2026-01-01 and the rest a day later.
    fn letters(count: usize, on_new_year: usize) -> RecordBatch {
        let letters: Vec<DeadLetter> = (0..count)
            .map(|i| {
                let day = if i < on_new_year { 0 } else { DAY };
                DeadLetter::numbered(i, NEW_YEAR + day + i as i64, vec![0; i + 1])
            })
            .collect();
        dead_letter_batch(&letters).unwrap()
    }

    fn segment(batch: RecordBatch) -> BTreeMap<Table, Vec<RecordBatch>> {
        BTreeMap::from([(Table::DeadLetters, vec![batch])])
    }

    async fn count(root: &Path, sql: &str) -> i64 {
        let ctx = crate::open_dataset(root).await.unwrap();
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        batches[0].column(0).as_primitive::<Int64Type>().value(0)
    }

    #[tokio::test]
    async fn readers_count_exactly_the_files_the_log_lists() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let sink = ParquetSink::new(root);
        let written = sink
            .write_segment("seg-a", &segment(letters(3, 1)))
            .unwrap();
        assert_eq!(written.files.len(), 2, "one file per day");
        sink.write_segment("seg-b", &segment(letters(2, 2)))
            .unwrap();
        let table_dir = root.join("dead_letters");
        let mut listed: Vec<String> = logged_files(&table_dir)
            .await
            .unwrap()
            .unwrap()
            .into_iter()
            .map(|f| f.path)
            .collect();
        listed.sort();
        assert_eq!(
            listed,
            [
                "date=2026-01-01/seg-a.parquet",
                "date=2026-01-01/seg-b.parquet",
                "date=2026-01-02/seg-a.parquet",
            ]
        );
        // A crashed flush's file: in the directory, in no commit.
        fs::copy(
            table_dir.join("date=2026-01-02/seg-a.parquet"),
            table_dir.join("date=2026-01-02/crashed.parquet"),
        )
        .unwrap();
        let all = "SELECT count(*) FROM dead_letters";
        assert_eq!(count(root, all).await, 5);
        let new_year = "SELECT count(*) FROM dead_letters WHERE date = '2026-01-01'";
        assert_eq!(count(root, new_year).await, 3);
        let after = "SELECT count(*) FROM dead_letters WHERE date > '2026-01-01'";
        assert_eq!(count(root, after).await, 2);

        // A replay's removal leaves the log first, then the disk.
        assert_eq!(remove_segments(root, |s, _| s == "seg-b").unwrap(), 1);
        assert_eq!(count(root, all).await, 3);
        assert!(!table_dir.join("date=2026-01-01/seg-b.parquet").exists());
        // The same segment written again replaces its files: counted once.
        sink.write_segment("seg-a", &segment(letters(3, 1)))
            .unwrap();
        assert_eq!(count(root, all).await, 3);
    }

    #[tokio::test]
    async fn segments_written_as_one_step_are_one_commit_per_table() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let sink = ParquetSink::new(root);
        let (a, b, c) = (
            segment(letters(3, 1)),
            segment(letters(2, 2)),
            segment(letters(1, 0)),
        );
        let written = sink
            .write_segments(&[("seg-a", &a), ("seg-b", &b), ("seg-c", &c)])
            .unwrap();
        let files: Vec<usize> = written.iter().map(|w| w.files.len()).collect();
        assert_eq!(files, [2, 1, 1], "each segment's own files, in order");
        let rows: Vec<usize> = written.iter().map(|w| w.rows["dead_letters"]).collect();
        assert_eq!(rows, [3, 2, 1]);
        assert!(
            written[0]
                .files
                .iter()
                .all(|f| f.ends_with("seg-a.parquet"))
        );
        // Version 0 makes the table; version 1 adds all four files.
        let log_dir = root.join("dead_letters").join(LOG_DIR);
        let commit = |v: u64| log_dir.join(format!("{v:020}.json"));
        assert!(commit(1).exists());
        assert!(!commit(2).exists(), "one commit for the three segments");
        let listed = logged_files(&root.join("dead_letters"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(listed.len(), 4);
        assert_eq!(count(root, "SELECT count(*) FROM dead_letters").await, 6);
    }

    #[tokio::test]
    async fn a_dataset_without_logs_is_adopted_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let day = root.join("dead_letters/date=2026-01-01");
        fs::create_dir_all(&day).unwrap();
        let legacy = day.join("files-0001.parquet");
        let properties = Default::default();
        write_atomically(
            &legacy,
            Table::DeadLetters.schema(),
            &[letters(4, 4)],
            properties,
        )
        .unwrap();
        let before = fs::read(&legacy).unwrap();
        let all = "SELECT count(*) FROM dead_letters";
        assert_eq!(count(root, all).await, 4, "read by listing, without a log");

        let opened = open_dataset_logs(root).unwrap();
        assert_eq!(
            opened,
            [(Table::DeadLetters, Opened::Adopted { files: 1 }, 1)]
        );
        assert!(has_log(&root.join("dead_letters")));
        assert_eq!(fs::read(&legacy).unwrap(), before, "not rewritten");
        assert_eq!(count(root, all).await, 4);
        let again = open_dataset_logs(root).unwrap();
        assert_eq!(
            again,
            [(Table::DeadLetters, Opened::Existing { version: 0 }, 1)]
        );

        // A flush into an adopted table adds to it.
        ParquetSink::new(root)
            .write_segment("seg-a", &segment(letters(2, 2)))
            .unwrap();
        assert_eq!(count(root, all).await, 6);
    }

    #[tokio::test]
    async fn checkpoints_bound_the_replay_and_expired_commits_leave() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let log_dir = root.join("dead_letters").join(LOG_DIR);
        let sink = ParquetSink::new(root);
        // Version 0 creates the table; flush n is version n.
        for flush in 1..=100 {
            sink.write_segment(&format!("seg-{flush:03}"), &segment(letters(2, 2)))
                .unwrap();
        }
        let checkpoint = |v: u64| log_dir.join(format!("{v:020}.checkpoint.parquet"));
        assert!(checkpoint(100).exists());
        let hint = fs::read_to_string(log_dir.join("_last_checkpoint")).unwrap();
        assert!(hint.contains("\"version\":100"), "{hint}");
        let commit = |v: u64| log_dir.join(format!("{v:020}.json"));
        assert!(commit(0).exists(), "inside the 7 days the table keeps");

        // A week and a day later, the next checkpoint removes what it supersedes.
        let old = SystemTime::now() - std::time::Duration::from_secs(8 * 86_400);
        for v in 0..=100 {
            let path = if v == 100 { checkpoint(v) } else { commit(v) };
            File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(old))
                .unwrap();
        }
        for flush in 101..=200 {
            sink.write_segment(&format!("seg-{flush:03}"), &segment(letters(2, 2)))
                .unwrap();
        }
        assert!(checkpoint(200).exists());
        assert!(!commit(0).exists() && !commit(99).exists());
        assert!(checkpoint(100).exists() && commit(100).exists() && commit(101).exists());
        assert_eq!(count(root, "SELECT count(*) FROM dead_letters").await, 400);
        let table = DeltaTableBuilder::from_url(table_url(&root.join("dead_letters")).unwrap())
            .unwrap()
            .load()
            .await
            .unwrap();
        assert_eq!(table.version(), Some(200));
        assert_eq!(table.snapshot().unwrap().log_data().num_files(), 200);
    }

    #[tokio::test]
    async fn a_new_column_joins_the_schema_and_reads_as_null_in_older_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let table_dir = root.join("dead_letters");
        let day = table_dir.join("date=2026-01-01");
        fs::create_dir_all(&day).unwrap();
        // What an older burnrate wrote: dead letters without `topic`, and a log saying so.
        let old = letters(3, 3);
        let kept: Vec<usize> = (0..old.num_columns())
            .filter(|&i| old.schema().field(i).name() != "topic")
            .collect();
        let old = old.project(&kept).unwrap();
        let old_file = day.join("old.parquet");
        write_atomically(&old_file, old.schema(), &[old], Default::default()).unwrap();
        let metadata = fs::metadata(&old_file).unwrap();
        let columns: Vec<StructField> = delta_columns(Table::DeadLetters)
            .unwrap()
            .into_iter()
            .filter(|c| c.name() != "topic")
            .collect();
        CreateBuilder::new()
            .with_location(table_url(&table_dir).unwrap().to_string())
            .with_columns(columns)
            .with_partition_columns([PARTITION_COLUMN])
            .with_actions([Action::Add(Add {
                path: "date=2026-01-01/old.parquet".into(),
                partition_values: partition_values("2026-01-01"),
                size: metadata.len() as i64,
                modification_time: modified_millis(&metadata),
                data_change: true,
                ..Default::default()
            })])
            .await
            .unwrap();

        // This version writes `topic`: the log's schema gains it, nothing is rewritten.
        let new: Vec<DeadLetter> = (0..2)
            .map(|i| DeadLetter {
                received_at_nanos: NEW_YEAR + i,
                origin: format!("otlp_logs/0@{i}"),
                topic: Some("otlp_logs".into()),
                partition: Some(0),
                offset: Some(i),
                error: "bad".into(),
                payload: vec![1],
            })
            .collect();
        ParquetSink::new(root)
            .write_segment("seg-new", &segment(dead_letter_batch(&new).unwrap()))
            .unwrap();
        let sql = "SELECT count(*) FILTER (WHERE topic IS NULL), count(topic) FROM dead_letters";
        let ours = crate::open_dataset(root).await.unwrap();
        let table = DeltaTableBuilder::from_url(table_url(&table_dir).unwrap())
            .unwrap()
            .load()
            .await
            .unwrap();
        assert!(table.snapshot().unwrap().schema().field("topic").is_some());
        let theirs = SessionContext::new();
        let view = as_delta_rs_lists_it(&theirs, &table).await;
        theirs
            .register_table("dead_letters", view.into_view())
            .unwrap();
        for ctx in [ours, theirs] {
            let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
            let row = &batches[0];
            assert_eq!(row.column(0).as_primitive::<Int64Type>().value(0), 3);
            assert_eq!(row.column(1).as_primitive::<Int64Type>().value(0), 2);
        }
        assert!(old_file.exists(), "the old file stays as it was");
    }

    #[tokio::test]
    async fn without_logs_a_dataset_is_plain_parquet_read_by_listing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write_without_logs(root).unwrap();
        let sink = ParquetSink::new(root);
        sink.write_segment("files-a", &segment(letters(3, 3)))
            .unwrap();
        commit_positions(root, &[("kafka-g-t-0".into(), 7)]).unwrap();
        assert!(!has_log(&root.join("dead_letters")));
        assert!(!root.join(POSITIONS_DIR).exists());
        assert_eq!(count(root, "SELECT count(*) FROM dead_letters").await, 3);

        // A dataset with logs is never written past them.
        let logged = tempfile::tempdir().unwrap();
        ParquetSink::new(logged.path())
            .write_segment("files-a", &segment(letters(1, 1)))
            .unwrap();
        let refused = write_without_logs(logged.path()).unwrap_err();
        assert!(refused.to_string().contains("dead_letters"), "{refused}");
    }

    #[test]
    fn a_lost_race_can_be_retried_and_a_broken_log_cannot() {
        let dir = Path::new("/data/api_requests").display();
        assert!(log_error(&dir, DeltaTableError::VersionAlreadyExists(3)).is_retryable());
        let broken = DeltaTableError::NotATable("no _delta_log".into());
        assert!(!log_error(&dir, broken).is_retryable());
    }

    #[tokio::test]
    async fn delta_rs_reads_the_tables_through_their_log() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let sink = ParquetSink::new(root);
        sink.write_segment("seg-a", &segment(letters(3, 1)))
            .unwrap();
        sink.write_segment("seg-b", &segment(letters(2, 0)))
            .unwrap();
        let table = DeltaTableBuilder::from_url(table_url(&root.join("dead_letters")).unwrap())
            .unwrap()
            .load()
            .await
            .unwrap();
        assert_eq!(
            table.version(),
            Some(2),
            "created, then one commit per flush"
        );
        let ctx = SessionContext::new();
        let view = as_delta_rs_lists_it(&ctx, &table).await;
        ctx.register_table("dead_letters", view.into_view())
            .unwrap();
        let batches = ctx
            .sql(
                "SELECT count(*), sum(size), count(DISTINCT date), \
                 CAST(min(received_at) AS BIGINT) FROM dead_letters",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let row = &batches[0];
        assert_eq!(row.column(0).as_primitive::<Int64Type>().value(0), 5);
        // Sizes 1, 2, 3 and 1, 2, as Delta's signed long.
        assert_eq!(row.column(1).as_primitive::<Int64Type>().value(0), 9);
        assert_eq!(row.column(2).as_primitive::<Int64Type>().value(0), 2);
        // Delta's timestamps are microseconds.
        assert_eq!(
            row.column(3).as_primitive::<Int64Type>().value(0),
            NEW_YEAR / 1000
        );
    }

    /// The table as delta-rs's log describes it, read without burnrate's reader: each file the
    /// log lists, in the log's schema, with its `date` partition value from the log. (delta-rs's
    /// own DataFusion provider would need its `datafusion` feature, which costs CI minutes; the
    /// end-to-end tests read every table through the Python `deltalake` package.)
    async fn as_delta_rs_lists_it(ctx: &SessionContext, table: &DeltaTable) -> DataFrame {
        let snapshot = table.snapshot().unwrap();
        let logged: Schema = snapshot.schema().as_ref().try_into_arrow().unwrap();
        let in_files = Schema::new(
            logged
                .fields()
                .iter()
                .filter(|f| f.name() != PARTITION_COLUMN)
                .cloned()
                .collect::<Vec<_>>(),
        );
        let mut union: Option<DataFrame> = None;
        for file in snapshot.log_data() {
            let date = file.partition_values_map()[PARTITION_COLUMN]
                .clone()
                .unwrap();
            let uri = table.log_store().to_uri(&file.object_store_path());
            let options = ParquetReadOptions::default().schema(&in_files);
            let rows = ctx
                .read_parquet(uri, options)
                .await
                .unwrap()
                .with_column(PARTITION_COLUMN, lit(date))
                .unwrap();
            union = Some(match union {
                Some(before) => before.union(rows).unwrap(),
                None => rows,
            });
        }
        union.expect("the log lists files")
    }
}
