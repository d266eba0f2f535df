//! Parquet output: one file per (table, day, segment), Hive-partitioned, written under a
//! temporary name, fsynced and renamed, then committed to its table's Delta log, so a reader
//! never sees half a file and a replay of the same segment replaces its files instead of
//! adding to them.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use burnrate_otlp::{Table, utc_day};
use chrono::DateTime;
use datafusion::arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::{SchemaRef, TimestampNanosecondType};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::schema::types::ColumnPath;

use crate::EngineError;
use crate::sink::mirror::{ObjectMirror, mirror_of};
use crate::sink::stored_types;
use crate::sink::table_log::{self, DurableFile, PARTITION_COLUMN};

/// Partition value of rows whose time is unknown or invalid.
pub const UNKNOWN_DATE: &str = "unknown";

#[derive(Clone)]
pub struct ParquetSink {
    root: PathBuf,
    /// Where each file goes once it is durable locally, when the dataset is mirrored.
    mirror: Option<(PathBuf, Arc<ObjectMirror>)>,
}

impl std::fmt::Debug for ParquetSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetSink")
            .field("root", &self.root)
            .field("mirror", &self.mirror.as_ref().map(|(_, m)| m.url()))
            .finish()
    }
}

/// What a segment flush wrote.
#[derive(Debug, Default, Clone)]
pub struct WrittenSegment {
    pub files: Vec<PathBuf>,
    pub rows: BTreeMap<&'static str, usize>,
}

