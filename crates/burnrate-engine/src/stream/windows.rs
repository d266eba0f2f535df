//! Event-time usage windows: each durable micro-batch of `api_requests` and `tool_calls` is
//! aggregated by `sql/window_aggregate.sql`, merged into the open windows by
//! `sql/window_merge.sql`, and a window is written to `usage_windows` once the watermark passes
//! its end.
//!
//! Watermark = highest event time seen − allowed lateness. A row whose window already closed is
//! late: it goes to `late_events` and into a correction row of its window (revision 1, 2, …), so
//! sums over `usage_windows` stay exact.
//!
//! Restarts: the open windows, the watermark, the revisions handed out, the Prometheus totals and
//! how far each origin (Kafka partition, receiver log) was fed live in one checkpoint file,
//! `_burnrate/windows/<replica>.parquet`, replaced atomically after every micro-batch. Output
//! files are named `windows-<replica>-<checkpoint seq>`, written before the checkpoint that
//! counts them; files past the checkpoint's seq are a crashed run's and are deleted at start. A
//! micro-batch at or before an origin's recorded position was already fed and is skipped, so a
//! source replaying what it never committed does not count it twice.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burnrate_otlp::{Table, WINDOW_DIMENSIONS};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, PrimitiveArray, RecordBatch, StringArray,
    TimestampNanosecondArray, UInt32Array, new_null_array,
};
use datafusion::arrow::compute::{cast, concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::{ArrowPrimitiveType, Field, SchemaRef, TimestampNanosecondType};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::file::metadata::KeyValue;
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use crate::EngineError;
use crate::sink::parquet_sink::{ParquetSink, remove_segments, write_atomically};
use crate::source::ledger::STATE_DIR;
use crate::stream::anomalies::{AnomalyConfig, AnomalyDetector, AnomalyState, anomaly_batch};
use crate::stream::prepared::PreparedSql;
use crate::stream::sketch::register_sketch_functions;
use crate::stream::totals::PushTotals;

const AGGREGATE_SQL: &str = include_str!("../../../../sql/window_aggregate.sql");
const MERGE_SQL: &str = include_str!("../../../../sql/window_merge.sql");
/// The table `window_merge.sql` reads: rows of `usage_windows`.
const MERGE_INPUT: &str = "windows";
const STATE_KEY: &str = "burnrate.window_state";
pub const WINDOW_SEGMENT_PREFIX: &str = "windows-";
/// The tables a micro-batch's windows are aggregated from: of a segment, the windows read only
/// these.
pub const WINDOW_INPUTS: [Table; 2] = [Table::ApiRequests, Table::ToolCalls];
const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// How usage is windowed: the `[windows]` configuration section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WindowSpec {
    /// Tumbling window width.
    pub width_seconds: u64,
    /// How far behind the highest event time seen an event may arrive and still count in its
    /// window rather than in a correction.
    pub allowed_lateness_seconds: u64,
    /// Columns windows are grouped by; any of `WINDOW_DIMENSIONS`.
    pub dimensions: Vec<String>,
    /// A directory holding the user's own `window_aggregate.sql` / `window_merge.sql`; the
    /// built-in ones are used for any file it lacks.
    pub sql_dir: Option<PathBuf>,
}

impl Default for WindowSpec {
    fn default() -> Self {
        WindowSpec {
            width_seconds: 60,
            allowed_lateness_seconds: 120,
            dimensions: [
                "user_id",
                "team",
                "project",
                "model",
                "query_source",
                "speed",
                "effort",
            ]
            .map(String::from)
            .to_vec(),
            sql_dir: None,
        }
    }
}

impl WindowSpec {
    pub fn validate(&self) -> Result<(), EngineError> {
        if self.width_seconds == 0 || 86_400 % self.width_seconds != 0 {
            return Err(EngineError::Config(format!(
                "windows.width_seconds = {}: must divide a day (60, 300, 3600, ...)",
                self.width_seconds
            )));
        }
        for dimension in &self.dimensions {
            if !WINDOW_DIMENSIONS.contains(&dimension.as_str()) {
                return Err(EngineError::Config(format!(
                    "windows.dimensions: unknown dimension {dimension:?}; one of {}",
                    WINDOW_DIMENSIONS.join(", ")
                )));
            }
        }
        Ok(())
    }

    fn width_nanos(&self) -> i64 {
        self.width_seconds as i64 * NANOS_PER_SECOND
    }

