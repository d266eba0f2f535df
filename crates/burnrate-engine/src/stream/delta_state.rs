//! The cumulative-to-delta state of a running source: a [`DeltaTracker`] rebuilt from the
//! written `metric_points` table after a restart and kept to the series seen within
//! `cumulative_staleness_seconds` of event time (an hour by default; 0 keeps every series), a
//! forgotten series read back from that table when it comes back, so every point converts
//! exactly as with the whole history in memory.
//!
//! A series is forgotten only once its last point is written: a source numbers what it hands
//! on to be written ([`DeltaState::seal`]) and its writer marks that generation written
//! ([`SealedPoints::written`]). A point of a series not held is looked up only when it starts
//! before the newest forgotten point and its series is in the filters of forgotten series
//! (kept for a week of event time), or it starts before what those remember (as after a
//! restart); every other one is new, or a reset of what was forgotten, so a backlog of new
//! sessions, and the new series of a long one, read nothing back. (Such a point, when it is a
//! reset of a forgotten series, converts the same but counts as a new series, not a reset.)
//!
//! A source whose clients send as they go (the receiver, and Kafka once it has caught up with
//! its partitions' ends) also holds every series sent within the staleness of this machine's
//! clock ([`DeltaState::holding_arrivals_within`]): one origin's event time is every client's,
//! and a client whose clock runs hours behind the others would otherwise have each of its live
//! series forgotten at every flush and read back at its next export. A backlog arrives all at
//! once, and holding what arrived within the hour would hold all of it: what a source seals as
//! a backlog ([`DeltaState::seal_backlog`]: Kafka behind its ends; the files source holds no
//! arrivals) is held by event time alone.
//!
//! Must not know: which source feeds it, how rows are buffered or written.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use burnrate_otlp::{DeltaStats, DeltaTracker, SERIES_ID_MASK};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Float64Type, TimestampNanosecondType, UInt64Type};
use datafusion::prelude::{SessionContext, col, lit};
use datafusion::scalar::ScalarValue;
use futures::StreamExt;

use crate::EngineError;
use crate::publish::health::PipelineHealth;
use crate::query::catalog::open_dataset;

/// How long (event time) a cumulative series may go unseen before its last point leaves
/// memory, in every source's default: an hour, sixty of Claude Code's one-minute exports.
pub const DEFAULT_STALENESS: Duration = Duration::from_secs(3600);

/// How long (event time) the state remembers which series it forgot, in filters of about 2.6
/// bytes a series: a point that starts earlier and belongs to no series held is read back.
const REMEMBERED_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

const NEWEST_CUMULATIVE_POINT: &str = "
    SELECT max(time) FROM metric_points WHERE temporality = 'cumulative' AND kind = 'sum'";

pub struct DeltaState {
    tracker: DeltaTracker,
    /// The dataset forgotten series are read back from; `None` keeps every series.
    output: Option<PathBuf>,
    /// Nanoseconds; 0 keeps every series.
    staleness: i64,
    /// The generation points taken now belong to.
    generation: u32,
    /// The newest generation its writer marked written.
    written: Arc<AtomicU32>,
    /// The number of each origin the source named.
    origins: HashMap<String, u32>,
    /// For a source whose clients send as they go: when recent generations were sealed.
    arrivals: Option<Box<Arrivals>>,
    health: Arc<PipelineHealth>,
}

/// When each recent generation was sealed, so that a series sent within `within` of this
/// machine's clock is held whatever its event time says.
#[derive(Debug)]
struct Arrivals {
    within: Duration,
    /// (generation, when it was sealed), oldest first; only the first may be older than
    /// `within`.
    sealed: VecDeque<(u32, Instant)>,
    /// The newest generation sealed as a backlog's: it and every one before count as sent
    /// before the window.
    backlog: u32,
}

impl Arrivals {
    fn sealed(&mut self, generation: u32, now: Instant) {
        self.sealed.push_back((generation, now));
        while self
            .sealed
            .get(1)
            .is_some_and(|&(_, at)| now.saturating_duration_since(at) >= self.within)
        {
            self.sealed.pop_front();
        }
    }

    /// A backlog's generation: it arrived all at once, so when says nothing of its clients.
    fn sealed_backlog(&mut self, generation: u32) {
        self.backlog = generation;
        self.sealed.clear();
    }

