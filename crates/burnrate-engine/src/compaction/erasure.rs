//! Erasure (`burnrate forget --user ID`): one person's rows leave every table, and the files
//! that held them leave the disk at once rather than after the vacuum delay.
//!
//! Whose rows: those whose `user_id` or `user_email` is the id, or whose attributes or resource
//! carry it (`user.id`, `user.email`, `user.account_uuid`), or that name such a resource of
//! `resources` by `resource_id`; then every row of the sessions found that way, since the raw
//! tables name only the session and the resource; anomalies about the person or
//! one of their sessions; dead letters whose raw bytes hold the id or one of the sessions. A
//! window row that counts several people keeps its counts and loses the person's sessions from
//! its `session_ids`.
//!
//! Each file holding such a row is rewritten without it (or dropped when nothing is left), in
//! one `DELETE` commit per table, then deleted from disk with the person's files the log no
//! longer lists (merged away by a compaction, not vacuumed yet). A file whose source has not
//! committed it is left alone, since a restart may write it again, and reported.
//!
//! Must not know: how the sources commit ([`CommittedSegments`] says it).

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use burnrate_otlp::Table;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, ListArray, ListBuilder, RecordBatch, StringArray,
    StringBuilder, UInt64Array,
};
use datafusion::arrow::compute::{cast, filter_record_batch, not};
use datafusion::arrow::datatypes::{DataType, UInt64Type};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;

use super::{COMPACTED_SEGMENT_PREFIX, CommittedSegments, finish, segment, unmirror};
use crate::EngineError;
use crate::sink::mirror::mirror_of;
use crate::sink::parquet_sink::{ParquetSink, segment_files, sync_dir};
use crate::sink::stored_types;
use crate::sink::table_log::{self, DurableFile, LoggedFile, Rewrite, TableFiles};

/// Attribute keys whose value identifies a person (Claude Code's names).
const PERSON_KEYS: [&str; 3] = ["user.id", "user.email", "user.account_uuid"];

/// The columns that can tie a row to a person; only these are read to find the rows.
const WHO_COLUMNS: [&str; 9] = [
    "user_id",
    "user_email",
    "session_id",
    "attributes",
    "resource",
    "resource_id",
    "dimension",
    "payload",
    "session_ids",
];

/// A file no log lists or removed that is younger than this may be a flush between its write
/// and its commit: it is reported, not deleted.
const IN_FLIGHT: Duration = Duration::from_secs(3600);

/// A commit that loses a race with another change to the same files is tried again this often.
const ATTEMPTS: usize = 3;

/// What erasure did to one table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TableErasure {
    pub table: &'static str,
    /// The person's rows that left the table's log.
    pub rows_removed: u64,
    /// Rows that stay (they count several people) but lost the person's sessions.
    pub rows_scrubbed: u64,
    /// Files rewritten without the person's rows, and files dropped because every row was
    /// theirs.
    pub files_rewritten: usize,
    pub files_dropped: usize,
    /// Files deleted from disk: those the rewrite replaced, and older copies the log no longer
    /// listed.
    pub files_deleted: usize,
    /// Files holding the person's rows that were left: their source has not committed them
    /// (or, unlisted, they may be a flush about to commit). Run `forget` again once it has.
    pub left: usize,
    /// Why the table could not be handled this time, if it could not.
    pub error: Option<String>,
}

/// What `forget` found and did.
#[derive(Debug, Clone, Serialize)]
pub struct Erasure {
    /// The sessions found under the person's id (their rows went too).
    pub sessions: usize,
    pub tables: Vec<TableErasure>,
}

impl Erasure {
    /// Whether any of the person's rows are still in a table or on disk.
    pub fn complete(&self) -> bool {
        self.tables.iter().all(|t| t.error.is_none() && t.left == 0)
    }
}

/// Who is forgotten: the id as the client reported it, the sessions found under it, and the
/// resources (in `resources`) whose attributes name either; a raw row naming one of those
/// resources by `resource_id` is the person's.
struct Person {
    id: String,
    sessions: HashSet<String>,
    resources: HashSet<u64>,
}

