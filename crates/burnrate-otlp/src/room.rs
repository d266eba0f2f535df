//! Room for a run's columns, learnt from the runs before it.
//!
//! A column builder that starts small doubles as it fills, copying what it holds each time,
//! and every copy lands in memory the process has not touched yet: growing the builders was a
//! fifth of decoding a Kafka run, a third of it page faults (`kafka_throughput` under `perf`,
//! 2026-12-07). Runs of one source look alike, so a decode worker keeps what its last run of
//! each table came to, per byte of input ([`RunRoom`]), and starts the next run's builders at
//! that size scaled to the run ([`Room`]). A column that is never used costs nothing: each
//! table's builders are made only when a row arrives, and each column gets what it took last
//! time, not a guess for every column alike (room for 1,024 rows in every column had made a
//! catch-up 14% slower; see [`crate::columns::INITIAL_ROWS`]).
//!
//! What is learnt is a size, never a value: a wrong guess only costs a copy or some unused
//! room, which the memory budget counts as it counts any Arrow buffer.
//!
//! Measured (docs/benchmarks.md, 2026-12-07, afternoon): a logged Kafka round of 36,000
//! messages under callgrind (`scripts/kafka-instructions.sh`) took 3.0% fewer instructions
//! outside librdkafka (7.80 billion before, 7.51 to 7.66 after), its decode stage 4.4% (the
//! reallocations' copies); side by side in time, the plain-Parquet round 8% less CPU a message
//! over four pairs, the logged one within the machine's drift.

use std::collections::BTreeMap;

use arrow::array::{
    Array, ArrowPrimitiveType, BooleanBuilder, MapArray, PrimitiveBuilder, RecordBatch,
    StringArray, TimestampNanosecondBuilder,
};
use arrow::datatypes::DataType;

use crate::columns::{AttributeMap, INITIAL_ROWS, StringColumn};
use crate::schema::Table;

/// The smallest run worth learning from, in bytes of input: a run cut short by a lull holds a
/// few exports, whose fixed share (a resource row a run) would be scaled up to a full run's.
pub const LEARN_FROM_BYTES: usize = 64 << 10;

/// The most a run's room is scaled up from the run it was learnt from: a run far larger than
/// any seen grows the rest of the way as it would have.
const MAX_SCALE: f64 = 4.0;

/// Room over what was learnt, so that a run a little fuller than the last does not double its
/// columns at the very end: an eighth.
const SLACK: f64 = 1.125;

/// What one column came to.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct ColumnRoom {
    /// Bytes of text in a string column; entries in a map column.
    items: usize,
    /// Bytes of the keys and of the values of a map column's entries.
    key_bytes: usize,
    value_bytes: usize,
}

/// What one table's rows came to in a run of `input_bytes` bytes, its columns in schema order.
#[derive(Debug, Clone, PartialEq)]
struct TableRoom {
    input_bytes: usize,
    rows: usize,
    columns: Vec<ColumnRoom>,
}

/// What a decode worker's last run of each table came to; empty before its first run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunRoom {
    tables: BTreeMap<Table, TableRoom>,
}