impl ParquetSink {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        ParquetSink {
            mirror: mirror_of(&root),
            root,
        }
    }

    /// How a flush's files of `table` are encoded: [`Self::rewrite_properties`] without
    /// statistics, and without dictionaries for its numbers and times.
    ///
    /// A flush's file holds one segment's rows of one table and day, a few hundred to a few
    /// thousand rows, and compaction rewrites it with [`Self::rewrite_properties`] once its day
    /// is past. Its statistics would save a reader little: its `date=` directory prunes by day,
    /// a reader opens its footer either way, and the rows behind the footer are a few KB. They
    /// cost a fifth of its encoding: every string's min and max, map keys and values included,
    /// a comparison a value (0.79x the time without them, and 0.82x the bytes, on the real
    /// exports: `benches/parquet_encode.rs`, `docs/benchmarks.md`). Off for the whole file:
    /// `parquet` 59 looks a column's own settings up in a hash map at every batch of values,
    /// which cost 7% when statistics were set column by column. Dictionaries stay for strings,
    /// binaries and maps: without them the encoders' buffers hold every value, and a Kafka
    /// catch-up took 45% more page faults and ran slower. A 4 KiB dictionary page limit (plain
    /// pages once a column's distinct values pass it) was no faster: 49,097 against 49,895
    /// messages/s at 1,000,008 (`docs/benchmarks.md`, 2026-12-06). zstd stays though `parquet`
    /// makes two zstd contexts a column chunk, each with a `cpuid` (3.6 µs on a VM): LZ4_RAW
    /// took the encoders 5 points of a core less and the catch-up no faster (+0.9%, the same
    /// evening).
    ///
    /// Numbers and times ([`plain_columns`]) are written plain: event times, token counts,
    /// costs and durations hardly repeat within a file, so a dictionary interns every value (a
    /// hash and a probe each) to end up as large as the values, and zstd compresses them plain
    /// as well. That takes column-by-column settings, lookups included in what was measured
    /// (2026-12-07): `parquet_encode` 0.84x and 0.96x the time in two runs and 0.85x the bytes;
    /// a Kafka catch-up of 360,000 messages 3.8% and 5.8% less CPU a message, 3.0% and 4.2%
    /// more messages a second.
    pub fn flush_properties(table: Table) -> WriterProperties {
        let mut properties = Self::rewrite_properties()
            .into_builder()
            .set_statistics_enabled(EnabledStatistics::None);
        for column in plain_columns(table) {
            properties = properties.set_column_dictionary_enabled(column, false);
        }
        properties.build()
    }

    /// How the files readers keep are encoded, the ones compaction merges days into and
    /// erasure rewrites: zstd, row groups of at most 64 Ki rows, dictionaries, and page
    /// statistics (min, max and null counts a page and a row group, which readers prune on).
    pub fn rewrite_properties() -> WriterProperties {
        WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            // A row group is encoded in memory until it is complete: 64 Ki rows bounds that
            // (the default, 1 Mi rows, held a whole segment's table).
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .build()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes every table's batches of one segment and commits them to the tables' logs. Files
    /// are named `<segment>.parquet`, so the same segment written twice leaves one copy.
    pub fn write_segment(
        &self,
        segment: &str,
        tables: &BTreeMap<Table, Vec<RecordBatch>>,
    ) -> Result<WrittenSegment, EngineError> {
        let mut written = self.write_segments(&[(segment, tables)])?;
        Ok(written.pop().unwrap_or_default())
    }

    /// [`Self::write_segment`] for several segments as one durable step: every file of every
    /// segment encoded side by side, then each table's new files committed to its log at once.
    /// What each segment wrote, in their order.
    pub fn write_segments(
        &self,
        segments: &[(&str, &BTreeMap<Table, Vec<RecordBatch>>)],
    ) -> Result<Vec<WrittenSegment>, EngineError> {
        let mut written = vec![WrittenSegment::default(); segments.len()];
        let mut files = Vec::new();
        for (index, (segment, tables)) in segments.iter().enumerate() {
            for (table, batches) in *tables {
                let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                if rows == 0 {
                    continue;
                }
                // Batch by batch, never concatenated: a segment's encoding then holds one row
                // group at a time beside the batches, not a second copy of the whole table.
                let mut days: BTreeMap<String, Vec<RecordBatch>> = BTreeMap::new();
                for batch in batches {
                    for (date, part) in split_by_day(batch, table.time_column())? {
                        days.entry(date).or_default().push(part);
                    }
                }
                for (date, parts) in days {
                    let dir = self
                        .root
                        .join(table.name())
                        .join(format!("{PARTITION_COLUMN}={date}"));
                    let path = dir.join(format!("{segment}.parquet"));
                    let rows = parts.iter().map(RecordBatch::num_rows).sum();
                    files.push(FileToWrite {
                        segment: index,
                        table: *table,
                        date,
                        dir,
                        path,
                        parts,
                        rows,
                    });
                }
                *written[index].rows.entry(table.name()).or_default() += rows;
            }
        }
        // Largest first, so that no large file is left to one core at the end.
        files.sort_by_key(|file| std::cmp::Reverse(file.rows));
        // Files are encoded side by side, one per core: tables, days and segments do not
        // depend on each other, and encoding is most of a flush.
        let next = AtomicUsize::new(0);
        let writers = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(files.len());
        let results: Vec<Result<(), EngineError>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..writers)
                .map(|_| {
                    // Named, so that a profile or a bench tells encoding from the rest of a
                    // flush.
                    std::thread::Builder::new()
                        .name("burnrate-encode".into())
                        .spawn_scoped(scope, || {
                            loop {
                                let Some(file) = files.get(next.fetch_add(1, Ordering::Relaxed))
                                else {
                                    return Ok(());
                                };
                                self.write_file(&file.dir, &file.path, file.table, &file.parts)?;
                            }
                        })
                })
                .collect();
            workers
                .into_iter()
                .map(|worker| match worker {
                    Ok(worker) => worker.join().unwrap_or_else(|_| {
                        Err(EngineError::Config("a Parquet writer panicked".into()))
                    }),
                    // Out of threads (EAGAIN): a resource, retried as the disk's errors are.
                    Err(error) => Err(EngineError::io(&self.root, error)),
                })
                .collect()
        });
        results.into_iter().collect::<Result<(), EngineError>>()?;
        // Back in the segments' order, so that each table's commit lists them as they came.
        files.sort_by(|a, b| (a.segment, a.table, &a.date).cmp(&(b.segment, b.table, &b.date)));
        let mut durable = Vec::with_capacity(files.len());
        for file in files {
            written[file.segment].files.push(file.path.clone());
            durable.push(DurableFile {
                table: file.table,
                path: file.path,
                date: file.date,
                rows: file.rows,
            });
        }
        table_log::add_files(&self.root, &durable)?;
        Ok(written)
    }

    fn write_file(
        &self,
        dir: &Path,
        path: &Path,
        table: Table,
        batches: &[RecordBatch],
    ) -> Result<(), EngineError> {
        fs::create_dir_all(dir).map_err(|e| EngineError::io(path, e))?;
        let stored = batches
            .iter()
            .map(stored_types::to_stored)
            .collect::<Result<Vec<_>, _>>()?;
        write_atomically(
            path,
            stored_types::stored_schema(&table.schema()),
            &stored,
            // Made for each file: 1.7 µs, against about 1.2 ms encoding one of a Kafka flush's
            // files (`parquet_encode`, 2026-12-07).
            Self::flush_properties(table),
        )?;
        // Durable on the store before the caller commits anything that counts on the file.
        if let Some((root, mirror)) = &self.mirror {
            let absolute = std::path::absolute(path).map_err(|e| EngineError::io(path, e))?;
            mirror.put_file(root, &absolute)?;
        }
        Ok(())
    }
}

