//! The Parquet dataset as DataFusion tables: every burnrate table, with its Hive `date`
//! partition column, registered under its own name, and the latency sketch functions.

use std::path::Path;
use std::sync::Arc;

use burnrate_otlp::Table;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::EngineError;

/// A session over `data_dir` with every table registered. Tables with no data yet are
/// registered empty, with their schema, so queries over them return no rows instead of failing.
pub async fn open_dataset(data_dir: &Path) -> Result<SessionContext, EngineError> {
    let config = SessionConfig::new().with_information_schema(true);
    let ctx = SessionContext::new_with_config(config);
    crate::sketch::register_sketch_functions(&ctx);
    register_tables(&ctx, data_dir).await?;
    Ok(ctx)
}

pub async fn register_tables(ctx: &SessionContext, data_dir: &Path) -> Result<(), EngineError> {
    if !data_dir.is_dir() {
        return Err(EngineError::NoDataset(data_dir.display().to_string()));
    }
    for table in Table::ALL {
        let dir = data_dir.join(table.name());
        let provider: Arc<dyn datafusion::catalog::TableProvider> = if dir.is_dir() {
            let absolute = std::path::absolute(&dir).map_err(|e| EngineError::io(&dir, e))?;
            let url = ListingTableUrl::parse(format!("{}/", absolute.display()))?;
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet")
                .with_table_partition_cols(vec![("date".to_string(), DataType::Utf8)]);
            let config = ListingTableConfig::new(url)
                .with_listing_options(options)
                .with_schema(table.schema());
            Arc::new(ListingTable::try_new(config)?)
        } else {
            let mut fields: Vec<Field> = table
                .schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            fields.push(Field::new("date", DataType::Utf8, false));
            let schema = Arc::new(Schema::new(fields));
            let empty = RecordBatch::new_empty(schema.clone());
            Arc::new(MemTable::try_new(schema, vec![vec![empty]])?)
        };
        ctx.register_table(table.name(), provider)?;
    }
    Ok(())
}

/// Runs one read-only statement: DDL, DML and `COPY` are refused, so `burnrate query` never
/// changes the dataset it reads.
pub async fn run_sql(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, EngineError> {
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let frame = ctx.sql_with_options(sql, options).await?;
    Ok(frame.collect().await?)
}
