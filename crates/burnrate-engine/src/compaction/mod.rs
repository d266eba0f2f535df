//! Compaction: a table's closed days rewritten into a few large files sorted by time, and the
//! files no log lists any more deleted once no reader can need them (vacuum).
//!
//! Owns: choosing what to merge (a day at least `min_age_days` old holding more than
//! `max_files_per_day` files; of those, the small ones whose source has committed them), the
//! merge (DataFusion's sort, which spills to disk beyond its memory pool, cut into files of
//! about `target_file_bytes`), the one commit per table that swaps them in its Delta log (a
//! reader sees the old files or the new ones, never both), the object-store copy of both, and
//! vacuum.
//!
//! Erasure of one person's rows ([`erasure`]) rewrites files the same way.
//!
//! Must not know: how a source decides what it has committed; each says it ([`committed`]).

pub mod committed;
pub mod erasure;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use burnrate_otlp::Table;
use chrono::{NaiveDate, Utc};
use datafusion::common::Column;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{Expr, SortExpr};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::EngineError;
use crate::budget::MemoryBudget;
use crate::sink::mirror::mirror_of;
use crate::sink::on_own_runtime;
use crate::sink::parquet_sink::{ParquetSink, sync_dir};
use crate::sink::stored_types;
use crate::sink::table_log::{self, DurableFile, LoggedFile, Rewrite, TableFiles};
pub use committed::CommittedSegments;

/// Segment names of files burnrate rewrote (a merge, an erasure) start with this: no source owns
/// them, so no restart removes them.
pub const COMPACTED_SEGMENT_PREFIX: &str = "compact-";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompactionConfig {
    /// Bytes (compressed, on disk) a merged file is cut at. Default: 128 MiB.
    pub target_file_bytes: u64,
    /// A day is merged once it holds more files than this. Default: 4.
    pub max_files_per_day: usize,
    /// Days (UTC) at least this many days old are merged: 1 = yesterday and before. A day
    /// merged early is merged again as late files arrive. Default: 1.
    pub min_age_days: u32,
    /// Hours a file stays on disk after a merge removed it from its table's log (readers that
    /// opened the table before may still read it), and the age a file no log ever listed (a
    /// crashed flush's) must reach before vacuum deletes it. Default: 168 (Delta's 7 days).
    pub vacuum_after_hours: f64,
    /// Bytes the merge's sort holds in memory before it spills to disk. Inside `burnrate run`,
    /// at most a quarter of the memory budget, reserved from it while a merge runs. Default:
    /// 256 MiB.
    pub sort_memory_bytes: u64,
    /// Hours between compactions inside `burnrate run` (the first one this long after it
    /// starts); 0 leaves compaction to `burnrate compact` (a CronJob). Default: 6.
    pub interval_hours: f64,
    /// Days a table's rows are kept, by table name (`log_records = 30`): a day (UTC) older than
    /// that leaves the table's log whole, and vacuum deletes its files later. A table not named
    /// is kept for ever, but for `resources`, which keeps what `log_records`, `metric_points`
    /// and `spans` keep (named, it may not keep less). Default: none named.
    pub retention_days: BTreeMap<String, u32>,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            target_file_bytes: 128 << 20,
            max_files_per_day: 4,
            min_age_days: 1,
            vacuum_after_hours: 168.0,
            sort_memory_bytes: 256 << 20,
            interval_hours: 6.0,
            retention_days: BTreeMap::new(),
        }
    }
}

impl CompactionConfig {
    /// Days `table` keeps, if it does not keep everything. `resources`, unless named, keeps
    /// what the raw tables that name its rows keep: the longest of their retentions, and
    /// everything if one of them does.
    pub fn retention(&self, table: Table) -> Option<u32> {
        if let Some(days) = self.retention_days.get(table.name()) {
            return Some(*days);
        }
        if table != Table::Resources {
            return None;
        }
        Table::ALL
            .into_iter()
            .filter(|t| t.names_resources())
            .map(|t| self.retention_days.get(t.name()).copied())
            .collect::<Option<Vec<u32>>>()?
            .into_iter()
            .max()
    }
}

/// What compaction did to one table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TableCompaction {
    pub table: &'static str,
    /// Files in the table's log before and after.
    pub files_before: usize,
    pub files_after: usize,
    /// Days merged, files they lost and files written.
    pub days: usize,
    pub merged: usize,
    pub written: usize,
    /// Small files left as they were because their source has not committed them yet.
    pub uncommitted: usize,
    /// Another change to the same files won: nothing was committed, the next run tries again.
    pub conflict: Option<String>,
    /// Days past the table's retention, and their files, that left the log.
    pub expired_days: usize,
    pub expired_files: usize,
    /// Files vacuum deleted.
    pub vacuumed: usize,
    /// Objects vacuum deleted from the object-store copy, when there is one.
    pub store_vacuumed: usize,
    /// Why the table could not be compacted this time, if it could not.
    pub error: Option<String>,
}