/// Removes the rows of the person `id` (their `user.id` or e-mail) from every table under
/// `root`. `kafka_group` is the consumer group whose positions say which Kafka segments are
/// committed.
pub fn forget(root: &Path, id: &str, kafka_group: &str) -> Result<Erasure, EngineError> {
    if !root.is_dir() {
        return Err(EngineError::NoDataset(root.display().to_string()));
    }
    if id.trim().is_empty() {
        return Err(EngineError::Config("forget: the user id is empty".into()));
    }
    let mut person = Person {
        id: id.to_string(),
        sessions: HashSet::new(),
        resources: HashSet::new(),
    };
    // First the resources that name the person, then the sessions: the raw tables' rows name
    // only those two. Then the resources that name one of the sessions.
    person.resources = resources_of(root, &person)?;
    let mut sessions = BTreeSet::new();
    for table in Table::ALL {
        for path in table_paths(root, table)? {
            sessions.extend(sessions_in(&path, &person)?);
        }
    }
    person.sessions = sessions.into_iter().collect();
    person.resources = resources_of(root, &person)?;
    let mut tables = Vec::new();
    for table in Table::ALL {
        match forget_in_table(root, table, &person, kafka_group) {
            Ok(Some(done)) => tables.push(done),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(table = table.name(), error = %error, "erasure failed for the table; the others go on");
                tables.push(TableErasure {
                    table: table.name(),
                    error: Some(error.to_string()),
                    ..Default::default()
                });
            }
        }
    }
    Ok(Erasure {
        sessions: person.sessions.len(),
        tables,
    })
}

/// Every Parquet file of `table` on disk: listed by its log or not.
fn table_paths(root: &Path, table: Table) -> Result<Vec<PathBuf>, EngineError> {
    Ok(segment_files(&root.join(table.name()))?
        .into_iter()
        .filter(|f| !f.temporary)
        .map(|f| f.path)
        .collect())
}

/// `None` when the table has neither a log nor files.
fn forget_in_table(
    root: &Path,
    table: Table,
    person: &Person,
    kafka_group: &str,
) -> Result<Option<TableErasure>, EngineError> {
    let dir = root.join(table.name());
    if !table_log::has_log(&dir) && table_paths(root, table)?.is_empty() {
        return Ok(None);
    }
    let mut done = TableErasure {
        table: table.name(),
        ..Default::default()
    };
    let mut replaced = HashSet::new();
    for attempt in 1..=ATTEMPTS {
        let Some(read) = table_log::read_table(root, table)? else {
            break;
        };
        match rewrite_listed(root, &read, person, kafka_group)? {
            Rewritten::Done(outcome, removed) => {
                done = outcome;
                replaced = removed.iter().map(|f| dir.join(&f.path)).collect();
                break;
            }
            Rewritten::Lost(error) if attempt < ATTEMPTS => {
                tracing::info!(table = table.name(), error = %error, "erasure lost a race for its files; trying again");
            }
            Rewritten::Lost(error) => return Err(error),
        }
    }
    // Then the files no log lists: those just replaced, and older copies (merged away or
    // expired, not vacuumed yet). A file no commit ever removed, written within the hour,
    // may be a flush about to commit.
    let (listed, tombstoned): (HashSet<PathBuf>, HashSet<PathBuf>) =
        match table_log::read_table(root, table)? {
            Some(read) => (
                read.files.iter().map(|f| dir.join(&f.path)).collect(),
                table_log::removed_files(root, &read)?
                    .into_iter()
                    .map(|path| dir.join(path))
                    .collect(),
            ),
            None => Default::default(),
        };
    let mut gone = Vec::new();
    for path in table_paths(root, table)? {
        if listed.contains(&path) {
            continue;
        }
        if !replaced.contains(&path) {
            if !scan(&path, person)?.holds_person() {
                continue;
            }
            if !tombstoned.contains(&path) && modified_within(&path, IN_FLIGHT)? {
                done.left += 1;
                continue;
            }
        }
        fs::remove_file(&path).map_err(|e| EngineError::io(&path, e))?;
        if let Some(day) = path.parent() {
            sync_dir(day)?;
        }
        done.files_deleted += 1;
        gone.push(LoggedFile {
            path: relative(&dir, &path),
            date: String::new(),
            size: 0,
        });
    }
    unmirror(root, table, &gone)?;
    Ok(Some(done))
}

enum Rewritten {
    /// Committed (or nothing to commit), with the files that left the log.
    Done(TableErasure, Vec<LoggedFile>),
    /// Another change to the same files won; nothing was committed.
    Lost(EngineError),
}