    /// The newest generation sealed at least `within` ago, or as a backlog's (0 if none): a
    /// series whose last point was taken in it or before was last sent before the window.
    fn sent_before_window(&self, now: Instant) -> u32 {
        let sent_before = match self.sealed.front() {
            Some(&(generation, at)) if now.saturating_duration_since(at) >= self.within => {
                generation
            }
            _ => 0,
        };
        sent_before.max(self.backlog)
    }
}

/// The points a source hands on to be written, as one generation of the state.
#[derive(Debug)]
pub struct SealedPoints {
    generation: u32,
    written: Arc<AtomicU32>,
}

impl SealedPoints {
    /// Its points are in `metric_points` now: the state may forget their series.
    pub fn written(&self) {
        self.written.fetch_max(self.generation, Ordering::Release);
    }
}

impl DeltaState {
    /// The state for the dataset under `output`: the last point of every cumulative series
    /// seen within `staleness` of the newest stored one (all of them when `staleness` is zero).
    pub async fn open(
        output: &Path,
        staleness: Duration,
        health: Arc<PipelineHealth>,
    ) -> Result<Self, EngineError> {
        let staleness = i64::try_from(staleness.as_nanos()).unwrap_or(i64::MAX);
        let mut tracker = DeltaTracker::new();
        if output.join("metric_points").is_dir() {
            let ctx = open_dataset(output).await?;
            let since = if staleness > 0 {
                newest_cumulative_point(&ctx)
                    .await?
                    .map(|newest| newest.saturating_sub(staleness))
            } else {
                None
            };
            if let Some(since) = since {
                tracker = DeltaTracker::forgetting_before(since);
            }
            observe_last_points(&ctx, since, None, &mut tracker).await?;
        }
        health.set_delta_series(tracker.len());
        let mut state = DeltaState {
            tracker,
            output: Some(output.to_path_buf()),
            staleness,
            generation: 1,
            written: Arc::default(),
            origins: HashMap::new(),
            arrivals: None,
            health,
        };
        state.tracker.set_generation(state.generation);
        Ok(state)
    }

    /// Also holds every series sent within `within` of this machine's clock, whatever its
    /// event time: for a source whose clients send as they go (the receiver), not a backlog.
    pub fn holding_arrivals_within(mut self, within: Duration) -> Self {
        self.arrivals = Some(Box::new(Arrivals {
            within,
            sealed: VecDeque::new(),
            backlog: 0,
        }));
        self
    }

    /// A state with no dataset behind it, which keeps every series: for a buffer's tests.
    pub fn in_memory() -> Self {
        DeltaState {
            tracker: DeltaTracker::new(),
            output: None,
            staleness: 0,
            generation: 1,
            written: Arc::default(),
            origins: HashMap::new(),
            arrivals: None,
            health: PipelineHealth::new(),
        }
    }

    /// The number of the origin `name` (a Kafka partition, say): each origin's series are
    /// forgotten by its own event time.
    pub fn origin(&mut self, name: &str) -> u32 {
        if let Some(&origin) = self.origins.get(name) {
            return origin;
        }
        let origin = u32::try_from(self.origins.len()).unwrap_or(u32::MAX - 1);
        self.origins.insert(name.to_string(), origin);
        origin
    }

    /// Converts the cumulative rows of a `usage_metrics` batch from `origin` and drops stale
    /// ones, first reading back the last point of any forgotten series among them.
    pub fn convert(
        &mut self,
        batch: &RecordBatch,
        origin: u32,
    ) -> Result<(RecordBatch, DeltaStats), EngineError> {
        let unknown = self.tracker.unknown(batch)?;
        if let (false, Some(output)) = (unknown.is_empty(), &self.output) {
            // None of them is held: the series held now that were not are the ones found.
            let held = self.tracker.len();
            read_back(output, &unknown, &mut self.tracker)?;
            tracing::debug!(
                wanted = unknown.len(),
                found = self.tracker.len() - held,
                "forgotten cumulative series read back"
            );
            self.health.delta_read_back(unknown.len());
        }
        let converted = self.tracker.apply(batch, origin)?;
        self.health.set_delta_series(self.tracker.len());
        Ok(converted)
    }