impl RunRoom {
    /// Learns each table's sizes from a run of `input_bytes` bytes of exports (as submitted,
    /// before any inflating): its batches as the builders finished them. A run under
    /// [`LEARN_FROM_BYTES`] is left out.
    pub fn learn<'a>(
        &mut self,
        batches: impl IntoIterator<Item = &'a (Table, RecordBatch)>,
        input_bytes: usize,
    ) {
        if input_bytes < LEARN_FROM_BYTES {
            return;
        }
        for (table, batch) in batches {
            let columns = batch.columns().iter().map(|c| column_room(c.as_ref()));
            self.tables.insert(
                *table,
                TableRoom {
                    input_bytes,
                    rows: batch.num_rows(),
                    columns: columns.collect(),
                },
            );
        }
    }

    /// The room to give a run of `input_bytes` bytes: each table's sizes scaled from the run
    /// they were learnt from (up to [`MAX_SCALE`] times), with [`SLACK`].
    pub fn for_run(&self, input_bytes: usize) -> RunRoom {
        let tables = self.tables.iter().map(|(table, learnt)| {
            let scale =
                (input_bytes as f64 / learnt.input_bytes.max(1) as f64).min(MAX_SCALE) * SLACK;
            let scaled = |n: usize| (n as f64 * scale).ceil() as usize;
            let room = TableRoom {
                input_bytes,
                rows: scaled(learnt.rows),
                columns: learnt
                    .columns
                    .iter()
                    .map(|c| ColumnRoom {
                        items: scaled(c.items),
                        key_bytes: scaled(c.key_bytes),
                        value_bytes: scaled(c.value_bytes),
                    })
                    .collect(),
            };
            (*table, room)
        });
        RunRoom {
            tables: tables.collect(),
        }
    }

    /// The room for `table`'s builders.
    pub fn table(&self, table: Table) -> Room<'_> {
        Room {
            table,
            room: self.tables.get(&table),
        }
    }

    /// `builders`, made at their table's first row with this run's room for it: a table no
    /// row reaches costs nothing.
    pub(crate) fn rows<'b, B: TableRows>(&self, builders: &'b mut Option<B>) -> &'b mut B {
        builders.get_or_insert_with(|| B::with_room(self.table(B::TABLE)))
    }
}

fn column_room(column: &dyn Array) -> ColumnRoom {
    let text = |array: &dyn Array| {
        array
            .as_any()
            .downcast_ref::<StringArray>()
            .map_or(0, |strings| strings.value_data().len())
    };
    match column.data_type() {
        DataType::Utf8 => ColumnRoom {
            items: text(column),
            ..ColumnRoom::default()
        },
        DataType::Map(..) => match column.as_any().downcast_ref::<MapArray>() {
            Some(map) => ColumnRoom {
                items: map.entries().len(),
                key_bytes: text(map.keys().as_ref()),
                value_bytes: text(map.values().as_ref()),
            },
            None => ColumnRoom::default(),
        },
        _ => ColumnRoom::default(),
    }
}

/// A table's builders, made with the room a run has for that table.
pub(crate) trait TableRows {
    /// The table whose rows they build.
    const TABLE: Table;

    fn with_room(room: Room<'_>) -> Self;
}

/// Room for one table's builders: what [`RunRoom::for_run`] gave it, or the defaults
/// ([`INITIAL_ROWS`]) for a table not learnt yet.
#[derive(Debug, Clone, Copy)]
pub struct Room<'a> {
    table: Table,
    room: Option<&'a TableRoom>,
}