/// Rewrites the listed files of `read` that hold the person's rows, in one commit.
fn rewrite_listed(
    root: &Path,
    read: &TableFiles,
    person: &Person,
    kafka_group: &str,
) -> Result<Rewritten, EngineError> {
    let table = read.table;
    let dir = root.join(table.name());
    let mut done = TableErasure {
        table: table.name(),
        ..Default::default()
    };
    let mut holding = Vec::new();
    for file in &read.files {
        if scan(&dir.join(&file.path), person)?.holds_person() {
            holding.push(file);
        }
    }
    if holding.is_empty() {
        return Ok(Rewritten::Done(done, Vec::new()));
    }
    let committed = CommittedSegments::read(root, kafka_group, holding.iter().map(|f| segment(f)))?;
    let (mut removed, mut added) = (Vec::new(), Vec::new());
    for file in holding {
        if !committed.contains(segment(file)) {
            done.left += 1;
            continue;
        }
        let rewrite = rewrite_file(table, &dir, file, person)?;
        done.rows_removed += rewrite.rows_removed;
        done.rows_scrubbed += rewrite.rows_scrubbed;
        match rewrite.written {
            Some(written) => {
                done.files_rewritten += 1;
                added.push(written);
            }
            None => done.files_dropped += 1,
        }
        removed.push(file.clone());
    }
    if removed.is_empty() {
        return Ok(Rewritten::Done(done, removed));
    }
    let mirror = mirror_of(root);
    if let Some((mirror_root, mirror)) = &mirror {
        for file in &added {
            let absolute =
                std::path::absolute(&file.path).map_err(|e| EngineError::io(&file.path, e))?;
            mirror.put_file(mirror_root, &absolute)?;
        }
    }
    match table_log::replace_files(root, read, &removed, &added, &Rewrite::Erasure) {
        Ok(()) => {}
        Err(error) if error.is_retryable() => {
            for file in &added {
                let _ = fs::remove_file(&file.path);
                if let Some((mirror_root, mirror)) = &mirror {
                    let absolute = std::path::absolute(&file.path)
                        .map_err(|e| EngineError::io(&file.path, e))?;
                    mirror.delete_file(mirror_root, &absolute)?;
                }
            }
            return Ok(Rewritten::Lost(error));
        }
        Err(error) => return Err(error),
    }
    tracing::info!(
        table = table.name(),
        rows = done.rows_removed,
        files = removed.len(),
        "removed one person's rows"
    );
    Ok(Rewritten::Done(done, removed))
}

/// What one file holds of the person.
#[derive(Debug, Default)]
struct Verdict {
    /// Rows that are the person's.
    rows: u64,
    /// Rows that stay but list one of the person's sessions.
    scrubbed: u64,
}

impl Verdict {
    fn holds_person(&self) -> bool {
        self.rows > 0 || self.scrubbed > 0
    }
}

/// Reads only the columns that can name a person.
fn who_reader(
    path: &Path,
) -> Result<datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReader, EngineError> {
    let file = File::open(path).map_err(|e| EngineError::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let schema = builder.schema().clone();
    let is_anomaly = schema.column_with_name("dimension").is_some();
    let roots: Vec<usize> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            WHO_COLUMNS.contains(&f.name().as_str()) || (is_anomaly && f.name() == "value")
        })
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    Ok(builder.with_projection(mask).build()?)
}

fn scan(path: &Path, person: &Person) -> Result<Verdict, EngineError> {
    let mut verdict = Verdict::default();
    for batch in who_reader(path)? {
        let batch = batch?;
        let mine = person_rows(&batch, person);
        verdict.rows += mine.true_count() as u64;
        verdict.scrubbed += listing_sessions(&batch, &mine, person);
    }
    Ok(verdict)
}

/// The sessions of the rows in `path` that name the person by id. An empty session id names
/// nobody: taken as theirs, it would take every row without a session, and every dead letter
/// (the empty string is in every payload).
fn sessions_in(path: &Path, person: &Person) -> Result<Vec<String>, EngineError> {
    let mut found = Vec::new();
    for batch in who_reader(path)? {
        let batch = batch?;
        let mine = person_rows(&batch, person);
        if mine.true_count() == 0 {
            continue;
        }
        if let Some(sessions) = strings(&batch, "session_id") {
            found.extend(
                (0..batch.num_rows())
                    .filter(|&i| mine.value(i) && sessions.is_valid(i))
                    .map(|i| sessions.value(i).to_string()),
            );
        }
        for map in ["attributes", "resource"] {
            for_each_entry(&batch, map, |row, key, value| {
                if key == "session.id" && mine.value(row) {
                    found.push(value.to_string());
                }
            });
        }
    }
    found.retain(|session| !session.trim().is_empty());
    Ok(found)
}

