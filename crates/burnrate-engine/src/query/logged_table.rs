//! A table read through its Delta log: exactly the Parquet files the log lists at the version
//! the query opened, with their `date` partition values, and no others (a crashed flush's file
//! in the same directory is not read).
//!
//! The files hold Delta's types (microsecond timestamps, signed integers), which is what Spark,
//! Trino, DuckDB and delta-rs read; burnrate reads every file, older ones with nanoseconds and
//! unsigned integers too, in the table's own Arrow types (DataFusion casts each file's columns).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::Result;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use object_store::path::Path as ObjectPath;

use crate::sink::table_log::{LoggedFile, PARTITION_COLUMN};

#[derive(Debug)]
pub struct LoggedTable {
    /// The table's columns in burnrate's types, which each file's are cast to.
    file_schema: SchemaRef,
    /// `file_schema` and `date`.
    schema: SchemaRef,
    /// The store the files are in: the local filesystem, or a bucket.
    store: ObjectStoreUrl,
    /// The table's directory in `store`.
    dir: ObjectPath,
    files: Vec<LoggedFile>,
}

impl LoggedTable {
    pub fn new(
        file_schema: SchemaRef,
        store: ObjectStoreUrl,
        dir: ObjectPath,
        files: Vec<LoggedFile>,
    ) -> Self {
        let mut fields: Vec<FieldRef> = file_schema.fields().iter().cloned().collect();
        fields.push(partition_field());
        LoggedTable {
            schema: Arc::new(Schema::new(fields)),
            file_schema,
            store,
            dir,
            files,
        }
    }

    /// Whether each file's day passes the filters that only look at `date`.
    fn days_kept(&self, state: &dyn Session, filters: &[Expr]) -> Result<Vec<bool>> {
        let on_date: Vec<Expr> = filters
            .iter()
            .filter(|f| only_partition_column(f))
            .cloned()
            .collect();
        let Some(predicate) = conjunction(on_date) else {
            return Ok(vec![true; self.files.len()]);
        };
        let days = Arc::new(Schema::new(vec![partition_field()]));
        let predicate =
            state.create_physical_expr(predicate, &DFSchema::try_from(days.clone())?)?;
        let dates: ArrayRef = Arc::new(StringArray::from_iter_values(
            self.files.iter().map(|f| f.date.as_str()),
        ));
        let batch = RecordBatch::try_new(days, vec![dates])?;
        let kept = predicate.evaluate(&batch)?.into_array(batch.num_rows())?;
        let kept = kept
            .as_any()
            .downcast_ref::<BooleanArray>()
            .map(|k| (0..k.len()).map(|i| k.is_valid(i) && k.value(i)).collect())
            .unwrap_or_else(|| vec![true; self.files.len()]);
        Ok(kept)
    }
}

fn partition_field() -> FieldRef {
    Arc::new(Field::new(PARTITION_COLUMN, DataType::Utf8, true))
}

fn only_partition_column(filter: &Expr) -> bool {
    let columns = filter.column_refs();
    !columns.is_empty() && columns.iter().all(|c| c.name == PARTITION_COLUMN)
}

#[async_trait]
impl TableProvider for LoggedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Pruned by day and by the files' statistics, then filtered again above the scan.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let kept = self.days_kept(state, filters)?;
        let files: Vec<PartitionedFile> = self
            .files
            .iter()
            .zip(kept)
            .filter(|(_, kept)| *kept)
            .map(|(file, _)| {
                let mut path = self.dir.clone();
                for part in file.path.split('/') {
                    path = path.join(part);
                }
                PartitionedFile::new(path.to_string(), file.size)
                    .with_partition_values(vec![ScalarValue::Utf8(Some(file.date.clone()))])
            })
            .collect();
        let table_schema = TableSchema::builder(self.file_schema.clone())
            .with_table_partition_cols(vec![partition_field()])
            .build();
        let mut source = ParquetSource::new(table_schema);
        // The other filters prune row groups by the files' statistics.
        let on_columns: Vec<Expr> = filters
            .iter()
            .filter(|f| !only_partition_column(f))
            .cloned()
            .collect();
        if let Some(predicate) = conjunction(on_columns) {
            let schema = DFSchema::try_from(self.schema.clone())?;
            source = source.with_predicate(state.create_physical_expr(predicate, &schema)?);
        }
        let partitions = state.config().target_partitions().max(1);
        let mut groups: Vec<Vec<PartitionedFile>> =
            vec![Vec::new(); partitions.min(files.len()).max(1)];
        let count = groups.len();
        for (i, file) in files.into_iter().enumerate() {
            groups[i % count].push(file);
        }
        let config = FileScanConfigBuilder::new(self.store.clone(), Arc::new(source))
            .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}
