//! Decoded batches waiting to be flushed as one segment, whatever source they came from.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use burnrate_otlp::{DecodeStats, Decoded, DeltaStats, Table, resource_key};
use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{TimestampNanosecondType, UInt64Type};

use crate::EngineError;
use crate::publish::health::PipelineHealth;
use crate::sink::dead_letters::{DeadLetter, dead_letter_batch};
use crate::sink::parquet_sink::ParquetSink;
use crate::stream::delta_state::DeltaState;

/// What the segments a run flushed add up to, whatever source they came from.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct FlushTotals {
    pub segments_written: u64,
    pub dead_letters: u64,
    pub rows: BTreeMap<&'static str, usize>,
    pub rows_with_errors: u64,
    /// Model calls with no price, by model: their `cost_usd` is NULL.
    pub unpriced_models: BTreeMap<String, u64>,
}

/// Batches a table gathers since its last concatenation before they are concatenated into one.
/// A batch decoded from one export of a few KB carries buffers with room to grow in each of its
/// columns: the receiver's small exports took about three times their decoded bytes in memory,
/// enough to fill the memory budget with segments waiting to be written under a full load (the
/// `receiver_load` bench's 503s, 2026-12-02). Concatenated, the rows take what they need, and
/// the Parquet writer gets larger batches.
const CONCAT_AFTER: usize = 64;

#[derive(Debug, Default)]
pub struct TableBuffer {
    tables: BTreeMap<Table, Vec<RecordBatch>>,
    /// Per table, how many of its leading batches are concatenations already.
    concatenated: BTreeMap<Table, usize>,
    dead: Vec<DeadLetter>,
    /// The `resources` rows this segment holds, by [`resource_key`]: a client's resource
    /// comes with every export (the receiver decodes each request alone, the Kafka source a
    /// run at a time), and its segment needs it once a day.
    resources: HashSet<(u64, Option<i64>)>,
    /// Input bytes taken in since the last flush, as decoded (a gzip export counts inflated:
    /// 224 KB of gzip can hold 31 MiB of export).
    pub bytes: usize,
    /// Memory the buffered batches take: many small exports make many small batches, each
    /// with per-column buffers, so this runs well past `bytes`.
    pub memory: usize,
    pub stats: DecodeStats,
    pub delta: DeltaStats,
    /// Rows booked to a token's team over the team their attributes named.
    pub team_overrides: u64,
}

/// A buffer turned into the batches of one segment, ready to be written (again, if a write
/// failed: writing a segment is idempotent).
#[derive(Debug)]
pub struct Segment {
    pub tables: BTreeMap<Table, Vec<RecordBatch>>,
    dead_letters: usize,
    rows_with_errors: u64,
    unpriced_models: BTreeMap<String, u64>,
}

impl Segment {
    /// Writes `segments` (each with its name) as one durable step: their files encoded side by
    /// side and committed to the tables' logs at once, each table in one commit. Counts them
    /// in `totals` and `health`.
    pub fn write_all(
        segments: &[(&str, &Segment)],
        sink: &ParquetSink,
        health: &PipelineHealth,
        totals: &mut FlushTotals,
    ) -> Result<(), EngineError> {
        let started = Instant::now();
        let tables: Vec<(&str, &BTreeMap<Table, Vec<RecordBatch>>)> = segments
            .iter()
            .map(|(name, segment)| (*name, &segment.tables))
            .collect();
        let written = sink.write_segments(&tables)?;
        for ((_, segment), written) in segments.iter().zip(written) {
            health.flushed(
                &written.rows,
                segment.dead_letters,
                segment.rows_with_errors,
            );
            for (model, calls) in &segment.unpriced_models {
                *totals.unpriced_models.entry(model.clone()).or_default() += calls;
            }
            totals.segments_written += 1;
            totals.dead_letters += segment.dead_letters as u64;
            totals.rows_with_errors += segment.rows_with_errors;
            for (table, rows) in written.rows {
                *totals.rows.entry(table).or_default() += rows;
            }
        }
        health.wrote(started.elapsed());
        Ok(())
    }
}