/// The ids of the rows of `resources`, on disk, that are the person's.
fn resources_of(root: &Path, person: &Person) -> Result<HashSet<u64>, EngineError> {
    let mut found = person.resources.clone();
    for path in table_paths(root, Table::Resources)? {
        for batch in who_reader(&path)? {
            let batch = batch?;
            let mine = person_rows(&batch, person);
            if let Some(ids) = resource_ids(&batch) {
                found.extend(
                    (0..batch.num_rows())
                        .filter(|&i| mine.value(i) && ids.is_valid(i))
                        .map(|i| ids.value(i)),
                );
            }
        }
    }
    Ok(found)
}

/// `batch`'s `resource_id`s: a file holds them as `Int64` (Delta's type; `stored_types`), all
/// non-negative.
fn resource_ids(batch: &RecordBatch) -> Option<UInt64Array> {
    let column = batch.column_by_name("resource_id")?;
    let ids = cast(column, &DataType::UInt64).ok()?;
    ids.as_primitive_opt::<UInt64Type>().cloned()
}

/// Which rows of `batch` are the person's.
fn person_rows(batch: &RecordBatch, person: &Person) -> BooleanArray {
    let rows = batch.num_rows();
    let mut mine = vec![false; rows];
    let id = person.id.as_str();
    for column in ["user_id", "user_email"] {
        if let Some(values) = strings(batch, column) {
            for (row, value) in values.iter().enumerate() {
                mine[row] |= value == Some(id);
            }
        }
    }
    if let Some(values) = strings(batch, "session_id") {
        for (row, value) in values.iter().enumerate() {
            mine[row] |= value.is_some_and(|s| person.sessions.contains(s));
        }
    }
    for map in ["attributes", "resource"] {
        for_each_entry(batch, map, |row, key, value| {
            mine[row] |= (PERSON_KEYS.contains(&key) && value == id)
                || (key == "session.id" && person.sessions.contains(value));
        });
    }
    if let Some(ids) = resource_ids(batch) {
        for (row, resource) in ids.iter().enumerate() {
            mine[row] |= resource.is_some_and(|r| person.resources.contains(&r));
        }
    }
    // An anomaly about the person, or one of their sessions.
    if let (Some(dimensions), Some(values)) = (strings(batch, "dimension"), strings(batch, "value"))
    {
        for (row, (dimension, value)) in dimensions.iter().zip(values.iter()).enumerate() {
            let (Some(dimension), Some(value)) = (dimension, value) else {
                continue;
            };
            mine[row] |= match dimension {
                "user_id" | "user_email" => value == id,
                "session_id" => person.sessions.contains(value),
                _ => false,
            };
        }
    }
    // A dead letter could not be decoded: its bytes are searched for the id and the sessions.
    if let Some(payloads) = batch
        .column_by_name("payload")
        .and_then(|c| c.as_binary_opt::<i32>())
    {
        let needles: Vec<memchr::memmem::Finder> = std::iter::once(id)
            .chain(person.sessions.iter().map(String::as_str))
            .map(memchr::memmem::Finder::new)
            .collect();
        for (row, payload) in payloads.iter().enumerate() {
            if let Some(payload) = payload {
                mine[row] |= needles.iter().any(|n| n.find(payload).is_some());
            }
        }
    }
    BooleanArray::from(mine)
}

/// How many rows not in `mine` list one of the person's sessions in `session_ids`.
fn listing_sessions(batch: &RecordBatch, mine: &BooleanArray, person: &Person) -> u64 {
    let Some(lists) = batch
        .column_by_name("session_ids")
        .and_then(|c| c.as_list_opt::<i32>())
    else {
        return 0;
    };
    (0..batch.num_rows())
        .filter(|&row| !mine.value(row) && lists.is_valid(row))
        .filter(|&row| {
            let list = lists.value(row);
            list.as_string_opt::<i32>().is_some_and(|ids| {
                ids.iter()
                    .any(|s| s.is_some_and(|s| person.sessions.contains(s)))
            })
        })
        .count() as u64
}