    /// The projection of the dimension columns, unconfigured ones (and ones `table` lacks) NULL.
    fn projection(&self, has: impl Fn(&str) -> bool) -> String {
        WINDOW_DIMENSIONS
            .iter()
            .map(|d| {
                if self.dimensions.iter().any(|c| c == d) && has(d) {
                    d.to_string()
                } else {
                    format!("CAST(NULL AS VARCHAR) AS {d}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `INTERVAL '<n> seconds'`, the form the SQL files take for `${window}`.
pub fn interval(seconds: u64) -> String {
    format!("INTERVAL '{seconds} seconds'")
}

/// The window SQL with this configuration filled in.
#[derive(Debug, Clone)]
pub struct WindowSql {
    aggregate: String,
    merge_template: String,
    width_seconds: u64,
    /// One session for every statement, each planned once.
    prepared: Arc<PreparedSql>,
}

impl WindowSql {
    pub fn load(spec: &WindowSpec) -> Result<Self, EngineError> {
        let read = |name: &str, builtin: &str| -> Result<String, EngineError> {
            match &spec.sql_dir {
                Some(dir) if dir.join(name).is_file() => {
                    let path = dir.join(name);
                    fs::read_to_string(&path).map_err(|e| EngineError::io(&path, e))
                }
                _ => Ok(builtin.to_string()),
            }
        };
        let has = |table: Table| {
            move |column: &str| table.schema().fields().iter().any(|f| f.name() == column)
        };
        let aggregate = read("window_aggregate.sql", AGGREGATE_SQL)?
            .replace("${window}", &interval(spec.width_seconds))
            .replace(
                "${request_dimensions}",
                &spec.projection(has(Table::ApiRequests)),
            )
            .replace(
                "${tool_dimensions}",
                &spec.projection(has(Table::ToolCalls)),
            );
        let prepared = PreparedSql::new(
            window_context(),
            &[
                (Table::ApiRequests.name(), Table::ApiRequests.schema()),
                (Table::ToolCalls.name(), Table::ToolCalls.schema()),
                (MERGE_INPUT, Table::UsageWindows.schema()),
            ],
        )?;
        Ok(WindowSql {
            aggregate,
            merge_template: read("window_merge.sql", MERGE_SQL)?,
            width_seconds: spec.width_seconds,
            prepared: Arc::new(prepared),
        })
    }

    /// Merge SQL for windows of `seconds` (the window width itself, or an hour or day rollup).
    pub fn merge(&self, seconds: u64) -> String {
        self.merge_template.replace("${window}", &interval(seconds))
    }

    /// Partial windows of one micro-batch (`api_requests`, `tool_calls`): sums, sketches and
    /// session lists, with the derived columns still NULL.
    pub async fn partials(
        &self,
        requests: Vec<RecordBatch>,
        tools: Vec<RecordBatch>,
    ) -> Result<Vec<RecordBatch>, EngineError> {
        let inputs = [
            (Table::ApiRequests.name(), requests),
            (Table::ToolCalls.name(), tools),
        ];
        let batches = self.prepared.run(&self.aggregate, &inputs).await?;
        conform_all(batches, &Table::UsageWindows.schema())
    }

    /// The windows of one micro-batch, complete: [`Self::partials`] merged, which fills in
    /// the percentiles and rates.
    pub async fn aggregate(
        &self,
        requests: Vec<RecordBatch>,
        tools: Vec<RecordBatch>,
    ) -> Result<Vec<RecordBatch>, EngineError> {
        let partials = self.partials(requests, tools).await?;
        self.merge_windows(partials, self.width_seconds).await
    }

    /// `windows` (rows of `usage_windows`) merged into windows of `seconds`.
    pub async fn merge_windows(
        &self,
        windows: Vec<RecordBatch>,
        seconds: u64,
    ) -> Result<Vec<RecordBatch>, EngineError> {
        let batches = self
            .prepared
            .run(&self.merge(seconds), &[(MERGE_INPUT, windows)])
            .await?;
        conform_all(batches, &Table::UsageWindows.schema())
    }
}

/// A session with the sketch functions, for window SQL. Every core, micro-batches included:
/// one partition was measured slower for 20,000-row batches too (`benches/windows.rs`).
pub fn window_context() -> SessionContext {
    let ctx = SessionContext::new();
    register_sketch_functions(&ctx);
    ctx
}

/// `batches` with exactly `schema` (same names, cast types), empty ones left out, so the output
/// can be stored and unioned with stored rows.
fn conform_all(
    batches: Vec<RecordBatch>,
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>, EngineError> {
    batches
        .into_iter()
        .filter(|b| b.num_rows() > 0)
        .map(|batch| conform(&batch, schema))
        .collect()
}

fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, EngineError> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| conform_column(batch, field))
        .collect::<Result<Vec<ArrayRef>, EngineError>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

fn conform_column(batch: &RecordBatch, field: &Field) -> Result<ArrayRef, EngineError> {
    let column = batch.column_by_name(field.name()).ok_or_else(|| {
        EngineError::Schema(format!("window SQL returned no column {}", field.name()))
    })?;
    if column.data_type() == field.data_type() {
        Ok(column.clone())
    } else {
        Ok(cast(column, field.data_type())?)
    }
}

/// A checkpoint written by an older release, in today's schema: a nullable column it lacks (a
/// dimension or a sketch added since) reads as NULL, as the Parquet tables do.
fn evolve(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, EngineError> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            None if field.is_nullable() => Ok(new_null_array(field.data_type(), batch.num_rows())),
            _ => Ok(conform_column(batch, field)?),
        })
        .collect::<Result<Vec<ArrayRef>, EngineError>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// What the window stage keeps across restarts, beside the open windows themselves.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct WindowState {
    /// Checkpoints written so far; names the output files of the next one.
    pub seq: u64,
    pub max_event_nanos: Option<i64>,
    /// Windows starting before this have closed: rows for them are late.
    pub closed_through_nanos: Option<i64>,
    /// The last position fed, by origin (`kafka/<topic>/<partition>` → offset, `receiver` → log
    /// sequence, `files` → segment count).
    pub positions: BTreeMap<String, i64>,
    /// Corrections handed out, by window and dimensions.
    pub revisions: BTreeMap<String, u32>,
    pub late_events: u64,
    pub windows_closed: u64,
    pub totals: PushTotals,
    #[serde(default)]
    pub anomalies: AnomalyState,
}

/// What one micro-batch did to the windows.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WindowProgress {
    /// The micro-batch was fed before (a replay) and left out.
    pub skipped: bool,
    pub closed: usize,
    pub corrections: usize,
    pub late_events: usize,
}

/// What consumes the window stage's state once a step that closed windows is durable (the
/// publisher): the totals and anomaly state as of that step, never the rows' sources.
pub trait WindowOutput: Send {
    /// After a step whose output files and checkpoint are durable, and once when attached.
    fn closed(&mut self, state: &WindowState);
    /// At the end of a run, with the last state: whether it was delivered within `grace`.
    fn finish(self: Box<Self>, state: &WindowState, grace: std::time::Duration) -> bool;
}

/// One durable micro-batch for the windows: its origin, the position it ends at, its tables.
pub type MicroBatch<'a> = (&'a str, i64, &'a BTreeMap<Table, Vec<RecordBatch>>);

pub struct WindowStage {
    spec: WindowSpec,
    sql: WindowSql,
    replica: String,
    sink: ParquetSink,
    state_path: PathBuf,
    state: WindowState,
    open: Vec<RecordBatch>,
    detector: AnomalyDetector,
    output: Option<Box<dyn WindowOutput>>,
    /// Held while the stage lives: two processes with one replica name would overwrite each
    /// other's checkpoint and window files.
    _lock: File,
    /// The runtime the window SQL runs on when the caller is not inside one (the Kafka sink's
    /// thread), kept for the stage's life: a thread and runtime per flush scattered the
    /// long-lived window state over the heaps of threads that had exited.
    runtime: std::sync::OnceLock<tokio::runtime::Runtime>,
}

impl Drop for WindowStage {
    fn drop(&mut self) {
        // The stage may be dropped inside an async context, where dropping a runtime the
        // blocking way panics.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for WindowStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowStage")
            .field("replica", &self.replica)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl WindowStage {
    /// Loads the checkpoint of `replica` under `data_dir` (or starts empty) and removes the
    /// output files a crashed run wrote past it.
    pub fn open(
        data_dir: &Path,
        spec: &WindowSpec,
        replica: &str,
        max_series: usize,
    ) -> Result<Self, EngineError> {
        Self::open_with(
            data_dir,
            spec,
            &AnomalyConfig::default(),
            replica,
            max_series,
        )
    }

    /// [`Self::open`] with anomaly rules of one's own; their history is rebuilt from
    /// `usage_windows`.
    pub fn open_with(
        data_dir: &Path,
        spec: &WindowSpec,
        anomalies: &AnomalyConfig,
        replica: &str,
        max_series: usize,
    ) -> Result<Self, EngineError> {
        spec.validate()?;
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
        if replica.is_empty() || !replica.chars().all(allowed) {
            return Err(EngineError::Config(format!(
                "replica {replica:?}: use letters, digits, '_', '.' or '-' (it names files and the Pushgateway group)"
            )));
        }
        let state_dir = data_dir.join(STATE_DIR).join("windows");
        let lock = hold_replica(&state_dir, replica)?;
        let state_path = state_dir.join(format!("{replica}.parquet"));
        let (mut state, open) = read_checkpoint(&state_path)?;
        state.totals.set_max_series(max_series);
        let prefix = format!("{WINDOW_SEGMENT_PREFIX}{replica}-");
        let seq = state.seq;
        remove_segments(data_dir, |segment, temporary| {
            segment
                .strip_prefix(&prefix)
                .and_then(|s| s.parse::<u64>().ok())
                .is_some_and(|s| temporary || s > seq)
        })?;
        let mut stage = WindowStage {
            sql: WindowSql::load(spec)?,
            spec: spec.clone(),
            replica: replica.to_string(),
            sink: ParquetSink::new(data_dir),
            state_path,
            state,
            open,
            detector: AnomalyDetector::new(anomalies)?,
            output: None,
            _lock: lock,
            runtime: std::sync::OnceLock::new(),
        };
        stage.rebuild_history(data_dir)?;
        Ok(stage)
    }

    /// Feeds the detector this replica's closed windows of the last 62 days (what its rules
    /// and budgets look back over).
    fn rebuild_history(&mut self, data_dir: &Path) -> Result<(), EngineError> {
        let Some(through) = self.state.closed_through_nanos else {
            return Ok(());
        };
        let since = through.saturating_sub(62 * 86_400 * NANOS_PER_SECOND);
        let columns: Vec<String> = Table::UsageWindows
            .schema()
            .fields()
            .iter()
            .map(|f| format!("\"{}\"", f.name()))
            .collect();
        let sql = format!(
            "SELECT {} FROM usage_windows WHERE replica = '{}' AND window_start >= to_timestamp_nanos({since}) ORDER BY window_start",
            columns.join(", "),
            self.replica
        );
        let batches = self.run(async {
            let ctx = crate::query::catalog::open_dataset(data_dir).await?;
            Ok(ctx.sql(&sql).await?.collect().await?)
        })?;
        for batch in &batches {
            self.detector.observe(batch)?;
        }
        Ok(())
    }

    /// Hands the state to `output` after every step that closes windows, starting now with
    /// what earlier runs left.
    pub fn output_to(&mut self, output: Box<dyn WindowOutput>) {
        let output = self.output.insert(output);
        output.closed(&self.state);
    }

    /// Hands `output` the last state and waits up to `grace` for it to be delivered; whether it
    /// was (true without an output).
    pub fn finish(&mut self, grace: std::time::Duration) -> bool {
        match self.output.take() {
            Some(output) => output.finish(&self.state, grace),
            None => true,
        }
    }

    pub fn state(&self) -> &WindowState {
        &self.state
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// The last position of `origin` already fed, if any.
    pub fn position(&self, origin: &str) -> Option<i64> {
        self.state.positions.get(origin).copied()
    }

    /// Every origin's position.
    pub fn positions(&self) -> BTreeMap<String, i64> {
        self.state.positions.clone()
    }

    pub fn open_windows(&self) -> usize {
        self.open.iter().map(RecordBatch::num_rows).sum()
    }

    /// Feeds one durable micro-batch of `origin` ending at `position`.
    pub fn feed(
        &mut self,
        origin: &str,
        position: i64,
        tables: &BTreeMap<Table, Vec<RecordBatch>>,
    ) -> Result<WindowProgress, EngineError> {
        self.feed_many(&[(origin, position, tables)])
    }

    /// Feeds several durable micro-batches (each of its own origin, ending at its position) as
    /// one: one aggregation and one checkpoint for all, which is what a Kafka flush of many
    /// partitions needs. Batches their origin has already been fed are skipped.
    pub fn feed_many(&mut self, batches: &[MicroBatch<'_>]) -> Result<WindowProgress, EngineError> {
        let fresh: Vec<_> = batches
            .iter()
            .filter(|(origin, position, _)| self.position(origin).is_none_or(|fed| *position > fed))
            .collect();
        if fresh.is_empty() {
            return Ok(WindowProgress {
                skipped: true,
                ..WindowProgress::default()
            });
        }
        let mut tables: BTreeMap<Table, Vec<RecordBatch>> = BTreeMap::new();
        for (_, _, batch_tables) in &fresh {
            for (table, batches) in batch_tables.iter() {
                tables
                    .entry(*table)
                    .or_default()
                    .extend(batches.iter().cloned());
            }
        }
        let tables = &tables;
        // WINDOW_INPUTS, all the windows read.
        let requests = gather(tables, Table::ApiRequests)?;
        let tools = gather(tables, Table::ToolCalls)?;
        let mut progress = WindowProgress::default();
        let mut emitted = Vec::new();
        let mut late_rows = Vec::new();
        let closed_through = self.state.closed_through_nanos;
        let (requests, late_requests) = split_late(&requests, closed_through)?;
        let (tools, late_tools) = split_late(&tools, closed_through)?;
        for batch in [&requests, &late_requests, &tools, &late_tools] {
            if let Some(max) = max_time(batch)? {
                self.state.max_event_nanos =
                    Some(self.state.max_event_nanos.map_or(max, |m| m.max(max)));
            }
        }
        if requests.num_rows() + tools.num_rows() > 0 {
            let open = std::mem::take(&mut self.open);
            let (sql, width) = (&self.sql, self.spec.width_seconds);
            self.open = self.run(async move {
                let mut all = open;
                all.extend(sql.partials(vec![requests], vec![tools]).await?);
                sql.merge_windows(all, width).await
            })?;
        }
        if late_requests.num_rows() + late_tools.num_rows() > 0 {
            let closed = closed_through.unwrap_or(i64::MIN);
            late_rows.push(late_events(
                &late_requests,
                self.spec.width_nanos(),
                "api_requests",
                closed,
                &self.replica,
            )?);
            late_rows.push(late_events(
                &late_tools,
                self.spec.width_nanos(),
                "tool_calls",
                closed,
                &self.replica,
            )?);
            progress.late_events = late_requests.num_rows() + late_tools.num_rows();
            let corrections = self.run(
                self.sql
                    .aggregate(vec![late_requests.clone()], vec![late_tools.clone()]),
            )?;
            for batch in corrections {
                let batch = self.with_revisions(&batch)?;
                progress.corrections += batch.num_rows();
                emitted.push(batch);
            }
        }
        if let Some(max) = self.state.max_event_nanos {
            let watermark =
                max.saturating_sub(self.spec.allowed_lateness_seconds as i64 * NANOS_PER_SECOND);
            let through = watermark.div_euclid(self.spec.width_nanos()) * self.spec.width_nanos();
            if self.state.closed_through_nanos.is_none_or(|c| through > c) {
                self.state.closed_through_nanos = Some(through);
            }
        }
        progress.closed = self.close_through(&mut emitted)?;
        for (origin, position, _) in &fresh {
            self.state.positions.insert(origin.to_string(), *position);
        }
        self.state.late_events += progress.late_events as u64;
        self.checkpoint(emitted, late_rows)?;
        Ok(progress)
    }

    /// Closes every open window, as at the end of a backfill: what arrives for them later is a
    /// correction.
    pub fn close_all(&mut self) -> Result<usize, EngineError> {
        let last_end = self
            .open
            .iter()
            .filter_map(|b| max_time_of(b, "window_end").transpose())
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .max();
        if let Some(end) = last_end {
            self.state.closed_through_nanos =
                Some(self.state.closed_through_nanos.map_or(end, |c| c.max(end)));
        }
        let mut emitted = Vec::new();
        let closed = self.close_through(&mut emitted)?;
        if closed > 0 {
            self.checkpoint(emitted, Vec::new())?;
        }
        Ok(closed)
    }

    /// Moves the open windows ending at or before `closed_through` into `emitted`.
    fn close_through(&mut self, emitted: &mut Vec<RecordBatch>) -> Result<usize, EngineError> {
        let Some(through) = self.state.closed_through_nanos else {
            return Ok(0);
        };
        let mut closed = 0;
        let mut still_open = Vec::new();
        for batch in std::mem::take(&mut self.open) {
            let ends = timestamps(&batch, "window_end")?;
            let done: BooleanArray = ends
                .iter()
                .map(|e| Some(e.is_some_and(|e| e <= through)))
                .collect();
            let finished = filter_record_batch(&batch, &done)?;
            let pending = filter_record_batch(&batch, &datafusion::arrow::compute::not(&done)?)?;
            if finished.num_rows() > 0 {
                closed += finished.num_rows();
                emitted.push(self.labelled(&finished, None)?);
            }
            if pending.num_rows() > 0 {
                still_open.push(pending);
            }
        }
        self.open = still_open;
        self.state.windows_closed += closed as u64;
        Ok(closed)
    }

    /// `batch` with this replica and the next revision of each row's window.
    fn with_revisions(&mut self, batch: &RecordBatch) -> Result<RecordBatch, EngineError> {
        let starts = timestamps(batch, "window_start")?;
        let dimensions = WINDOW_DIMENSIONS
            .iter()
            .map(|d| {
                batch
                    .column_by_name(d)
                    .and_then(|c| c.as_string_opt::<i32>().cloned())
                    .ok_or_else(|| EngineError::Schema(format!("usage_windows.{d} is not text")))
            })
            .collect::<Result<Vec<StringArray>, _>>()?;
        let mut revisions = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let mut key = starts.value(row).to_string();
            for column in &dimensions {
                key.push('\u{1f}');
                if column.is_valid(row) {
                    key.push_str(column.value(row));
                }
            }
            let revision = self.state.revisions.entry(key).or_default();
            *revision += 1;
            revisions.push(*revision);
        }
        self.labelled(batch, Some(UInt32Array::from(revisions)))
    }

    /// `batch` with `replica` set and `revisions` (0 when `None`).
    fn labelled(
        &self,
        batch: &RecordBatch,
        revisions: Option<UInt32Array>,
    ) -> Result<RecordBatch, EngineError> {
        let schema = batch.schema();
        let rows = batch.num_rows();
        let mut columns = batch.columns().to_vec();
        let index = |name: &str| {
            schema
                .index_of(name)
                .map_err(|_| EngineError::Schema(format!("usage_windows has no {name}")))
        };
        columns[index("replica")?] = Arc::new(StringArray::from(vec![self.replica.as_str(); rows]));
        columns[index("revision")?] =
            Arc::new(revisions.unwrap_or_else(|| UInt32Array::from(vec![0; rows])));
        Ok(RecordBatch::try_new(schema, columns)?)
    }

    /// Writes this step's output files, then the checkpoint that makes them count.
    fn checkpoint(
        &mut self,
        emitted: Vec<RecordBatch>,
        late: Vec<RecordBatch>,
    ) -> Result<(), EngineError> {
        self.state.seq += 1;
        let mut tables = BTreeMap::new();
        for batch in &emitted {
            self.state.totals.add_windows(batch)?;
        }
        if let Some(through) = self.state.closed_through_nanos {
            let events =
                self.detector
                    .observe_and_evaluate(&emitted, &mut self.state.anomalies, through)?;
            if !events.is_empty() {
                tables.insert(
                    Table::Anomalies,
                    vec![anomaly_batch(&events, &self.replica)?],
                );
            }
        }
        if !emitted.is_empty() {
            tables.insert(Table::UsageWindows, emitted);
        }
        if late.iter().any(|b| b.num_rows() > 0) {
            tables.insert(Table::LateEvents, late);
        }
        let wrote = !tables.is_empty();
        if wrote {
            let name = format!(
                "{WINDOW_SEGMENT_PREFIX}{}-{:012}",
                self.replica, self.state.seq
            );
            self.sink.write_segment(&name, &tables)?;
        }
        write_checkpoint(&self.state_path, &self.state, &self.open)?;
        if wrote && let Some(output) = &mut self.output {
            output.closed(&self.state);
        }
        Ok(())
    }

    /// Runs window SQL on a runtime and thread of its own: the caller may be inside another
    /// runtime (the Kafka loop), where blocking on one is not allowed, or in none (the
    /// receiver's writer). Both cost tens of microseconds, once per micro-batch.
    fn run<T: Send>(
        &self,
        work: impl std::future::Future<Output = Result<T, EngineError>> + Send,
    ) -> Result<T, EngineError> {
        if tokio::runtime::Handle::try_current().is_err() {
            let runtime = match self.runtime.get() {
                Some(runtime) => runtime,
                None => {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .map_err(EngineError::Output)?;
                    self.runtime.get_or_init(|| runtime)
                }
            };
            return runtime.block_on(work);
        }
        // Inside a runtime (the files source's task), a runtime of its own needs a thread of
        // its own.
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .build()
                        .map_err(EngineError::Output)?
                        .block_on(work)
                })
                .join()
                .unwrap_or_else(|_| Err(EngineError::Schema("window SQL panicked".into())))
        })
    }
}

/// Takes the replica's lock file under `state_dir`, or says who has it. The operating system
/// drops the lock when the process ends, however it ends.
fn hold_replica(state_dir: &Path, replica: &str) -> Result<File, EngineError> {
    fs::create_dir_all(state_dir).map_err(|e| EngineError::io(state_dir, e))?;
    let path = state_dir.join(format!("{replica}.lock"));
    let file = File::create(&path).map_err(|e| EngineError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(EngineError::Config(format!(
            "replica {replica:?} is already running on this dataset ({} is locked): give each process its own --replica",
            path.display()
        ))),
        Err(fs::TryLockError::Error(e)) => Err(EngineError::io(&path, e)),
    }
}

fn gather(
    tables: &BTreeMap<Table, Vec<RecordBatch>>,
    table: Table,
) -> Result<RecordBatch, EngineError> {
    let batches = tables.get(&table).map(Vec::as_slice).unwrap_or_default();
    Ok(concat_batches(&table.schema(), batches)?)
}

/// The column `name` of a window-stage batch as primitive type `T`, or a schema error.
pub(crate) fn primitive<'a, T: ArrowPrimitiveType>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a PrimitiveArray<T>, EngineError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<T>())
        .ok_or_else(|| EngineError::Schema(format!("{name} is not {}", T::DATA_TYPE)))
}

fn timestamps<'a>(
    batch: &'a RecordBatch,
    column: &str,
) -> Result<&'a TimestampNanosecondArray, EngineError> {
    primitive::<TimestampNanosecondType>(batch, column)
}