impl TableBuffer {
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty() && self.dead.is_empty()
    }

    /// Takes in an export (or a run of exports) from the decode stage, in its order: cumulative
    /// metrics are converted with `delta`, which depends on the order points arrive in, as
    /// points of `origin` (see [`DeltaState::origin`]); every row is booked to `team` when
    /// there is one.
    pub fn add_decoded(
        &mut self,
        mut decoded: Decoded,
        delta: &mut DeltaState,
        origin: u32,
        team: Option<&str>,
    ) -> Result<(), EngineError> {
        if let Some(team) = team {
            self.team_overrides += decoded.book_to_team(team)?;
        }
        self.bytes += decoded.plain_bytes;
        self.stats.merge(&decoded.stats);
        for (table, batch) in decoded.batches {
            let batch = match table {
                Table::UsageMetrics => {
                    let (converted, s) = delta.convert(&batch, origin)?;
                    self.delta.converted += s.converted;
                    self.delta.resets += s.resets;
                    self.delta.stale += s.stale;
                    converted
                }
                Table::Resources => match self.new_resources(batch)? {
                    Some(new) => new,
                    None => continue,
                },
                _ => batch,
            };
            self.memory += batch.get_array_memory_size();
            self.tables.entry(table).or_default().push(batch);
            self.concat_small_batches(table);
        }
        Ok(())
    }

    /// The rows of a `resources` batch this segment does not hold yet; `None` when it holds
    /// them all.
    fn new_resources(&mut self, batch: RecordBatch) -> Result<Option<RecordBatch>, EngineError> {
        let (Some(time), Some(id)) = (
            batch
                .column_by_name("time")
                .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>()),
            batch
                .column_by_name("resource_id")
                .and_then(|c| c.as_primitive_opt::<UInt64Type>()),
        ) else {
            return Ok(Some(batch));
        };
        let new: BooleanArray = (0..batch.num_rows())
            .map(|row| {
                let time = time.is_valid(row).then(|| time.value(row));
                // A row without an id names nothing a raw row could look up: kept as it came.
                Some(id.is_null(row) || self.resources.insert(resource_key(id.value(row), time)))
            })
            .collect();
        Ok(match new.true_count() {
            0 => None,
            all if all == batch.num_rows() => Some(batch),
            _ => Some(filter_record_batch(&batch, &new)?),
        })
    }

    /// Concatenates `table`'s batches since its last concatenation once there are
    /// `CONCAT_AFTER` of them (see there). Each row is copied once more, and only the recent
    /// batches are: the earlier concatenations stay as they are.
    fn concat_small_batches(&mut self, table: Table) {
        let (Some(batches), done) = (
            self.tables.get_mut(&table),
            self.concatenated.entry(table).or_default(),
        ) else {
            return;
        };
        if batches.len() - *done < CONCAT_AFTER {
            return;
        }
        let recent = &batches[*done..];
        let Some(schema) = recent.first().map(RecordBatch::schema) else {
            return;
        };
        // Batches of one table share its schema; should they not, they stay apart.
        let Ok(whole) = datafusion::arrow::compute::concat_batches(&schema, recent) else {
            return;
        };
        let before: usize = recent.iter().map(RecordBatch::get_array_memory_size).sum();
        self.memory = self.memory.saturating_sub(before) + whole.get_array_memory_size();
        batches.truncate(*done);
        batches.push(whole);
        *done += 1;
    }

    /// Keeps an export that could not be decoded, as its dead letter.
    pub fn add_dead(&mut self, dead: DeadLetter) {
        self.bytes += dead.payload.len();
        self.memory += dead.payload.len();
        self.dead.push(dead);
    }

    pub fn dead_letters(&self) -> usize {
        self.dead.len()
    }

    /// The segment this buffer makes, to write later.
    pub fn into_segment(self) -> Result<Segment, EngineError> {
        let (dead_letters, rows_with_errors) = (self.dead_letters(), self.stats.rows_with_errors);
        let unpriced_models = self.stats.unpriced_models.clone();
        Ok(Segment {
            tables: self.into_tables()?,
            dead_letters,
            rows_with_errors,
            unpriced_models,
        })
    }

    /// The batches to write, dead letters included.
    pub fn into_tables(self) -> Result<BTreeMap<Table, Vec<RecordBatch>>, EngineError> {
        let mut tables = self.tables;
        if !self.dead.is_empty() {
            let batch = dead_letter_batch(&self.dead)?;
            tables.entry(Table::DeadLetters).or_default().push(batch);
        }
        Ok(tables)
    }
}