const ROW_GROUP_ROWS: usize = 64 * 1024;

/// The columns of `table`'s files that hold fixed-width values (integers, floats, times): the
/// ones a flush writes without a dictionary.
pub fn plain_columns(table: Table) -> Vec<ColumnPath> {
    stored_types::stored_schema(&table.schema())
        .fields()
        .iter()
        .filter(|field| field.data_type().is_primitive())
        .map(|field| ColumnPath::from(field.name().as_str()))
        .collect()
}

/// One file of a durable step, waiting for an encoder.
struct FileToWrite {
    /// Its segment's place in the step.
    segment: usize,
    table: Table,
    date: String,
    dir: PathBuf,
    path: PathBuf,
    parts: Vec<RecordBatch>,
    rows: usize,
}

/// Writes `batches` to `path` as one Parquet file: under a temporary name, fsynced, renamed and
/// the rename made durable, so a reader sees the old file or the new one, never half of one.
pub fn write_atomically(
    path: &Path,
    schema: SchemaRef,
    batches: &[RecordBatch],
    properties: WriterProperties,
) -> Result<(), EngineError> {
    let io = |e: std::io::Error| EngineError::io(path, e);
    let tmp = path.with_extension("parquet.tmp");
    let file = File::create(&tmp).map_err(io)?;
    let mut writer = ArrowWriter::try_new(file, schema, Some(properties))?;
    for batch in batches {
        writer.write(batch)?;
    }
    let file = writer.into_inner()?;
    file.sync_all().map_err(io)?;
    drop(file);
    fs::rename(&tmp, path).map_err(io)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// A segment's file in a table's directory: `date=<date>/<segment>.parquet`, or `.parquet.tmp`
/// while it is being written.
#[derive(Debug, Clone)]
pub struct SegmentFile {
    pub date: String,
    pub segment: String,
    pub path: PathBuf,
    /// Written under its temporary name, never renamed: a crashed write's.
    pub temporary: bool,
}

/// Every segment file below a table's directory (none if it does not exist). The one place
/// that knows how segment files are laid out: the sources clear what they never committed
/// through [`remove_segments`], and the Delta log adopts a dataset from before the logs. A day
/// that cannot be read is an error: its files would be left out unseen.
pub fn segment_files(table_dir: &Path) -> Result<Vec<SegmentFile>, EngineError> {
    let mut found = Vec::new();
    let Ok(days) = fs::read_dir(table_dir) else {
        return Ok(found);
    };
    for day in days.flatten() {
        // Only days: `_delta_log` holds no segments (and a Delta checkpoint is `*.parquet`).
        let day_name = day.file_name().to_string_lossy().into_owned();
        let Some(date) = day_name.strip_prefix(&format!("{PARTITION_COLUMN}=")) else {
            continue;
        };
        let files = fs::read_dir(day.path()).map_err(|e| EngineError::io(&day.path(), e))?;
        for file in files.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            let (segment, temporary) = if let Some(s) = name.strip_suffix(".parquet.tmp") {
                (s, true)
            } else if let Some(s) = name.strip_suffix(".parquet") {
                (s, false)
            } else {
                continue;
            };
            found.push(SegmentFile {
                date: date.to_string(),
                segment: segment.to_string(),
                path: file.path(),
                temporary,
            });
        }
    }
    Ok(found)
}

/// Deletes the dataset's files whose segment `doomed(segment, is_temporary)` picks, in every
/// table and day, their removal committed to the tables' logs first, so each source can clear
/// what it wrote but never committed. Returns how many files went.
pub fn remove_segments(
    root: &Path,
    doomed: impl Fn(&str, bool) -> bool,
) -> Result<usize, EngineError> {
    let mut found: Vec<(Table, SegmentFile)> = Vec::new();
    for table in Table::ALL {
        for file in segment_files(&root.join(table.name()))? {
            if doomed(&file.segment, file.temporary) {
                found.push((table, file));
            }
        }
    }
    let logged: Vec<(Table, PathBuf)> = found
        .iter()
        .filter(|(_, file)| !file.temporary)
        .map(|(table, file)| (*table, file.path.clone()))
        .collect();
    table_log::remove_files(root, &logged)?;
    let mirror = mirror_of(root);
    if let Some((root, mirror)) = &mirror {
        // The store's log leaves the files before the store does.
        let tables: std::collections::BTreeSet<Table> = logged.iter().map(|(t, _)| *t).collect();
        for table in tables {
            mirror.publish(root, table)?;
        }
    }
    for (_, file) in &found {
        let path = &file.path;
        fs::remove_file(path).map_err(|e| EngineError::io(path, e))?;
        if let (Some((root, mirror)), false) = (&mirror, file.temporary) {
            let absolute = std::path::absolute(path).map_err(|e| EngineError::io(path, e))?;
            mirror.delete_file(root, &absolute)?;
        }
    }
    Ok(found.len())
}