/// Compacts every table under `root`, then vacuums it. `kafka_group` is the consumer group
/// whose positions say which Kafka segments are committed.
pub fn compact(
    root: &Path,
    config: &CompactionConfig,
    kafka_group: &str,
) -> Result<Vec<TableCompaction>, EngineError> {
    if !root.is_dir() {
        return Err(EngineError::NoDataset(root.display().to_string()));
    }
    for name in config.retention_days.keys() {
        if !Table::ALL.iter().any(|t| t.name() == name) {
            let tables: Vec<&str> = Table::ALL.iter().map(|t| t.name()).collect();
            return Err(EngineError::Config(format!(
                "compaction.retention_days: no table {name:?} (tables: {})",
                tables.join(", ")
            )));
        }
    }
    if let Some(days) = config.retention_days.get(Table::Resources.name())
        && let Some(raw) = Table::ALL.into_iter().find(|t| {
            t.names_resources()
                && config
                    .retention_days
                    .get(t.name())
                    .is_none_or(|raw_days| raw_days > days)
        })
    {
        let kept = match config.retention_days.get(raw.name()) {
            Some(raw_days) => format!("{raw_days} days"),
            None => "for ever".to_string(),
        };
        return Err(EngineError::Config(format!(
            "compaction.retention_days: resources = {days} is shorter than {} ({kept}), whose rows would lose their resource attributes; leave resources out (it then keeps what the raw tables keep) or keep it as long",
            raw.name()
        )));
    }
    let today = Utc::now().date_naive();
    let newest_day = today - chrono::Days::new(u64::from(config.min_age_days));
    let mut done = Vec::new();
    for table in Table::ALL {
        // A table that cannot be compacted (a file that does not read, a log that does not
        // load) is reported; the others are compacted all the same.
        match maintain(root, table, config, kafka_group, today, newest_day) {
            Ok(Some(outcome)) => done.push(outcome),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(table = table.name(), error = %error, "compaction failed for the table; the others go on");
                done.push(TableCompaction {
                    table: table.name(),
                    error: Some(error.to_string()),
                    ..Default::default()
                });
            }
        }
    }
    Ok(done)
}

/// Retention, compaction and vacuum of one table; `None` when it has no log.
fn maintain(
    root: &Path,
    table: Table,
    config: &CompactionConfig,
    kafka_group: &str,
    today: NaiveDate,
    newest_day: NaiveDate,
) -> Result<Option<TableCompaction>, EngineError> {
    let Some(mut read) = table_log::read_table(root, table)? else {
        return Ok(None);
    };
    let mut expired = (0, 0);
    if let Some(days) = config.retention(table) {
        let before = today - chrono::Days::new(u64::from(days));
        expired = expire(root, &read, before)?;
        if expired.1 > 0 {
            read = table_log::read_table(root, table)?
                .ok_or_else(|| EngineError::NotFound(format!("{}'s log", table.name())))?;
        }
    }
    // After the tables' files: see `CommittedSegments`.
    let committed = CommittedSegments::read(root, kafka_group, read.files.iter().map(segment))?;
    let mut outcome = compact_table(root, &read, config, &committed, newest_day)?;
    (outcome.expired_days, outcome.expired_files) = expired;
    outcome.files_before += expired.1;
    let keep = Duration::from_secs_f64(config.vacuum_after_hours.max(0.0) * 3600.0);
    outcome.vacuumed = table_log::vacuum(root, table, keep)?;
    if let Some((mirror_root, mirror)) = mirror_of(root) {
        // Removals the store's log has not had yet would keep their objects one vacuum more.
        mirror.publish(&mirror_root, table)?;
        outcome.store_vacuumed = mirror.vacuum(table, keep)?;
    }
    Ok(Some(outcome))
}

/// Compaction inside `burnrate run`: a thread that compacts the dataset every
/// `interval_hours`, its sort memory reserved from the process's memory budget (a round the
/// budget cannot hold waits for the next). Stops when dropped; a merge under way is left to
/// finish or to be cleared by a later vacuum, as a killed `burnrate compact` would be.
pub struct InProcessCompaction {
    stop: Option<std::sync::mpsc::Sender<()>>,
}