/// A logs export of one record whose body is `body`, decoded: rows for the buffer's tests and
/// the Kafka writer's.
#[cfg(test)]
pub(crate) fn decoded_log_record(body: &str) -> Decoded {
    decode_client_export(&[], 1, &[body])
}

/// A logs export of one client (its resource's attributes `resource`) with a record per body,
/// all at `time_nanos`, decoded: rows for the tests of what reads or rewrites the raw tables.
#[cfg(test)]
pub(crate) fn decoded_client_records(
    resource: &[(&str, &str)],
    time_nanos: i64,
    bodies: &[&str],
) -> BTreeMap<Table, Vec<RecordBatch>> {
    decode_client_export(resource, time_nanos, bodies)
        .batches
        .into_iter()
        .map(|(table, batch)| (table, vec![batch]))
        .collect()
}

#[cfg(test)]
fn decode_client_export(resource: &[(&str, &str)], time_nanos: i64, bodies: &[&str]) -> Decoded {
    use burnrate_otlp::{Decoder, Encoding, MappingConfig, PayloadHint, Signal};
    use burnrate_pricing::PriceTable;

    let attributes: Vec<String> = resource
        .iter()
        .map(|(k, v)| format!(r#"{{"key":"{k}","value":{{"stringValue":"{v}"}}}}"#))
        .collect();
    let records: Vec<String> = bodies
        .iter()
        .map(|b| format!(r#"{{"timeUnixNano":"{time_nanos}","body":{{"stringValue":"{b}"}}}}"#))
        .collect();
    let export = format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[{}]}},"scopeLogs":[{{"logRecords":[{}]}}]}}]}}"#,
        attributes.join(","),
        records.join(",")
    );
    let hint = PayloadHint {
        encoding: Some(Encoding::Json),
        signal: Some(Signal::Logs),
        ..PayloadHint::default()
    };
    Decoder::new(MappingConfig::default(), PriceTable::embedded())
        .decode(export.as_bytes(), hint)
        .expect("a plain log export decodes")
}

#[cfg(test)]
mod tests {
    use burnrate_otlp::utc_day;
    use datafusion::arrow::array::StringArray;

    use super::*;

    /// The memory the batches `buffer` holds take.
    fn held_memory(buffer: &TableBuffer) -> usize {
        buffer
            .tables
            .values()
            .flatten()
            .map(RecordBatch::get_array_memory_size)
            .sum()
    }