/// Makes a rename in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), EngineError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| EngineError::io(dir, e))
}

/// Rows grouped by the UTC day of `time_column`, as `YYYY-MM-DD` (or [`UNKNOWN_DATE`]).
pub fn split_by_day(
    batch: &RecordBatch,
    time_column: &str,
) -> Result<Vec<(String, RecordBatch)>, EngineError> {
    let times = batch
        .column_by_name(time_column)
        .ok_or_else(|| EngineError::Schema(format!("no column {time_column}")))?
        .as_primitive_opt::<TimestampNanosecondType>()
        .ok_or_else(|| EngineError::Schema(format!("{time_column} is not a timestamp")))?;
    let mut days: BTreeMap<Option<i64>, Vec<u32>> = BTreeMap::new();
    for i in 0..batch.num_rows() {
        let day = times.is_valid(i).then(|| utc_day(times.value(i)));
        days.entry(day).or_default().push(i as u32);
    }
    if days.len() == 1 {
        let day = *days.keys().next().unwrap_or(&None);
        return Ok(vec![(day_name(day), batch.clone())]);
    }
    days.into_iter()
        .map(|(day, rows)| {
            let part = take_record_batch(batch, &UInt32Array::from(rows))?;
            Ok((day_name(day), part))
        })
        .collect()
}

fn day_name(day: Option<i64>) -> String {
    day.and_then(|d| DateTime::from_timestamp(d * 86_400, 0))
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| UNKNOWN_DATE.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray, new_null_array};
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::DataType;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    /// `rows` rows of `table`: two models' worth of repeating strings, numbers and times that
    /// differ on every row, no maps.
    fn rows(table: Table, rows: usize) -> RecordBatch {
        let schema = table.schema();
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|field| match field.data_type() {
                DataType::Utf8 => Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|row| ["claude-opus-4-5", "claude-haiku-4-5"][row % 2]),
                )) as ArrayRef,
                DataType::Map(..) => new_null_array(field.data_type(), rows),
                other => {
                    let base = match other {
                        DataType::Timestamp(..) => 1_764_547_200_000_000_000,
                        _ => 0,
                    };
                    let distinct = (0..rows as i64).map(|row| base + row * 7_919);
                    cast(&Int64Array::from_iter_values(distinct), other).unwrap()
                }
            })
            .collect();
        RecordBatch::try_new(schema, columns).unwrap()
    }

    /// A flush writes numbers and times plain and strings with a dictionary, and the file reads
    /// back as it was given.
    #[test]
    fn a_flush_writes_numbers_plain_and_strings_with_a_dictionary() {
        let dir = tempfile::tempdir().unwrap();
        let sink = ParquetSink::new(dir.path());
        let batch = rows(Table::ApiRequests, 3_000);
        let tables = BTreeMap::from([(Table::ApiRequests, vec![batch.clone()])]);
        let written = sink.write_segment("kafka-0000", &tables).unwrap();
        let [path] = written.files.as_slice() else {
            panic!("one file: {:?}", written.files);
        };
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
        let plain: Vec<String> = plain_columns(Table::ApiRequests)
            .iter()
            .map(|column| column.string())
            .collect();
        assert!(plain.iter().any(|c| c == "time") && plain.iter().any(|c| c == "cost_usd"));
        assert!(!plain.iter().any(|c| c == "model"), "{plain:?}");
        let strings: Vec<&str> = batch
            .schema_ref()
            .fields()
            .iter()
            .filter(|f| f.data_type() == &DataType::Utf8)
            .map(|f| f.name().as_str())
            .collect();
        let mut checked = 0;
        for chunk in reader
            .metadata()
            .row_groups()
            .iter()
            .flat_map(|g| g.columns())
        {
            let column = chunk.column_path().string();
            let dictionary = chunk.dictionary_page_offset().is_some();
            if plain.contains(&column) {
                assert!(!dictionary, "{column} has a dictionary");
                checked += 1;
            } else if strings.contains(&column.as_str()) {
                assert!(dictionary, "{column} has no dictionary");
                checked += 1;
            }
        }
        assert_eq!(checked, plain.len() + strings.len());
        let read: Vec<RecordBatch> = reader.build().unwrap().collect::<Result<_, _>>().unwrap();
        let read = datafusion::arrow::compute::concat_batches(&read[0].schema(), &read).unwrap();
        assert_eq!(read, stored_types::to_stored(&batch).unwrap());
    }
}