impl InProcessCompaction {
    /// Starts it, unless `config.interval_hours` is 0.
    pub fn start(
        root: &Path,
        config: &CompactionConfig,
        kafka_group: &str,
        budget: &Arc<MemoryBudget>,
    ) -> Result<Option<Self>, EngineError> {
        if config.interval_hours <= 0.0 {
            return Ok(None);
        }
        let every = Duration::try_from_secs_f64(config.interval_hours * 3600.0)
            .map_err(|e| EngineError::Config(format!("compaction.interval_hours: {e}")))?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (root, config, group, budget) = (
            root.to_path_buf(),
            config.clone(),
            kafka_group.to_string(),
            budget.clone(),
        );
        std::thread::Builder::new()
            .name("burnrate-compaction".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(every)
                {
                    let share = u64::try_from(budget.limit() / 4).unwrap_or(u64::MAX);
                    let pool = config.sort_memory_bytes.min(share);
                    let mut held = budget.reservation();
                    if !held.try_grow(usize::try_from(pool).unwrap_or(usize::MAX)) {
                        tracing::info!(
                            bytes = pool,
                            "the memory budget is full: compaction waits for its next round"
                        );
                        continue;
                    }
                    let round = CompactionConfig {
                        sort_memory_bytes: pool,
                        ..config.clone()
                    };
                    match compact(&root, &round, &group) {
                        Ok(done) => {
                            let merged: usize = done.iter().map(|t| t.merged).sum();
                            let vacuumed: usize = done.iter().map(|t| t.vacuumed).sum();
                            tracing::info!(merged, vacuumed, "compaction round done");
                        }
                        Err(error) => {
                            tracing::warn!(error = %error, "compaction round failed; the next one tries again");
                        }
                    }
                }
            })
            .map_err(|e| EngineError::io(Path::new("compaction thread"), e))?;
        Ok(Some(InProcessCompaction { stop: Some(stop) }))
    }
}