    /// Each row's (resource_id, time) in `batches`.
    fn resource_times(batches: &[RecordBatch]) -> Vec<(u64, i64)> {
        batches
            .iter()
            .flat_map(|batch| {
                let id = batch.column_by_name("resource_id").unwrap();
                let time = batch.column_by_name("time").unwrap();
                let (id, time) = (
                    id.as_primitive::<UInt64Type>(),
                    time.as_primitive::<TimestampNanosecondType>(),
                );
                (0..batch.num_rows())
                    .map(|row| (id.value(row), time.value(row)))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn a_segment_holds_each_resource_once_a_day() {
        const DAY: i64 = 86_400_000_000_000;
        // 2025-12-05T00:00:00Z and a second after, on two days.
        const MIDNIGHT: i64 = 20_427 * DAY;
        const SECOND: i64 = 1_000_000_000;
        let mut buffer = TableBuffer::default();
        let mut delta = DeltaState::in_memory();
        let alice: &[(&str, &str)] = &[("user.email", "alice@example.com")];
        let bob: &[(&str, &str)] = &[("user.email", "bob@example.com")];
        let exports = [
            (alice, MIDNIGHT + SECOND),
            (alice, MIDNIGHT + 2 * SECOND),
            (bob, MIDNIGHT + 3 * SECOND),
            (alice, MIDNIGHT + DAY + SECOND),
            (bob, MIDNIGHT + 4 * SECOND),
            (alice, MIDNIGHT + DAY + 2 * SECOND),
        ];
        // Past CONCAT_AFTER, so that concatenated batches are checked too.
        for _ in 0..CONCAT_AFTER {
            for (resource, time) in exports {
                let decoded = decode_client_export(resource, time, &["a record"]);
                buffer.add_decoded(decoded, &mut delta, 0, None).unwrap();
            }
        }
        let resources = resource_times(&buffer.tables[&Table::Resources]);
        let ids: Vec<u64> = resources.iter().map(|(id, _)| *id).collect();
        assert_eq!(
            ids.len(),
            3,
            "alice twice (two days), bob once: {resources:?}"
        );
        assert_eq!(ids[0], ids[2], "alice's on both days");
        assert_ne!(ids[0], ids[1], "alice's and bob's apart");
        let times: Vec<i64> = resources.iter().map(|(_, time)| *time).collect();
        let first = [SECOND, 3 * SECOND, DAY + SECOND].map(|t| MIDNIGHT + t);
        assert_eq!(times, first, "each at the first time it came");

        let records = resource_times(&buffer.tables[&Table::LogRecords]);
        assert_eq!(
            records.len(),
            exports.len() * CONCAT_AFTER,
            "every record kept"
        );
        let named: HashSet<(u64, i64)> = records.iter().map(|&(id, t)| (id, utc_day(t))).collect();
        let held: HashSet<(u64, i64)> = resources.iter().map(|&(id, t)| (id, utc_day(t))).collect();
        assert_eq!(
            named, held,
            "every record's resource, on its day, and nothing else"
        );
        assert_eq!(
            buffer.memory,
            held_memory(&buffer),
            "memory follows the batches held"
        );
    }

    #[test]
    fn small_batches_are_concatenated_in_order_and_take_less_memory() {
        let mut buffer = TableBuffer::default();
        let mut delta = DeltaState::in_memory();
        let mut unconcatenated = 0;
        let exports = 3 * CONCAT_AFTER + 5;
        for i in 0..exports {
            let decoded = decoded_log_record(&format!("record {i}"));
            unconcatenated += decoded
                .batches
                .iter()
                .map(|(_, b)| b.get_array_memory_size())
                .sum::<usize>();
            buffer.add_decoded(decoded, &mut delta, 0, None).unwrap();
        }
        let batches = &buffer.tables[&Table::LogRecords];
        // Three concatenations of CONCAT_AFTER batches, then the 5 since.
        assert_eq!(batches.len(), 3 + 5);
        let bodies: Vec<String> = batches
            .iter()
            .flat_map(|batch| {
                let body = batch.column_by_name("body").unwrap();
                let body = body.as_any().downcast_ref::<StringArray>().unwrap();
                body.iter()
                    .map(|b| b.unwrap().to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        let expected: Vec<String> = (0..exports).map(|i| format!("record {i}")).collect();
        assert_eq!(bodies, expected, "every row, in the order it came");
        assert_eq!(
            buffer.memory,
            held_memory(&buffer),
            "memory follows the batches held"
        );
        assert!(
            buffer.memory * 3 < unconcatenated,
            "{} bytes held against {unconcatenated} unconcatenated",
            buffer.memory
        );
    }
}