/// `batch`'s column `name` when it is a string column.
fn strings<'a>(batch: &'a RecordBatch, name: &str) -> Option<&'a StringArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
}

/// Calls `visit(row, key, value)` for each entry with a value of the map column `name`.
fn for_each_entry(batch: &RecordBatch, name: &str, mut visit: impl FnMut(usize, &str, &str)) {
    let Some(maps) = batch.column_by_name(name).and_then(|c| c.as_map_opt()) else {
        return;
    };
    let (Some(keys), Some(values)) = (
        maps.keys().as_string_opt::<i32>(),
        maps.values().as_string_opt::<i32>(),
    ) else {
        return;
    };
    let offsets = maps.value_offsets();
    for row in 0..maps.len() {
        if maps.is_null(row) {
            continue;
        }
        let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
        for entry in start..end {
            if values.is_valid(entry) {
                visit(row, keys.value(entry), values.value(entry));
            }
        }
    }
}

/// What rewriting one file did.
struct FileRewrite {
    rows_removed: u64,
    rows_scrubbed: u64,
    /// The file without the person's rows; `None` when none were left.
    written: Option<DurableFile>,
}

/// Writes `file` again without the person's rows (and without their sessions in
/// `session_ids`), durably, next to it.
fn rewrite_file(
    table: Table,
    dir: &Path,
    file: &LoggedFile,
    person: &Person,
) -> Result<FileRewrite, EngineError> {
    let source = dir.join(&file.path);
    let reader = ParquetRecordBatchReaderBuilder::try_new(
        File::open(&source).map_err(|e| EngineError::io(&source, e))?,
    )?;
    // The file's own columns (an older file lacks the columns added since, and reads them as
    // null either way), in Delta's types.
    let schema = stored_types::stored_schema(reader.schema());
    let day_dir = source
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.to_path_buf());
    let path = day_dir.join(format!(
        "{COMPACTED_SEGMENT_PREFIX}{}.parquet",
        uuid::Uuid::new_v4()
    ));
    let mut outcome = FileRewrite {
        rows_removed: 0,
        rows_scrubbed: 0,
        written: None,
    };
    let mut open: Option<(ArrowWriter<File>, usize)> = None;
    for batch in reader.build()? {
        let batch = batch?;
        let mine = person_rows(&batch, person);
        outcome.rows_removed += mine.true_count() as u64;
        outcome.rows_scrubbed += listing_sessions(&batch, &mine, person);
        let kept = filter_record_batch(&batch, &not(&mine)?)?;
        if kept.num_rows() == 0 {
            continue;
        }
        let kept = stored_types::to_stored(&scrub_sessions(kept, person)?)?;
        let (writer, rows) = match &mut open {
            Some(open) => open,
            None => {
                let tmp = path.with_extension("parquet.tmp");
                let out = File::create(&tmp).map_err(|e| EngineError::io(&tmp, e))?;
                let writer = ArrowWriter::try_new(
                    out,
                    schema.clone(),
                    Some(ParquetSink::rewrite_properties()),
                )?;
                open.insert((writer, 0))
            }
        };
        writer.write(&kept)?;
        *rows += kept.num_rows();
    }
    if let Some((writer, rows)) = open {
        outcome.written = Some(finish(table, &file.date, path, writer, rows)?);
        sync_dir(&day_dir)?;
    }
    Ok(outcome)
}

/// `batch` with the person's sessions taken out of `session_ids`, if it has that column.
fn scrub_sessions(batch: RecordBatch, person: &Person) -> Result<RecordBatch, EngineError> {
    let Some((index, field)) = batch
        .schema()
        .column_with_name("session_ids")
        .map(|(i, f)| (i, f.clone()))
    else {
        return Ok(batch);
    };
    let Some(lists) = batch.column(index).as_list_opt::<i32>() else {
        return Ok(batch);
    };
    let DataType::List(item) = field.data_type() else {
        return Ok(batch);
    };
    let mut scrubbed = ListBuilder::new(StringBuilder::new()).with_field(item.clone());
    for row in 0..lists.len() {
        if lists.is_null(row) {
            scrubbed.append_null();
            continue;
        }
        let list = lists.value(row);
        if let Some(ids) = list.as_string_opt::<i32>() {
            for id in ids.iter() {
                match id {
                    Some(id) if person.sessions.contains(id) => {}
                    id => scrubbed.values().append_option(id),
                }
            }
        }
        scrubbed.append(true);
    }
    let scrubbed: ListArray = scrubbed.finish();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns[index] = Arc::new(scrubbed);
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// Whether `path` was modified less than `age` ago.
fn modified_within(path: &Path, age: Duration) -> Result<bool, EngineError> {
    let modified = fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| EngineError::io(path, e))?;
    Ok(SystemTime::now()
        .duration_since(modified)
        .is_ok_and(|elapsed| elapsed < age)
        || modified > SystemTime::now())
}