fn max_time(batch: &RecordBatch) -> Result<Option<i64>, EngineError> {
    max_time_of(batch, "time")
}

fn max_time_of(batch: &RecordBatch, column: &str) -> Result<Option<i64>, EngineError> {
    Ok(timestamps(batch, column)?.iter().flatten().max())
}

/// (rows on time, rows whose window closed before `closed_through`). Rows with no time are
/// left on time; the window SQL skips them.
fn split_late(
    batch: &RecordBatch,
    closed_through: Option<i64>,
) -> Result<(RecordBatch, RecordBatch), EngineError> {
    let Some(through) = closed_through else {
        return Ok((batch.clone(), batch.slice(0, 0)));
    };
    let times = timestamps(batch, "time")?;
    let late: BooleanArray = times
        .iter()
        .map(|t| Some(t.is_some_and(|t| t < through)))
        .collect();
    let on_time = filter_record_batch(batch, &datafusion::arrow::compute::not(&late)?)?;
    Ok((on_time, filter_record_batch(batch, &late)?))
}

fn late_events(
    batch: &RecordBatch,
    width: i64,
    table: &str,
    closed_through: i64,
    replica: &str,
) -> Result<RecordBatch, EngineError> {
    let rows = batch.num_rows();
    let schema = Table::LateEvents.schema();
    let times = timestamps(batch, "time")?;
    let starts: TimestampNanosecondArray = times
        .iter()
        .map(|t| t.map(|t| t.div_euclid(width) * width))
        .collect();
    let text = |name: &str| -> ArrayRef {
        batch
            .column_by_name(name)
            .cloned()
            .unwrap_or_else(|| Arc::new(StringArray::new_null(rows)))
    };
    let cost: ArrayRef = batch
        .column_by_name("cost_usd")
        .cloned()
        .unwrap_or_else(|| Arc::new(datafusion::arrow::array::Float64Array::new_null(rows)));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(times.clone()),
        Arc::new(starts.with_timezone("UTC")),
        Arc::new(StringArray::from(vec![table; rows])),
        text("session_id"),
        text("user_id"),
        text("model"),
        cost,
        Arc::new(TimestampNanosecondArray::from(vec![closed_through; rows]).with_timezone("UTC")),
        Arc::new(StringArray::from(vec![replica; rows])),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// For each replica with a window checkpoint under `data_dir`, the sequence number of its last
/// checkpoint: its output files up to that one are committed, later ones are removed at its
/// next start. Only the checkpoints' metadata is read.
pub(crate) fn checkpointed_seqs(data_dir: &Path) -> Result<BTreeMap<String, u64>, EngineError> {
    let dir = data_dir.join(STATE_DIR).join("windows");
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(EngineError::io(&dir, e)),
    };
    let mut seqs = BTreeMap::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(replica) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".parquet"))
        else {
            continue;
        };
        let file = File::open(&path).map_err(|e| EngineError::io(&path, e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
        seqs.insert(replica.to_string(), window_state(&builder, &path)?.seq);
    }
    Ok(seqs)
}