impl Drop for InProcessCompaction {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn compact_table(
    root: &Path,
    read: &TableFiles,
    config: &CompactionConfig,
    committed: &CommittedSegments,
    newest_day: NaiveDate,
) -> Result<TableCompaction, EngineError> {
    let table = read.table;
    let mut outcome = TableCompaction {
        table: table.name(),
        files_before: read.files.len(),
        files_after: read.files.len(),
        ..Default::default()
    };
    let mut days: BTreeMap<&str, Vec<&LoggedFile>> = BTreeMap::new();
    for file in &read.files {
        days.entry(&file.date).or_default().push(file);
    }
    let small = config.target_file_bytes / 2;
    let (mut removed, mut added) = (Vec::new(), Vec::new());
    for (date, files) in days {
        let closed = NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok_and(|d| d <= newest_day);
        if !closed || files.len() <= config.max_files_per_day {
            continue;
        }
        let (mergeable, uncommitted): (Vec<&LoggedFile>, Vec<&LoggedFile>) = files
            .into_iter()
            .filter(|f| f.size < small)
            .partition(|f| committed.contains(segment(f)));
        outcome.uncommitted += uncommitted.len();
        if mergeable.len() < 2 {
            continue;
        }
        let dir = root.join(table.name());
        let inputs: Vec<PathBuf> = mergeable.iter().map(|f| dir.join(&f.path)).collect();
        let written = on_own_runtime(|| merge(table, &dir, date, &inputs, config))?;
        outcome.days += 1;
        outcome.merged += mergeable.len();
        outcome.written += written.len();
        removed.extend(mergeable.into_iter().cloned());
        added.extend(written);
    }
    if removed.is_empty() {
        return Ok(outcome);
    }
    let mirror = mirror_of(root);
    if let Some((mirror_root, mirror)) = &mirror {
        for file in &added {
            mirror.put_file(
                mirror_root,
                &std::path::absolute(&file.path).map_err(|e| EngineError::io(&file.path, e))?,
            )?;
        }
    }
    let why = Rewrite::Compaction {
        target_size: config.target_file_bytes,
    };
    match table_log::replace_files(root, read, &removed, &added, &why) {
        Ok(()) => {}
        Err(error) if error.is_retryable() => {
            // Not in the log, so never read: deleted now rather than by a later vacuum, and
            // from the object-store copy, which has no log to leave them out.
            for file in &added {
                let _ = fs::remove_file(&file.path);
                if let Some((mirror_root, mirror)) = &mirror {
                    let absolute = std::path::absolute(&file.path)
                        .map_err(|e| EngineError::io(&file.path, e))?;
                    mirror.delete_file(mirror_root, &absolute)?;
                }
            }
            tracing::warn!(table = table.name(), error = %error, "compaction lost a race for its files; the next run tries again");
            outcome.conflict = Some(error.to_string());
            outcome.days = 0;
            outcome.merged = 0;
            outcome.written = 0;
            return Ok(outcome);
        }
        Err(error) => return Err(error),
    }
    publish_removal(root, table)?;
    outcome.files_after = outcome.files_before - removed.len() + added.len();
    tracing::info!(
        table = table.name(),
        days = outcome.days,
        merged = outcome.merged,
        written = outcome.written,
        "compacted"
    );
    Ok(outcome)
}

/// Removes from the log every file of `read`'s days before `before` (a day counts by its
/// `date`; `unknown` is kept), in one commit. Returns the days and files removed.
fn expire(
    root: &Path,
    read: &TableFiles,
    before: NaiveDate,
) -> Result<(usize, usize), EngineError> {
    let expired: Vec<LoggedFile> = read
        .files
        .iter()
        .filter(|f| NaiveDate::parse_from_str(&f.date, "%Y-%m-%d").is_ok_and(|d| d < before))
        .cloned()
        .collect();
    if expired.is_empty() {
        return Ok((0, 0));
    }
    let days: std::collections::BTreeSet<&str> = expired.iter().map(|f| f.date.as_str()).collect();
    let why = Rewrite::Retention {
        before: before.to_string(),
    };
    table_log::replace_files(root, read, &expired, &[], &why)?;
    publish_removal(root, read.table)?;
    tracing::info!(
        table = read.table.name(),
        days = days.len(),
        files = expired.len(),
        before = %before,
        "removed the days past the table's retention"
    );
    Ok((days.len(), expired.len()))
}

/// Files that left the log leave the object-store copy's log too. Their objects stay until the
/// store's vacuum, as the local files do until the local one: a reader of an older version of
/// either may still be reading them.
fn publish_removal(root: &Path, table: Table) -> Result<(), EngineError> {
    if let Some((mirror_root, mirror)) = mirror_of(root) {
        mirror.publish(&mirror_root, table)?;
    }
    Ok(())
}

/// Files that left the log leave the object-store copy at once, once its log has left them
/// too (a reader of that log never lists a deleted file): an erasure does not wait for the
/// vacuum.
fn unmirror(root: &Path, table: Table, files: &[LoggedFile]) -> Result<(), EngineError> {
    let Some((mirror_root, mirror)) = mirror_of(root) else {
        return Ok(());
    };
    mirror.publish(&mirror_root, table)?;
    for file in files {
        let path = std::path::absolute(root.join(table.name()).join(&file.path))
            .map_err(|e| EngineError::io(Path::new(&file.path), e))?;
        mirror.delete_file(&mirror_root, &path)?;
    }
    Ok(())
}

/// The segment a logged file belongs to: its name without `.parquet`.
fn segment(file: &LoggedFile) -> &str {
    let name = file.path.rsplit('/').next().unwrap_or(&file.path);
    name.strip_suffix(".parquet").unwrap_or(name)
}

/// Reads `inputs` (one day of `table`), sorts their rows by the table's time column and writes
/// them as files of about `target_file_bytes`, each durable before this returns. `resources`
/// keeps one row a resource.
async fn merge(
    table: Table,
    table_dir: &Path,
    date: &str,
    inputs: &[PathBuf],
    config: &CompactionConfig,
) -> Result<Vec<DurableFile>, EngineError> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(
            usize::try_from(config.sort_memory_bytes).unwrap_or(usize::MAX),
        )))
        .build_arc()
        .map_err(EngineError::from)?;
    // One partition: one sorted stream, cut into files in time order.
    let session = SessionConfig::new().with_target_partitions(1);
    let ctx = SessionContext::new_with_config_rt(session, runtime);
    let schema = table.schema();
    let paths: Vec<String> = inputs
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let column = |name: &str| Expr::Column(Column::from_name(name));
    let time = column(table.time_column());
    let mut frame = ctx
        .read_parquet(paths, ParquetReadOptions::default().schema(&schema))
        .await
        .map_err(EngineError::from)?;
    if table == Table::Resources {
        // A resource is written once in each file of its day: a merged day keeps it once,
        // at the first time it was named.
        let id = column("resource_id");
        let every = schema.fields().iter().map(|f| column(f.name())).collect();
        let first = vec![
            SortExpr::new(id.clone(), true, false),
            SortExpr::new(time.clone(), true, false),
        ];
        frame = frame
            .distinct_on(vec![id], every, Some(first))
            .map_err(EngineError::from)?;
    }
    let mut rows = frame
        .sort(vec![SortExpr::new(time, true, false)])
        .map_err(EngineError::from)?
        .execute_stream()
        .await
        .map_err(EngineError::from)?;

    let dir = table_dir.join(format!("{}={date}", table_log::PARTITION_COLUMN));
    // Read in burnrate's types, written in Delta's: a file from before that layout is
    // rewritten in it.
    let stored = stored_types::stored_schema(&schema);
    let properties = ParquetSink::rewrite_properties();
    let mut written = Vec::new();
    let mut open: Option<(PathBuf, ArrowWriter<File>, usize)> = None;
    while let Some(batch) = rows.next().await {
        let batch = batch.map_err(EngineError::from)?;
        if batch.num_rows() == 0 {
            continue;
        }
        let (_, writer, count) = match &mut open {
            Some(open) => open,
            None => {
                let name = format!("{COMPACTED_SEGMENT_PREFIX}{}.parquet", uuid::Uuid::new_v4());
                let path = dir.join(name);
                let tmp = path.with_extension("parquet.tmp");
                let file = File::create(&tmp).map_err(|e| EngineError::io(&tmp, e))?;
                let writer = ArrowWriter::try_new(file, stored.clone(), Some(properties.clone()))?;
                open.insert((path, writer, 0))
            }
        };
        writer.write(&stored_types::to_stored(&batch)?)?;
        *count += batch.num_rows();
        let size = writer.bytes_written() + writer.in_progress_size();
        if size as u64 >= config.target_file_bytes
            && let Some((path, writer, count)) = open.take()
        {
            written.push(finish(table, date, path, writer, count)?);
        }
    }
    if let Some((path, writer, count)) = open.take() {
        written.push(finish(table, date, path, writer, count)?);
    }
    sync_dir(&dir)?;
    Ok(written)
}