impl Room<'_> {
    /// No room learnt: every builder at its default size.
    pub fn none(table: Table) -> Room<'static> {
        Room { table, room: None }
    }

    /// Rows every column has room for.
    pub fn rows(&self) -> usize {
        self.room
            .map_or(INITIAL_ROWS, |room| room.rows.max(INITIAL_ROWS))
    }

    fn column(&self, name: &str) -> ColumnRoom {
        let index = self.table.schema().index_of(name).ok();
        // A name the schema lacks is a bug in a builder, caught by the tests: default room.
        debug_assert!(
            index.is_some(),
            "{} has no column {name}",
            self.table.name()
        );
        self.room
            .zip(index)
            .and_then(|(room, index)| room.columns.get(index).copied())
            .unwrap_or_default()
    }

    pub fn strings(&self, column: &str) -> StringColumn {
        StringColumn::with_room(self.rows(), self.column(column).items)
    }

    pub fn timestamps(&self) -> TimestampNanosecondBuilder {
        TimestampNanosecondBuilder::with_capacity(self.rows()).with_timezone("UTC")
    }

    pub fn primitives<T: ArrowPrimitiveType>(&self) -> PrimitiveBuilder<T> {
        PrimitiveBuilder::with_capacity(self.rows())
    }

    pub fn booleans(&self) -> BooleanBuilder {
        BooleanBuilder::with_capacity(self.rows())
    }

    pub fn map(&self, column: &str) -> AttributeMap {
        let room = self.column(column);
        AttributeMap::with_room(self.rows(), room.items, room.key_bytes, room.value_bytes)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::UInt64Type;

    use super::*;
    use crate::ContentPolicy;
    use crate::columns::{ContentFilter, RenderedAttributes};
    use crate::view::{AnyValue, KeyValue, Value};

    fn service(name: &str) -> RenderedAttributes {
        let attributes = [KeyValue {
            key: "service.name",
            value: Some(AnyValue {
                value: Some(Value::StringValue(name)),
            }),
        }];
        RenderedAttributes::new(&attributes, &ContentFilter::new(ContentPolicy::Keep, &[]))
    }

    /// `rows` rows of `resources`, built with `room`, each naming `service`.
    fn resources(room: Room<'_>, rows: usize, service: &RenderedAttributes) -> RecordBatch {
        let (mut time, mut id) = (room.timestamps(), room.primitives::<UInt64Type>());
        let mut map = room.map("resource");
        for i in 0..rows {
            time.append_value(i as i64);
            id.append_value(i as u64);
            map.append_rendered(service);
        }
        let columns = vec![
            Arc::new(time.finish()) as _,
            Arc::new(id.finish()) as _,
            map.finish(),
        ];
        RecordBatch::try_new(Table::Resources.schema(), columns).unwrap()
    }

    fn learnt(rows: usize, input_bytes: usize) -> RunRoom {
        let batch = resources(Room::none(Table::Resources), rows, &service("claude-code"));
        let mut learnt = RunRoom::default();
        learnt.learn(&[(Table::Resources, batch)], input_bytes);
        learnt
    }

    #[test]
    fn a_run_is_given_what_the_last_one_took_scaled_to_its_size() {
        let learnt = learnt(1_000, 100_000);
        // Half the input: half the room, and the slack.
        let run = learnt.for_run(50_000);
        let room = run.table(Table::Resources);
        assert_eq!(room.rows(), 563);
        let map = room.column("resource");
        assert_eq!(map.items, 563);
        // The whole run's bytes scaled, not a row's: 1,000 keys of 12 bytes, values of 11.
        assert_eq!(map.key_bytes, 6_750);
        assert_eq!(map.value_bytes, 6_188);
        // Far more input: at most MAX_SCALE times what was learnt.
        let far = learnt.for_run(10_000_000);
        assert_eq!(far.table(Table::Resources).rows(), 4_500);
        // A table never learnt, or no run before: the defaults.
        assert_eq!(run.table(Table::Spans).rows(), INITIAL_ROWS);
        let first = RunRoom::default().for_run(100_000);
        assert_eq!(first.table(Table::Resources).rows(), INITIAL_ROWS);
    }

    #[test]
    fn a_small_run_teaches_nothing() {
        assert_eq!(learnt(10, LEARN_FROM_BYTES - 1), RunRoom::default());
    }

    #[test]
    fn builders_given_room_do_not_grow_as_a_like_run_fills_them() {
        let run = learnt(1_000, 100_000).for_run(100_000);
        let room = run.table(Table::Resources);
        let mut map = room.map("resource");
        let before = map.capacity();
        let service = service("claude-code");
        for _ in 0..1_000 {
            map.append_rendered(&service);
        }
        assert_eq!(map.capacity(), before, "the map's buffers grew");
        // Without room they would have.
        let mut small = Room::none(Table::Resources).map("resource");
        let before = small.capacity();
        for _ in 0..1_000 {
            small.append_rendered(&service);
        }
        assert_ne!(small.capacity(), before);
    }
}