fn window_state<T>(
    builder: &datafusion::parquet::arrow::arrow_reader::ArrowReaderBuilder<T>,
    path: &Path,
) -> Result<WindowState, EngineError> {
    let state = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == STATE_KEY))
        .and_then(|kv| kv.value.clone())
        .ok_or_else(|| EngineError::Schema(format!("{}: no window state", path.display())))?;
    serde_json::from_str(&state)
        .map_err(|e| EngineError::Schema(format!("{}: {e}", path.display())))
}

fn read_checkpoint(path: &Path) -> Result<(WindowState, Vec<RecordBatch>), EngineError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(EngineError::io(path, e)),
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let state = window_state(&builder, path)?;
    let open = builder
        .build()?
        .collect::<Result<Vec<_>, _>>()?
        .iter()
        .map(|b| evolve(b, &Table::UsageWindows.schema()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((state, open))
}

fn write_checkpoint(
    path: &Path,
    state: &WindowState,
    open: &[RecordBatch],
) -> Result<(), EngineError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| EngineError::io(path, e))?;
    let json = serde_json::to_string(state).map_err(|e| EngineError::Schema(e.to_string()))?;
    let properties = WriterProperties::builder()
        .set_key_value_metadata(Some(vec![KeyValue::new(STATE_KEY.to_string(), json)]))
        .build();
    write_atomically(path, Table::UsageWindows.schema(), open, properties)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_from_before_the_ttft_sketch_and_the_new_dimensions_loads() {
        let schema = Table::UsageWindows.schema();
        let added = [
            "query_source",
            "speed",
            "effort",
            "ttft_p50_ms",
            "ttft_p95_ms",
            "ttft_sum_ms",
            "ttft_sketch",
        ];
        let kept: Vec<usize> = (0..schema.fields().len())
            .filter(|&i| !added.contains(&schema.field(i).name().as_str()))
            .collect();
        // One closed window's row: its times and revision, everything else NULL.
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|field| -> ArrayRef {
                match field.name().as_str() {
                    "window_start" | "window_end" => {
                        Arc::new(TimestampNanosecondArray::from(vec![0]).with_timezone("UTC"))
                    }
                    "revision" => Arc::new(UInt32Array::from(vec![0])),
                    _ => new_null_array(field.data_type(), 1),
                }
            })
            .collect();
        let full = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let old = full.project(&kept).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.parquet");
        let state = WindowState {
            seq: 3,
            ..WindowState::default()
        };
        let json = serde_json::to_string(&state).unwrap();
        let properties = WriterProperties::builder()
            .set_key_value_metadata(Some(vec![KeyValue::new(STATE_KEY.to_string(), json)]))
            .build();
        write_atomically(&path, old.schema(), &[old], properties).unwrap();
        let (loaded, open) = read_checkpoint(&path).unwrap();
        assert_eq!(loaded.seq, 3);
        assert_eq!(open.iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
        assert!(open.iter().all(|b| b.schema() == schema));
        let ttft = open[0].column_by_name("ttft_sketch").unwrap();
        assert_eq!(ttft.null_count(), 1);
        // And a checkpoint that lacks a column that may not be NULL is refused, not guessed.
        let required: Vec<usize> = (1..schema.fields().len()).collect();
        let broken = full.project(&required).unwrap();
        let path = dir.path().join("broken.parquet");
        let properties = WriterProperties::builder()
            .set_key_value_metadata(Some(vec![KeyValue::new(
                STATE_KEY.to_string(),
                serde_json::to_string(&WindowState::default()).unwrap(),
            )]))
            .build();
        write_atomically(&path, broken.schema(), &[broken], properties).unwrap();
        assert!(read_checkpoint(&path).is_err());
    }
}