/// `path` below the table's directory, with `/` between parts, as a log names it.
fn relative(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use datafusion::arrow::array::Int64Array;

    use super::*;
    use crate::sink::dead_letters::{DeadLetter, dead_letter_batch};
    use crate::sink::table_buffer::decoded_client_records;

    /// 2026-01-01T00:00:00Z.
    const NEW_YEAR: i64 = 1_767_225_600_000_000_000;

    fn letters(payloads: &[&str]) -> BTreeMap<Table, Vec<RecordBatch>> {
        let letters: Vec<DeadLetter> = payloads
            .iter()
            .enumerate()
            .map(|(i, payload)| {
                DeadLetter::numbered(i, NEW_YEAR + i as i64, payload.as_bytes().to_vec())
            })
            .collect();
        BTreeMap::from([(
            Table::DeadLetters,
            vec![dead_letter_batch(&letters).unwrap()],
        )])
    }

    fn person(id: &str, sessions: &[&str]) -> Person {
        Person {
            id: id.into(),
            sessions: sessions.iter().map(|s| s.to_string()).collect(),
            resources: HashSet::new(),
        }
    }

    /// The ids in `resource_id` of every file of `table` on disk.
    fn resource_ids_on_disk(root: &Path, table: Table) -> Vec<u64> {
        let mut ids = Vec::new();
        for path in table_paths(root, table).unwrap() {
            let file = File::open(&path).unwrap();
            for batch in ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap()
                .build()
                .unwrap()
            {
                let batch = batch.unwrap();
                ids.extend(resource_ids(&batch).unwrap().iter().flatten());
            }
        }
        ids
    }

    /// A person named only in their client's resource attributes: the resource's row in
    /// `resources` goes, and with it every raw row that names it by `resource_id`; another
    /// client's rows stay.
    #[test]
    fn rows_that_name_the_persons_resource_go_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut tables: BTreeMap<Table, Vec<RecordBatch>> = BTreeMap::new();
        for user in ["ada", "bob"] {
            for (table, batches) in
                decoded_client_records(&[("user.id", user)], NEW_YEAR, &["a", "b"])
            {
                tables.entry(table).or_default().extend(batches);
            }
        }
        ParquetSink::new(root)
            .write_segment("seg-a", &tables)
            .unwrap();
        let bob = resource_ids_on_disk(root, Table::Resources)[1];

        let done = forget(root, "ada", "burnrate").unwrap();
        assert!(done.complete(), "{done:?}");
        let removed = |name: &str| {
            done.tables
                .iter()
                .find(|t| t.table == name)
                .map(|t| t.rows_removed)
        };
        assert_eq!(removed("log_records"), Some(2), "{done:?}");
        assert_eq!(removed("resources"), Some(1), "{done:?}");
        assert_eq!(resource_ids_on_disk(root, Table::Resources), [bob]);
        assert_eq!(resource_ids_on_disk(root, Table::LogRecords), [bob, bob]);
    }

    #[test]
    fn a_dead_letter_holding_the_id_goes_and_an_uncommitted_segment_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let sink = ParquetSink::new(root);
        sink.write_segment("seg-a", &letters(&[r#"{"user.id":"ada"#, "{\"x\":"]))
            .unwrap();
        // A receiver segment whose write-ahead log is still there: a restart writes it again.
        sink.write_segment("receiver-00000000000000000042", &letters(&["ada"]))
            .unwrap();
        let wal_dir = root.join("_burnrate/receiver");
        fs::create_dir_all(&wal_dir).unwrap();
        fs::write(wal_dir.join("wal-00000000000000000042.log"), b"").unwrap();
        let before = table_paths(root, Table::DeadLetters).unwrap();

        let done = forget(root, "ada", "burnrate").unwrap();
        let letters_done = done
            .tables
            .iter()
            .find(|t| t.table == "dead_letters")
            .unwrap();
        assert_eq!(letters_done.rows_removed, 1);
        assert_eq!(
            (letters_done.files_rewritten, letters_done.files_deleted),
            (1, 1)
        );
        assert_eq!(letters_done.left, 1, "{letters_done:?}");
        assert!(!done.complete());
        assert!(!before[0].exists() || !before[1].exists());

        // Once the receiver has committed its segment, a second run removes the rest.
        fs::remove_file(wal_dir.join("wal-00000000000000000042.log")).unwrap();
        let again = forget(root, "ada", "burnrate").unwrap();
        assert!(again.complete(), "{again:?}");
        let read = table_log::read_table(root, Table::DeadLetters)
            .unwrap()
            .unwrap();
        assert_eq!(read.files.len(), 1);
        let left: Vec<PathBuf> = table_paths(root, Table::DeadLetters).unwrap();
        assert_eq!(left.len(), 1, "{left:?}");
        assert_eq!(scan(&left[0], &person("ada", &[])).unwrap().rows, 0);
        assert_eq!(
            forget(root, "", "burnrate").unwrap_err().to_string(),
            "configuration: forget: the user id is empty"
        );
    }

    #[test]
    fn an_empty_session_id_is_nobodys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calls.parquet");
        let batch = RecordBatch::try_from_iter([
            (
                "user_id",
                Arc::new(StringArray::from(vec!["ada", "ada", "bob", "ada"])) as ArrayRef,
            ),
            (
                "session_id",
                Arc::new(StringArray::from(vec![
                    Some(""),
                    Some("s1"),
                    Some(""),
                    None,
                ])) as ArrayRef,
            ),
        ])
        .unwrap();
        let mut writer =
            ArrowWriter::try_new(File::create(&path).unwrap(), batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let ada = person("ada", &[]);
        assert_eq!(sessions_in(&path, &ada).unwrap(), ["s1"]);
        // Bob's row, without a session, is not hers.
        let ada = person("ada", &["s1"]);
        assert_eq!(scan(&path, &ada).unwrap().rows, 3);
    }

    #[test]
    fn anomalies_about_the_person_go_and_shared_windows_lose_only_their_sessions() {
        let dimensions = StringArray::from(vec!["user_id", "session_id", "team", "user_email"]);
        let values = StringArray::from(vec!["ada", "s1", "ada", "bob@example.com"]);
        let scores = Int64Array::from(vec![1, 2, 3, 4]);
        let anomalies = RecordBatch::try_from_iter([
            ("dimension", Arc::new(dimensions) as ArrayRef),
            ("value", Arc::new(values) as ArrayRef),
            ("score", Arc::new(scores) as ArrayRef),
        ])
        .unwrap();
        let mine = person_rows(&anomalies, &person("ada", &["s1"]));
        assert_eq!(mine, BooleanArray::from(vec![true, true, false, false]));

        let mut lists = ListBuilder::new(StringBuilder::new());
        for row in [vec!["s1", "s2"], vec!["s3"], vec![]] {
            for id in row {
                lists.values().append_value(id);
            }
            lists.append(true);
        }
        lists.append_null();
        let windows = RecordBatch::try_from_iter([
            (
                "user_id",
                Arc::new(StringArray::from(vec![None, None, Some("ada"), None])) as ArrayRef,
            ),
            ("session_ids", Arc::new(lists.finish()) as ArrayRef),
        ])
        .unwrap();
        let ada = person("ada", &["s1"]);
        let mine = person_rows(&windows, &ada);
        assert_eq!(mine, BooleanArray::from(vec![false, false, true, false]));
        assert_eq!(listing_sessions(&windows, &mine, &ada), 1);
        let scrubbed = scrub_sessions(windows, &ada).unwrap();
        let lists = scrubbed.column(1).as_list::<i32>();
        let row = |i: usize| -> Vec<String> {
            lists
                .value(i)
                .as_string::<i32>()
                .iter()
                .map(|s| s.unwrap().to_string())
                .collect()
        };
        assert_eq!(row(0), ["s2"]);
        assert_eq!(row(1), ["s3"]);
        assert!(lists.is_null(3));
    }
}