    /// Closes the generation of the points taken so far, for the writer to mark once they
    /// are written, and forgets the series unseen for the staleness whose points are written.
    pub fn seal(&mut self) -> SealedPoints {
        self.seal_at(Instant::now(), false)
    }

    /// [`Self::seal`] for points taken from a backlog (a Kafka consumer behind its partitions'
    /// ends): they arrived all at once, so only their event time holds their series, and what
    /// arrivals held before is let go by event time too.
    pub fn seal_backlog(&mut self) -> SealedPoints {
        self.seal_at(Instant::now(), true)
    }

    /// [`Self::seal`] at `now` on the monotonic clock (a test's own).
    fn seal_at(&mut self, now: Instant, backlog: bool) -> SealedPoints {
        let sealed = SealedPoints {
            generation: self.generation,
            written: self.written.clone(),
        };
        match &mut self.arrivals {
            Some(arrivals) if backlog => arrivals.sealed_backlog(self.generation),
            Some(arrivals) => arrivals.sealed(self.generation, now),
            None => {}
        }
        self.forget_stale(now);
        self.generation += 1;
        self.tracker.set_generation(self.generation);
        sealed
    }

    fn forget_stale(&mut self, now: Instant) {
        if self.staleness == 0 || self.output.is_none() {
            return;
        }
        let Some(newest) = self.tracker.newest() else {
            return;
        };
        // Event time ahead of this machine's clock does not move the horizon: a client whose
        // clock runs fast must not make the state forget every live series.
        let clock = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|now| i64::try_from(now.as_nanos()).ok())
            .unwrap_or(i64::MAX);
        // Only points written may go, and with arrivals held, only those sent before the
        // window.
        let mut forgettable = self.written.load(Ordering::Acquire);
        if let Some(arrivals) = &self.arrivals {
            forgettable = forgettable.min(arrivals.sent_before_window(now));
        }
        // A look over every series at each flush, a few hundred flushes a million messages.
        let forgotten = self.tracker.forget(self.staleness, clock, forgettable);
        let remembered = i64::try_from(REMEMBERED_FOR.as_nanos()).unwrap_or(i64::MAX);
        self.tracker.forget_remembered(
            newest
                .min(clock)
                .saturating_sub(self.staleness)
                .saturating_sub(remembered),
        );
        if forgotten > 0 {
            self.health.delta_forgotten(forgotten);
            self.health.set_delta_series(self.tracker.len());
        }
    }
}

/// Observes the last stored points of the series `wanted` (id, earliest start time wanted),
/// from a query of its own: the caller is a source's thread, inside or outside the runtime.
fn read_back(
    output: &Path,
    wanted: &[(u64, i64)],
    tracker: &mut DeltaTracker,
) -> Result<(), EngineError> {
    if !output.join("metric_points").is_dir() {
        return Ok(());
    }
    // A point of the same start is no older than it, and one of an older start is a reset
    // either way: nothing before the earliest start wanted matters.
    let since = wanted.iter().map(|&(_, start)| start).min();
    let ids: Vec<u64> = wanted.iter().map(|&(id, _)| id).collect();
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| EngineError::io(output, e))?;
                runtime.block_on(async {
                    let ctx = open_dataset(output).await?;
                    observe_last_points(&ctx, since, Some(&ids), tracker).await
                })
            })
            .join()
            .map_err(|_| {
                EngineError::Config("reading back forgotten cumulative series panicked".into())
            })?
    })
}

/// The newest cumulative point's time, if the table holds one.
async fn newest_cumulative_point(ctx: &SessionContext) -> Result<Option<i64>, EngineError> {
    let batches = ctx.sql(NEWEST_CUMULATIVE_POINT).await?.collect().await?;
    Ok(batches.iter().find_map(|batch| {
        let time = batch.column(0).as_primitive::<TimestampNanosecondType>();
        (batch.num_rows() > 0 && time.is_valid(0)).then(|| time.value(0))
    }))
}