/// Closes a merged file, fsyncs it and renames it to its final name.
fn finish(
    table: Table,
    date: &str,
    path: PathBuf,
    writer: ArrowWriter<File>,
    rows: usize,
) -> Result<DurableFile, EngineError> {
    let tmp = path.with_extension("parquet.tmp");
    let file = writer.into_inner()?;
    file.sync_all().map_err(|e| EngineError::io(&tmp, e))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(|e| EngineError::io(&path, e))?;
    Ok(DurableFile {
        table,
        path,
        date: date.to_string(),
        rows,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use datafusion::arrow::array::{AsArray, RecordBatch};
    use datafusion::arrow::datatypes::{Int64Type, TimestampMicrosecondType};

    use super::*;
    use crate::sink::dead_letters::{DeadLetter, dead_letter_batch};
    use crate::sink::parquet_sink::remove_segments;
    use crate::sink::table_buffer::decoded_client_records;

    /// 2026-01-01T00:00:00Z.
    const NEW_YEAR: i64 = 1_767_225_600_000_000_000;
    const HOUR: i64 = 3_600_000_000_000;

    /// Three dead letters of flush `n`, at hours that interleave with the other flushes'.
    fn letters(n: i64) -> BTreeMap<Table, Vec<RecordBatch>> {
        let letters: Vec<DeadLetter> = (0..3)
            .map(|i| DeadLetter {
                received_at_nanos: NEW_YEAR + (i * 7 + 20 - n) * HOUR,
                origin: format!("test/{n}/{i}"),
                topic: None,
                partition: None,
                offset: None,
                error: "bad".into(),
                payload: vec![0; 10],
            })
            .collect();
        BTreeMap::from([(
            Table::DeadLetters,
            vec![dead_letter_batch(&letters).unwrap()],
        )])
    }

    /// A dataset of `flushes` segments of [`letters`], `seg-000` on.
    fn flushed(root: &Path, flushes: i64) -> ParquetSink {
        let sink = ParquetSink::new(root);
        for n in 0..flushes {
            sink.write_segment(&format!("seg-{n:03}"), &letters(n))
                .unwrap();
        }
        sink
    }

    async fn query(root: &Path, sql: &str) -> Vec<RecordBatch> {
        let ctx = crate::open_dataset(root).await.unwrap();
        ctx.sql(sql).await.unwrap().collect().await.unwrap()
    }

    async fn count(root: &Path) -> i64 {
        let batches = query(root, "SELECT count(*) FROM dead_letters").await;
        batches[0].column(0).as_primitive::<Int64Type>().value(0)
    }

    fn files_by_day(root: &Path) -> BTreeMap<String, Vec<String>> {
        let read = table_log::read_table(root, Table::DeadLetters)
            .unwrap()
            .unwrap();
        let mut days: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for file in read.files {
            days.entry(file.date).or_default().push(file.path);
        }
        days
    }

    #[test]
    fn resources_keep_what_the_raw_tables_keep() {
        let config = |kept: &[(&str, u32)]| CompactionConfig {
            retention_days: kept
                .iter()
                .map(|(t, days)| (t.to_string(), *days))
                .collect(),
            ..Default::default()
        };
        let raw = [("log_records", 30), ("metric_points", 90), ("spans", 7)];
        assert_eq!(config(&raw).retention(Table::Resources), Some(90));
        assert_eq!(
            config(&raw[..2]).retention(Table::Resources),
            None,
            "spans kept for ever"
        );
        assert_eq!(config(&raw).retention(Table::ApiRequests), None);
        let mut named = raw.to_vec();
        named.push(("resources", 400));
        assert_eq!(config(&named).retention(Table::Resources), Some(400));

        let dir = tempfile::tempdir().unwrap();
        named.pop();
        named.push(("resources", 60));
        let refused = compact(dir.path(), &config(&named), "burnrate").unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("resources = 60 is shorter than metric_points (90 days)"),
            "{refused}"
        );
    }

    /// A resource flushed in every file that names it is one row of `resources` once its day
    /// is merged, and the raw rows still read with it.
    #[tokio::test]
    async fn a_merged_day_keeps_each_resource_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let sink = ParquetSink::new(root);
        for n in 0..6 {
            let team = if n % 2 == 0 { "web" } else { "mobile" };
            let client = [("service.name", "claude-code"), ("team", team)];
            let time = NEW_YEAR + n * HOUR;
            let rows = decoded_client_records(&client, time, &["a", "b"]);
            sink.write_segment(&format!("seg-{n:03}"), &rows).unwrap();
        }
        let resources = "SELECT count(*) FROM resources";
        let count_of =
            |batches: Vec<RecordBatch>| batches[0].column(0).as_primitive::<Int64Type>().value(0);
        assert_eq!(count_of(query(root, resources).await), 6);

        let config = CompactionConfig {
            max_files_per_day: 1,
            ..Default::default()
        };
        let done = compact(root, &config, "burnrate").unwrap();
        let merged = done.iter().find(|t| t.table == "resources").unwrap();
        assert_eq!((merged.merged, merged.written), (6, 1), "{merged:?}");
        let firsts = query(
            root,
            "SELECT resource['team'] AS team, date_part('hour', time) AS hour \
             FROM resources ORDER BY hour",
        )
        .await;
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&firsts)
            .unwrap()
            .to_string();
        // Each at the first time it was named: hours 0 and 1 of the day.
        let expected = "\
+--------+------+
| team   | hour |
+--------+------+
| web    | 0    |
| mobile | 1    |
+--------+------+";
        assert_eq!(text, expected);
        let by_team = query(
            root,
            "SELECT count(*) FROM log_records WHERE resource['team'] = 'web'",
        )
        .await;
        assert_eq!(count_of(by_team), 6);
    }

    #[tokio::test]
    async fn closed_days_become_one_sorted_file_and_the_old_ones_go_after_vacuum() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let sink = flushed(root, 10);
        // A receiver segment whose write-ahead log is still there: not committed by its source.
        sink.write_segment("receiver-00000000000000000042", &letters(10))
            .unwrap();
        let wal_dir = root.join("_burnrate/receiver");
        fs::create_dir_all(&wal_dir).unwrap();
        fs::write(wal_dir.join("wal-00000000000000000042.log"), b"").unwrap();
        let before = files_by_day(root);
        assert_eq!(before.len(), 2, "{before:?}");
        assert!(before.values().all(|files| files.len() == 11));
        assert_eq!(count(root).await, 33);

        let config = CompactionConfig {
            vacuum_after_hours: 168.0,
            ..Default::default()
        };
        let done = compact(root, &config, "burnrate").unwrap();
        let letters_done = done.iter().find(|t| t.table == "dead_letters").unwrap();
        assert_eq!(
            (letters_done.days, letters_done.merged, letters_done.written),
            (2, 20, 2)
        );
        assert_eq!(letters_done.uncommitted, 2, "the receiver's segment stays");
        assert_eq!(
            (letters_done.files_before, letters_done.files_after),
            (22, 4)
        );
        // The merge's commit has a checkpoint of its own (the table's 23 commits are short of
        // the hundredth), so readers need not replay the adds and removes it replaced.
        let log_dir = root.join("dead_letters/_delta_log");
        let merge_version = fs::read_dir(&log_dir)
            .unwrap()
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .find(|path| fs::read_to_string(path).is_ok_and(|text| text.contains("\"OPTIMIZE\"")))
            .and_then(|path| path.file_stem()?.to_str()?.parse::<u64>().ok())
            .expect("the merge's commit");
        let hint = fs::read_to_string(log_dir.join("_last_checkpoint"))
            .expect("a checkpoint after the merge");
        assert!(
            hint.contains(&format!("\"version\":{merge_version},")),
            "{hint} (merge at {merge_version})"
        );
        let after = files_by_day(root);
        for files in after.values() {
            assert_eq!(files.len(), 2, "{files:?}");
            assert!(files.iter().any(|f| f.contains("receiver-")));
        }
        assert_eq!(count(root).await, 33);
        // Each merged file is in time order, in Delta's microseconds.
        let merged: Vec<PathBuf> = after
            .values()
            .flatten()
            .filter(|f| f.contains(COMPACTED_SEGMENT_PREFIX))
            .map(|f| root.join("dead_letters").join(f))
            .collect();
        for path in &merged {
            let file = File::open(path).unwrap();
            let reader =
                datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
                    file, 1024,
                )
                .unwrap();
            let mut times: Vec<i64> = Vec::new();
            for batch in reader {
                let batch = batch.unwrap();
                let column = batch.column_by_name("received_at").unwrap();
                times.extend(
                    column
                        .as_primitive::<TimestampMicrosecondType>()
                        .values()
                        .iter(),
                );
            }
            assert!(times.is_sorted(), "{path:?}: {times:?}");
        }
        // The merged-away files stay for readers that opened the table before, unread.
        assert!(
            root.join("dead_letters")
                .join(&before["2026-01-01"][0])
                .exists()
        );
        // Nothing left to merge: a second run changes nothing.
        let again = compact(root, &config, "burnrate").unwrap();
        let letters_again = again.iter().find(|t| t.table == "dead_letters").unwrap();
        assert_eq!((letters_again.days, letters_again.vacuumed), (0, 0));

        // Once their time is up, vacuum deletes them, and a crashed flush's file with them.
        let crashed = root.join("dead_letters/date=2026-01-01/crashed.parquet");
        fs::copy(
            root.join("dead_letters").join(&before["2026-01-01"][0]),
            &crashed,
        )
        .unwrap();
        let now = CompactionConfig {
            vacuum_after_hours: 0.0,
            ..Default::default()
        };
        let vacuumed = compact(root, &now, "burnrate").unwrap();
        let letters_vacuumed = vacuumed.iter().find(|t| t.table == "dead_letters").unwrap();
        assert_eq!(letters_vacuumed.vacuumed, 21);
        assert!(!crashed.exists());
        assert_eq!(count(root).await, 33);
    }

    /// Whether any column chunk of the Parquet file at `path` has statistics, and whether all do.
    fn statistics(path: &Path) -> (bool, bool) {
        use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
        let reader = SerializedFileReader::new(File::open(path).unwrap()).unwrap();
        let chunks: Vec<bool> = reader
            .metadata()
            .row_groups()
            .iter()
            .flat_map(|group| group.columns())
            .map(|chunk| chunk.statistics().is_some())
            .collect();
        assert!(!chunks.is_empty(), "{path:?}");
        (chunks.iter().any(|s| *s), chunks.iter().all(|s| *s))
    }

    /// A flush's files are written for the writer (they live until their day is merged), the
    /// merged ones for readers: see `ParquetSink::flush_properties`.
    #[tokio::test]
    async fn flushed_files_carry_no_statistics_and_merged_files_do() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        flushed(root, 6);
        let path_of = |file: &String| root.join("dead_letters").join(file);
        let flushed_files: Vec<String> = files_by_day(root).into_values().flatten().collect();
        assert_eq!(flushed_files.len(), 12, "{flushed_files:?}");
        for file in &flushed_files {
            assert_eq!(statistics(&path_of(file)), (false, false), "{file}");
        }
        compact(root, &CompactionConfig::default(), "burnrate").unwrap();
        let merged: Vec<String> = files_by_day(root)
            .into_values()
            .flatten()
            .filter(|file| file.contains(COMPACTED_SEGMENT_PREFIX))
            .collect();
        assert_eq!(merged.len(), 2, "{merged:?}");
        for file in &merged {
            assert_eq!(statistics(&path_of(file)), (true, true), "{file}");
        }
        assert_eq!(count(root).await, 18);
    }

    #[tokio::test]
    async fn inside_a_run_a_round_waits_until_the_budget_holds_its_sort() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        flushed(root, 6);
        let budget = MemoryBudget::for_memory_limit(512 << 20);
        let mut sources = budget.reservation();
        sources.force(budget.limit());
        let config = CompactionConfig {
            interval_hours: 0.1 / 3600.0,
            ..Default::default()
        };
        let compaction = InProcessCompaction::start(root, &config, "burnrate", &budget)
            .unwrap()
            .expect("started");
        std::thread::sleep(Duration::from_millis(800));
        assert!(
            files_by_day(root).values().all(|files| files.len() == 6),
            "no round while the sources hold the whole budget"
        );
        drop(sources);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while files_by_day(root).values().any(|files| files.len() > 1) {
            assert!(std::time::Instant::now() < deadline, "never compacted");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(count(root).await, 18);
        // The round gives its memory back once its vacuum is done.
        while budget.used() > 0 {
            assert!(std::time::Instant::now() < deadline, "memory kept");
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(compaction);
    }

    #[tokio::test]
    async fn days_past_a_tables_retention_leave_its_log_and_an_unknown_table_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let sink = ParquetSink::new(root);
        // 2026-01-01 and 2026-01-02 (long past), and yesterday.
        sink.write_segment("seg-old", &letters(0)).unwrap();
        let yesterday = Utc::now().timestamp_nanos_opt().unwrap() - 24 * HOUR;
        let recent = DeadLetter {
            received_at_nanos: yesterday,
            origin: "test/recent".into(),
            topic: None,
            partition: None,
            offset: None,
            error: "bad".into(),
            payload: vec![0; 10],
        };
        let recent = BTreeMap::from([(
            Table::DeadLetters,
            vec![dead_letter_batch(&[recent]).unwrap()],
        )]);
        sink.write_segment("seg-recent", &recent).unwrap();
        assert_eq!(count(root).await, 4);

        let mut config = CompactionConfig::default();
        config.retention_days.insert("not_a_table".into(), 1);
        let error = compact(root, &config, "burnrate").unwrap_err().to_string();
        assert!(
            error.contains("not_a_table") && error.contains("dead_letters"),
            "{error}"
        );

        config.retention_days = BTreeMap::from([("dead_letters".to_string(), 30)]);
        let done = compact(root, &config, "burnrate").unwrap();
        let letters_done = done.iter().find(|t| t.table == "dead_letters").unwrap();
        assert_eq!(
            (letters_done.expired_days, letters_done.expired_files),
            (2, 2)
        );
        assert_eq!(count(root).await, 1, "yesterday's letter stays");
        let again = compact(root, &config, "burnrate").unwrap();
        assert_eq!(again.iter().map(|t| t.expired_files).sum::<usize>(), 0);
    }

    #[test]
    fn a_table_that_cannot_be_compacted_is_reported_and_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        flushed(root, 6);
        let before = files_by_day(root);
        let broken = root.join("dead_letters").join(&before["2026-01-01"][0]);
        fs::write(&broken, b"not parquet").unwrap();
        let done = compact(root, &CompactionConfig::default(), "burnrate").unwrap();
        let letters_done = done.iter().find(|t| t.table == "dead_letters").unwrap();
        let error = letters_done.error.as_deref().expect("an error");
        assert!(
            error.contains("parquet") || error.contains("Parquet"),
            "{error}"
        );
        assert_eq!(files_by_day(root), before, "nothing committed");
        // The first day failed before its sort wrote anything, and the table stopped there.
        let written: Vec<_> = crate::sink::parquet_sink::segment_files(&root.join("dead_letters"))
            .unwrap()
            .into_iter()
            .filter(|f| f.segment.starts_with(COMPACTED_SEGMENT_PREFIX))
            .collect();
        assert!(written.is_empty(), "{written:?}");
    }

    #[tokio::test]
    async fn a_merge_that_races_a_replay_commits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        flushed(root, 3);
        let read = table_log::read_table(root, Table::DeadLetters)
            .unwrap()
            .unwrap();
        // A replay removes seg-001 after the merge read the table.
        assert_eq!(remove_segments(root, |s, _| s == "seg-001").unwrap(), 2);
        let merged = DurableFile {
            table: Table::DeadLetters,
            path: root.join("dead_letters/date=2026-01-01/compact-x.parquet"),
            date: "2026-01-01".into(),
            rows: 0,
        };
        fs::copy(
            root.join("dead_letters").join(&read.files[0].path),
            &merged.path,
        )
        .unwrap();
        let why = Rewrite::Compaction {
            target_size: 1 << 20,
        };
        let error = table_log::replace_files(root, &read, &read.files, &[merged], &why)
            .expect_err("the replay's removal conflicts");
        assert!(error.is_retryable(), "{error}");
        assert_eq!(count(root).await, 6, "the log is as the replay left it");
    }
}