/// Shows `tracker` the cumulative points stored at or after `since`, of the series `ids` only
/// if given, as they stream by: it keeps each series' last.
async fn observe_last_points(
    ctx: &SessionContext,
    since: Option<i64>,
    ids: Option<&[u64]>,
    tracker: &mut DeltaTracker,
) -> Result<(), EngineError> {
    let mut wanted = ctx.table("metric_points").await?.filter(
        col("temporality")
            .eq(lit("cumulative"))
            .and(col("kind").eq(lit("sum")))
            .and(col("value").is_not_null())
            .and(col("time").is_not_null()),
    )?;
    if let Some(since) = since {
        let since = ScalarValue::TimestampNanosecond(Some(since), Some("UTC".into()));
        wanted = wanted.filter(col("time").gt_eq(lit(since)))?;
    }
    if let Some(ids) = ids {
        // A series stored before ids had 63 bits has its top bit set on disk.
        let list = ids
            .iter()
            .flat_map(|&id| [lit(id), lit(id | !SERIES_ID_MASK)])
            .collect();
        wanted = wanted.filter(col("series_id").in_list(list, false))?;
    }
    let mut stream = wanted
        .select_columns(&["series_id", "start_time", "time", "value"])?
        .execute_stream()
        .await?;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let series = batch.column(0).as_primitive::<UInt64Type>();
        let start = batch.column(1).as_primitive::<TimestampNanosecondType>();
        let time = batch.column(2).as_primitive::<TimestampNanosecondType>();
        let value = batch.column(3).as_primitive::<Float64Type>();
        for i in 0..batch.num_rows() {
            let start_time = if start.is_valid(i) { start.value(i) } else { 0 };
            // A series stored before ids had 63 bits is the same series now.
            let series_id = series.value(i) & SERIES_ID_MASK;
            tracker.observe(series_id, start_time, time.value(i), value.value(i));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use burnrate_otlp::Table;
    use datafusion::arrow::array::{
        ArrayRef, Float64Array, RecordBatch, StringArray, TimestampNanosecondArray, UInt64Array,
        new_null_array,
    };
    use datafusion::arrow::datatypes::SchemaRef;

    use super::*;
    use crate::sink::parquet_sink::write_atomically;
    use crate::sink::stored_types::{stored_schema, to_stored};

    const START: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z
    const SECOND: i64 = 1_000_000_000;
    /// A series whose id has the top bit set, as burnrate stored it before ids had 63 bits.
    const OLD_ID: u64 = 18_397_761_719_065_401_570;

    /// One cumulative sum point started at `START`, every other column null.
    fn point(schema: &SchemaRef, series_id: u64, time: i64, value: f64) -> RecordBatch {
        started(schema, series_id, START, time, value)
    }

    /// One cumulative sum point, every other column null.
    fn started(
        schema: &SchemaRef,
        series_id: u64,
        start: i64,
        time: i64,
        value: f64,
    ) -> RecordBatch {
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|field| -> ArrayRef {
                match field.name().as_str() {
                    "time" => {
                        Arc::new(TimestampNanosecondArray::from(vec![time]).with_timezone("UTC"))
                    }
                    "start_time" => {
                        Arc::new(TimestampNanosecondArray::from(vec![start]).with_timezone("UTC"))
                    }
                    "kind" => Arc::new(StringArray::from(vec!["sum"])),
                    "temporality" => Arc::new(StringArray::from(vec!["cumulative"])),
                    "value" => Arc::new(Float64Array::from(vec![value])),
                    "series_id" => Arc::new(UInt64Array::from(vec![series_id])),
                    _ => new_null_array(field.data_type(), 1),
                }
            })
            .collect();
        RecordBatch::try_new(schema.clone(), columns).unwrap()
    }

    /// A table holding a file an older burnrate wrote (nanoseconds, the id's top bit set) and
    /// one this version wrote (microseconds, signed): burnrate reads both in its own types, and
    /// the series goes on converting where it stopped instead of starting over.
    #[tokio::test]
    async fn a_series_stored_before_ids_had_63_bits_goes_on_after_the_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let day = dir.path().join("metric_points").join("date=2026-01-01");
        std::fs::create_dir_all(&day).unwrap();
        let schema = Table::MetricPoints.schema();
        let old = point(&schema, OLD_ID, START + SECOND, 10.0);
        write_atomically(
            &day.join("old.parquet"),
            schema.clone(),
            &[old],
            Default::default(),
        )
        .unwrap();
        let other = to_stored(&point(&schema, 42, START + SECOND, 3.0)).unwrap();
        write_atomically(
            &day.join("new.parquet"),
            stored_schema(&schema),
            &[other],
            Default::default(),
        )
        .unwrap();

        let ctx = open_dataset(dir.path()).await.unwrap();
        let sql = "SELECT series_id, time FROM metric_points ORDER BY value";
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let ids = batches[0].column(0).as_primitive::<UInt64Type>();
        let times = batches[0]
            .column(1)
            .as_primitive::<TimestampNanosecondType>();
        assert_eq!(ids.values().to_vec(), vec![42, OLD_ID]);
        assert_eq!(times.values().to_vec(), vec![START + SECOND; 2]);

        // The decoder names the same series OLD_ID with its top bit cleared.
        let mut state =
            DeltaState::open(dir.path(), Duration::from_secs(3600), PipelineHealth::new())
                .await
                .unwrap();
        let next = point(&schema, OLD_ID & SERIES_ID_MASK, START + 2 * SECOND, 15.0);
        let (converted, _) = state.convert(&next, 0).unwrap();
        let value = converted.column_by_name("value").unwrap();
        assert_eq!(value.as_primitive::<Float64Type>().value(0), 5.0);
    }

    /// The value of a counter in the health metrics' text.
    fn counter(health: &PipelineHealth, name: &str) -> u64 {
        let text = health.render();
        let line = text
            .lines()
            .find(|line| line.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {text}"));
        line[name.len() + 1..].parse().unwrap()
    }

    /// The batches taken since the last flush, handed on at each flush and written to
    /// `metric_points` as one file at the next, as a source's writer does on a thread of its
    /// own: then their generation is marked written.
    struct Flushes {
        day: std::path::PathBuf,
        unwritten: Vec<RecordBatch>,
        /// The flush handed on and not written yet.
        writing: Option<(SealedPoints, Vec<RecordBatch>)>,
        files: usize,
        /// When set, each flush seals at this instant and moves it ten seconds on (the
        /// receiver's flush interval) instead of reading the clock.
        clock: Option<Instant>,
        /// Each flush seals a backlog's points, as a Kafka source behind its partitions' ends.
        backlog: bool,
    }

    impl Flushes {
        fn new(data: &Path) -> Self {
            let day = data.join("metric_points").join("date=2026-01-01");
            std::fs::create_dir_all(&day).unwrap();
            Flushes {
                day,
                unwritten: Vec::new(),
                writing: None,
                files: 0,
                clock: None,
                backlog: false,
            }
        }

        fn flush(&mut self, state: &mut DeltaState) {
            let now = match &mut self.clock {
                Some(now) => std::mem::replace(now, *now + Duration::from_secs(10)),
                None => Instant::now(),
            };
            let sealed = state.seal_at(now, self.backlog);
            let handed = (sealed, std::mem::take(&mut self.unwritten));
            if let Some((sealed, batches)) = self.writing.replace(handed) {
                self.write(sealed, &batches);
            }
        }

        /// Every flush written, as before a restart.
        fn drain(&mut self, state: &mut DeltaState) {
            self.flush(state);
            if let Some((sealed, batches)) = self.writing.take() {
                self.write(sealed, &batches);
            }
        }

        fn write(&mut self, sealed: SealedPoints, batches: &[RecordBatch]) {
            let schema = Table::MetricPoints.schema();
            let batch = datafusion::arrow::compute::concat_batches(&schema, batches).unwrap();
            self.files += 1;
            write_atomically(
                &self.day.join(format!("{:04}.parquet", self.files)),
                stored_schema(&schema),
                &[to_stored(&batch).unwrap()],
                Default::default(),
            )
            .unwrap();
            sealed.written();
        }
    }

    /// A stream of cumulative points over six series of one session, three of them quiet for
    /// hours at a time, and three more appearing hours into it, with resets of both kinds and
    /// late replays, through a state that forgets (and restarts halfway, from what is written)
    /// and through a tracker that keeps everything: every point converts the same, and
    /// forgotten series were read back.
    #[tokio::test]
    async fn a_state_that_forgets_converts_every_point_as_one_that_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Table::MetricPoints.schema();
        let health = PipelineHealth::new();
        let staleness = Duration::from_secs(3600);
        let mut state = DeltaState::open(dir.path(), staleness, health.clone())
            .await
            .unwrap();
        let mut whole = DeltaTracker::new();
        let mut flushes = Flushes::new(dir.path());
        let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |below: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % below
        };
        // (start, value, last time) of each series.
        let mut series = [(START, 0.0, START); 9];
        let mut clock = START;
        let mut converted = 0;
        let mut resets_unseen = 0;
        let mut revisit: Vec<usize> = Vec::new();
        let mut restarted = false;
        for step in 0..800 {
            clock += next(600) as i64 * SECOND;
            // Series 3 to 5 report a quarter as often: about every two hours; 6 to 8 only from
            // step 200 on. Right after the restart, each series reports once, the quiet ones
            // from before the state's horizon.
            let id = match revisit.pop() {
                Some(id) => id,
                None => match next(9) as usize {
                    id if (3..6).contains(&id) && next(4) != 0 => continue,
                    id if id >= 6 && step < 200 => continue,
                    id => id,
                },
            };
            let (start, value, last) = &mut series[id];
            let time = match next(20) {
                0 => {
                    *start = clock - SECOND;
                    *value = next(3) as f64;
                    clock
                }
                1 => {
                    *value = (*value / 2.0).floor();
                    clock
                }
                // A replay of an older point, stale for both.
                2 => *last - SECOND,
                _ => {
                    *value += next(5) as f64;
                    clock
                }
            };
            *last = (*last).max(time);
            let batch = started(&schema, id as u64 + 1, *start, time, *value);
            let (forgetting, forgetting_stats) = state.convert(&batch, 0).unwrap();
            let (keeping, keeping_stats) = whole.apply(&batch, 0).unwrap();
            assert_eq!(forgetting, keeping, "step {step}");
            // A reset of a forgotten series is counted as a new series: the same delta.
            assert_eq!(
                (forgetting_stats.converted, forgetting_stats.stale),
                (keeping_stats.converted, keeping_stats.stale),
                "step {step}"
            );
            assert!(forgetting_stats.resets <= keeping_stats.resets);
            resets_unseen += keeping_stats.resets - forgetting_stats.resets;
            converted += keeping_stats.converted;
            flushes.unwritten.push(batch);
            // Mostly every few steps; now and then a flush that holds hours.
            if next(6) == 0 {
                flushes.flush(&mut state);
            }
            if step >= 400 && !restarted {
                restarted = true;
                flushes.drain(&mut state);
                state = DeltaState::open(dir.path(), staleness, health.clone())
                    .await
                    .unwrap();
                revisit = (0..9).collect();
            }
        }
        assert!(converted > 150, "{converted} points converted");
        assert!(
            resets_unseen < 5,
            "{resets_unseen} resets counted as new series"
        );
        assert!(counter(&health, "burnrate_delta_forgotten_total") > 10);
        assert!(counter(&health, "burnrate_delta_read_back_total") > 10);
    }

    /// A state over an empty dataset that forgets series unseen for a minute, its health, and
    /// the flushes that write what it takes.
    async fn a_minute_of_staleness(dir: &Path) -> (DeltaState, Arc<PipelineHealth>, Flushes) {
        let health = PipelineHealth::new();
        let state = DeltaState::open(dir, Duration::from_secs(60), health.clone())
            .await
            .unwrap();
        (state, health, Flushes::new(dir))
    }

    /// The new series of a long session (its start hours before the horizon) are not looked
    /// up; a series of it that was forgotten is, once, and goes on where it stopped.
    #[tokio::test]
    async fn only_a_series_that_was_forgotten_is_looked_up() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Table::MetricPoints.schema();
        let (mut state, health, mut flushes) = a_minute_of_staleness(dir.path()).await;
        let mut take = |state: &mut DeltaState, series: u64, time: i64, value: f64| {
            let batch = point(&schema, series, START + time * SECOND, value);
            let (converted, _) = state.convert(&batch, 0).unwrap();
            flushes.unwritten.push(batch);
            flushes.drain(state);
            let value = converted.column_by_name("value").unwrap();
            value.as_primitive::<Float64Type>().value(0)
        };
        assert_eq!(take(&mut state, 1, 10, 4.0), 4.0);
        // Series 2 moves event time on: series 1 is forgotten at the next flush.
        take(&mut state, 2, 7_200, 1.0);
        take(&mut state, 2, 7_300, 2.0);
        assert_eq!(counter(&health, "burnrate_delta_forgotten_total"), 1);
        for new in 3..20 {
            assert_eq!(take(&mut state, new, 7_400, 5.0), 5.0);
        }
        assert_eq!(counter(&health, "burnrate_delta_read_back_total"), 0);
        assert_eq!(take(&mut state, 1, 7_500, 6.5), 2.5);
        assert_eq!(counter(&health, "burnrate_delta_read_back_total"), 1);
    }

    /// A client whose clock runs two hours fast reports beside one whose clock is right,
    /// through the same origin (as through the receiver): the live series stays held.
    #[tokio::test]
    async fn a_client_ahead_of_the_clock_does_not_make_live_series_go() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Table::MetricPoints.schema();
        let health = PipelineHealth::new();
        let mut state = DeltaState::open(dir.path(), Duration::from_secs(3600), health.clone())
            .await
            .unwrap();
        let mut flushes = Flushes::new(dir.path());
        let now = i64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
        )
        .unwrap();
        for (series, time) in [(1, now - 60 * SECOND), (2, now + 2 * 3600 * SECOND)] {
            let batch = started(&schema, series, time - 600 * SECOND, time, 1.0);
            state.convert(&batch, 0).unwrap();
            flushes.unwritten.push(batch);
        }
        flushes.drain(&mut state);
        flushes.drain(&mut state);
        assert_eq!(counter(&health, "burnrate_delta_forgotten_total"), 0);
        assert_eq!(state.tracker.len(), 2);
    }

    /// This machine's clock, to the microsecond as the decoder keeps event times.
    fn clock_now() -> i64 {
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        i64::try_from(since_epoch.as_micros()).unwrap() * 1_000
    }

    /// Two clients export a point of their series every third flush through one origin (as
    /// through the receiver), one (series `right`) with its clock right, one (`behind`) two
    /// hours behind; returns the series held.
    fn two_clocks(
        state: &mut DeltaState,
        flushes: &mut Flushes,
        (right, behind): (u64, u64),
        rounds: i64,
    ) -> usize {
        let schema = Table::MetricPoints.schema();
        let now = clock_now();
        for round in 0..rounds {
            for (series, first) in [(right, now), (behind, now - 2 * 3600 * SECOND)] {
                let time = first + round * 60 * SECOND;
                let batch = started(&schema, series, first - 600 * SECOND, time, round as f64);
                let (converted, _) = state.convert(&batch, 0).unwrap();
                let value = converted.column_by_name("value").unwrap();
                let expected = if round == 0 { 0.0 } else { 1.0 };
                assert_eq!(
                    value.as_primitive::<Float64Type>().value(0),
                    expected,
                    "series {series}, round {round}"
                );
                flushes.unwritten.push(batch);
            }
            // Claude Code exports once a minute, the receiver flushes every ten seconds.
            for _ in 0..3 {
                flushes.flush(state);
            }
        }
        state.tracker.len()
    }

    /// A state of an hour's staleness over `data` that holds what arrived `within`, its
    /// health, and its flushes.
    async fn holding_arrivals(
        data: &Path,
        within: Duration,
    ) -> (DeltaState, Arc<PipelineHealth>, Flushes) {
        let health = PipelineHealth::new();
        let state = DeltaState::open(data, Duration::from_secs(3600), health.clone())
            .await
            .unwrap()
            .holding_arrivals_within(within);
        (state, health, Flushes::new(data))
    }

    /// A client whose clock runs two hours behind another's, through one origin: by event
    /// time its series is stale at every flush, so a state that holds what was just sent
    /// keeps it, where one that goes by event time alone reads it back at every export.
    #[tokio::test]
    async fn a_client_behind_the_clock_keeps_its_live_series_when_arrivals_are_held() {
        let staleness = Duration::from_secs(3600);
        let by_event_time = tempfile::tempdir().unwrap();
        let health = PipelineHealth::new();
        let mut state = DeltaState::open(by_event_time.path(), staleness, health.clone())
            .await
            .unwrap();
        let mut flushes = Flushes::new(by_event_time.path());
        two_clocks(&mut state, &mut flushes, (1, 2), 6);
        // Forgotten once written, then read back at each export after.
        assert_eq!(counter(&health, "burnrate_delta_read_back_total"), 5);

        let held = tempfile::tempdir().unwrap();
        let (mut state, health, mut flushes) = holding_arrivals(held.path(), staleness).await;
        assert_eq!(two_clocks(&mut state, &mut flushes, (1, 2), 6), 2);
        assert_eq!(counter(&health, "burnrate_delta_forgotten_total"), 0);
        assert_eq!(counter(&health, "burnrate_delta_read_back_total"), 0);
    }

    /// What a Kafka source takes while behind its partitions' ends is a backlog's, held by
    /// event time alone whatever its arrival: the client behind the clock is read back at each
    /// export as without arrivals held. Once the source has caught up, arrivals hold that
    /// client's series again (two new sessions from then on): nothing more is read back.
    #[tokio::test]
    async fn a_backlog_is_held_by_event_time_alone_until_the_source_catches_up() {
        let dir = tempfile::tempdir().unwrap();
        let (mut state, health, mut flushes) =
            holding_arrivals(dir.path(), Duration::from_secs(3600)).await;
        flushes.backlog = true;
        two_clocks(&mut state, &mut flushes, (1, 2), 6);
        assert_eq!(counter(&health, "burnrate_delta_read_back_total"), 5);

        flushes.backlog = false;
        two_clocks(&mut state, &mut flushes, (3, 4), 6);
        assert_eq!(counter(&health, "burnrate_delta_read_back_total"), 5);
        // The first client's series, and both of the new sessions'; the backlog's client
        // behind the clock went at its last flush.
        assert_eq!(state.tracker.len(), 3);
    }

    /// Held arrivals still go: once the client behind stops sending for the window, its
    /// series is forgotten at the next flush, and the one whose clock is right stays. Flushes
    /// ten seconds apart on a clock of the test's own, a window of 45 seconds.
    #[tokio::test]
    async fn a_series_no_longer_sent_goes_once_the_arrival_window_passes() {
        let dir = tempfile::tempdir().unwrap();
        let (mut state, health, mut flushes) =
            holding_arrivals(dir.path(), Duration::from_secs(45)).await;
        flushes.clock = Some(Instant::now());
        // Flushes at 0 to 50 s; the last points were taken before the one at 30 s.
        assert_eq!(two_clocks(&mut state, &mut flushes, (1, 2), 2), 2);
        for at in [60, 70] {
            flushes.flush(&mut state);
            assert_eq!(state.tracker.len(), 2, "sent {} s before", at - 30);
        }
        flushes.flush(&mut state);
        assert_eq!(
            state.tracker.len(),
            1,
            "only the series whose clock is right"
        );
        assert_eq!(counter(&health, "burnrate_delta_forgotten_total"), 1);
    }

    /// A backlog of sessions one second apart, each reporting once: the state holds about a
    /// staleness' worth of them, and reads nothing back.
    #[tokio::test]
    async fn a_backlog_of_new_sessions_keeps_a_staleness_worth_of_series() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Table::MetricPoints.schema();
        let (mut state, health, mut flushes) = a_minute_of_staleness(dir.path()).await;
        let mut most = 0;
        for session in 0..3_000 {
            let time = START + session * SECOND;
            let batch = started(&schema, session as u64 + 1, time - 30 * SECOND, time, 1.0);
            let (converted, _) = state.convert(&batch, 0).unwrap();
            assert_eq!(converted.num_rows(), 1);
            flushes.unwritten.push(batch);
            if session % 50 == 49 {
                flushes.flush(&mut state);
            }
            most = most.max(state.tracker.len());
        }
        // When a flush looks, the sessions of the last two flushes are not written yet (one is
        // still with the writer), 100 seconds' worth, more than the minute of staleness; then
        // 50 more are taken before the next look.
        assert!(most <= 100 + 50, "held {most} series at most");
        assert!(counter(&health, "burnrate_delta_forgotten_total") > 2_700);
        assert_eq!(counter(&health, "burnrate_delta_read_back_total"), 0);
    }
}
