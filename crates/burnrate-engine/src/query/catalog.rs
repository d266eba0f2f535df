//! The Parquet dataset as DataFusion tables: every burnrate table, with its `date` partition
//! column, registered under its own name, and the latency sketch functions; from a directory
//! or, read in place, from an `s3://` prefix. A table with a Delta log is read through it (the
//! files it lists, at the version it was opened at); one without (a dataset written before the
//! logs, or a store copy made before the store had logs) is every Parquet file below its
//! directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burnrate_otlp::Table;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::error::{DataFusionError, Result as DataFusionResult};
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::TryStreamExt;
use object_store::ObjectStore;

use crate::EngineError;
use crate::query::logged_table::LoggedTable;
use crate::sink::mirror::{is_object_url, open_store};
use crate::sink::table_log::{logged_files, object_logged_files};

/// A session over the dataset at `data_dir` (a directory, or an `s3://bucket/prefix` URL
/// whose credentials and endpoint come from the `AWS_*` environment) with every table
/// registered. Tables with no data yet are registered empty, with their schema, so queries
/// over them return no rows instead of failing.
pub async fn open_dataset(data_dir: &Path) -> Result<SessionContext, EngineError> {
    let config = SessionConfig::new().with_information_schema(true);
    let ctx = SessionContext::new_with_config(config);
    crate::stream::sketch::register_sketch_functions(&ctx);
    match data_dir.to_str().filter(|s| is_object_url(s)) {
        Some(url) => register_object_tables(&ctx, url).await?,
        None => register_tables(&ctx, data_dir).await?,
    }
    Ok(ctx)
}

/// The tables of a dataset on object storage, read in place.
async fn register_object_tables(ctx: &SessionContext, url: &str) -> Result<(), EngineError> {
    let (store, prefix) = open_store(url, &BTreeMap::new())?;
    let parsed = url::Url::parse(url).map_err(|e| EngineError::Config(format!("{url}: {e}")))?;
    let bucket_url = url::Url::parse(&format!(
        "{}://{}",
        parsed.scheme(),
        parsed.host_str().unwrap_or_default()
    ))
    .map_err(|e| EngineError::Config(format!("{url}: {e}")))?;
    ctx.register_object_store(&bucket_url, store.clone());
    let mut providers: BTreeMap<Table, Arc<dyn TableProvider>> = BTreeMap::new();
    for table in Table::ALL {
        let table_prefix = prefix.clone().join(table.name());
        // Already async here: the listing is awaited, not run on a thread of its own.
        let table_url = url::Url::parse(&format!("{}/{}", url.trim_end_matches('/'), table.name()))
            .map_err(|e| EngineError::Config(format!("{url}: {e}")))?;
        let provider = if let Some(files) = object_logged_files(table_url, store.clone()).await? {
            let store_url = ObjectStoreUrl::parse(bucket_url.as_str())?;
            Arc::new(LoggedTable::new(
                table.schema(),
                store_url,
                table_prefix,
                files,
            ))
        } else if store
            .list(Some(&table_prefix))
            .try_next()
            .await
            .map_err(|e| EngineError::Config(format!("{url}: {e}")))?
            .is_some()
        {
            let bucket = bucket_url.as_str().trim_end_matches('/');
            listing_table(format!("{bucket}/{table_prefix}/"), table)?
        } else {
            empty_table(table)?
        };
        providers.insert(table, provider);
    }
    let resources = providers
        .get(&Table::Resources)
        .cloned()
        .ok_or_else(|| EngineError::NotFound("table resources".into()))?;
    for (table, provider) in providers {
        let provider = match table.names_resources() {
            true => with_resources(provider, resources.clone()).await?,
            false => provider,
        };
        ctx.register_table(table.name(), provider)?;
    }
    Ok(())
}

/// Registers the tables of the dataset at `data_dir` in `ctx`'s default schema. Each is opened
/// (its Delta log read) when a statement first names it, and stays at that version for the
/// session: a query of one table does not read the other nine logs.
pub async fn register_tables(ctx: &SessionContext, data_dir: &Path) -> Result<(), EngineError> {
    if !data_dir.is_dir() {
        return Err(EngineError::NoDataset(data_dir.display().to_string()));
    }
    let state = ctx.state();
    let defaults = &state.config_options().catalog;
    let catalog = ctx
        .catalog(&defaults.default_catalog)
        .ok_or_else(|| EngineError::NotFound(format!("catalog {}", defaults.default_catalog)))?;
    let schema = DatasetSchema {
        root: data_dir.to_path_buf(),
        opened: Table::ALL
            .iter()
            .map(|t| (t.name(), (*t, tokio::sync::OnceCell::new())))
            .collect(),
    };
    catalog.register_schema(&defaults.default_schema, Arc::new(schema))?;
    Ok(())
}

/// A table, opened when first named.
type LazyTable = (Table, tokio::sync::OnceCell<Arc<dyn TableProvider>>);

/// The dataset's tables, each opened on first use.
#[derive(Debug)]
struct DatasetSchema {
    root: PathBuf,
    opened: BTreeMap<&'static str, LazyTable>,
}

#[async_trait::async_trait]
impl SchemaProvider for DatasetSchema {
    fn table_names(&self) -> Vec<String> {
        self.opened.keys().map(|name| name.to_string()).collect()
    }

    async fn table(&self, name: &str) -> DataFusionResult<Option<Arc<dyn TableProvider>>> {
        let Some((table, opened)) = self.opened.get(name) else {
            return Ok(None);
        };
        let provider = opened
            .get_or_try_init(|| async {
                let stored = open_table(&self.root, *table).await?;
                if !table.names_resources() {
                    return Ok(stored);
                }
                let resources = Box::pin(self.table(Table::Resources.name()))
                    .await?
                    .ok_or_else(|| EngineError::NotFound("table resources".into()))?;
                with_resources(stored, resources).await
            })
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(Some(provider.clone()))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.opened.contains_key(name)
    }
}

/// `table` under `root`: through its Delta log, else every Parquet file below its directory,
/// else empty.
async fn open_table(root: &Path, table: Table) -> Result<Arc<dyn TableProvider>, EngineError> {
    let dir = root.join(table.name());
    let absolute = std::path::absolute(&dir).map_err(|e| EngineError::io(&dir, e))?;
    if let Some(files) = logged_files(&dir).await? {
        let location = object_store::path::Path::from_absolute_path(&absolute)
            .map_err(|e| EngineError::Config(format!("{}: {e}", absolute.display())))?;
        Ok(Arc::new(LoggedTable::new(
            table.schema(),
            ObjectStoreUrl::local_filesystem(),
            location,
            files,
        )))
    } else if dir.is_dir() {
        listing_table(format!("{}/", absolute.display()), table)
    } else {
        empty_table(table)
    }
}

/// How a raw table's rows meet their resources' attributes (see the file).
const RAW_RESOURCES_SQL: &str = include_str!("../../../../sql/raw_resources.sql");

/// A raw table as readers see it: its stored rows, each with its resource's attributes in
/// `resource` whether the row carries them or names them by `resource_id`.
async fn with_resources(
    stored: Arc<dyn TableProvider>,
    resources: Arc<dyn TableProvider>,
) -> Result<Arc<dyn TableProvider>, EngineError> {
    let columns = stored
        .schema()
        .fields()
        .iter()
        .map(|field| match field.name().as_str() {
            "resource" => "coalesce(stored.resource, named.resource) AS resource".to_string(),
            name => format!("stored.\"{name}\""),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = RAW_RESOURCES_SQL.replace("${columns}", &columns);
    // A context of its own to plan in: the plan holds the two tables, not their names.
    let planner = SessionContext::new();
    planner.register_table("stored", stored)?;
    planner.register_table("resources", resources)?;
    let plan = planner.sql(&sql).await?.into_unoptimized_plan();
    Ok(Arc::new(ViewTable::new(plan, Some(sql))))
}

/// Every Parquet file below `url`, with the Hive `date` partition column.
fn listing_table(url: String, table: Table) -> Result<Arc<dyn TableProvider>, EngineError> {
    let url = ListingTableUrl::parse(url)?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![("date".to_string(), DataType::Utf8)]);
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(table.schema());
    Ok(Arc::new(ListingTable::try_new(config)?))
}

/// A table with its schema (and `date`) but no rows yet.
fn empty_table(table: Table) -> Result<Arc<dyn TableProvider>, EngineError> {
    let mut fields: Vec<Field> = table
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("date", DataType::Utf8, false));
    let schema = Arc::new(Schema::new(fields));
    let empty = RecordBatch::new_empty(schema.clone());
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![empty]])?))
}

/// Runs one read-only statement: DDL, DML and `COPY` are refused, so `burnrate query` never
/// changes the dataset it reads.
pub async fn run_sql(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, EngineError> {
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    // What `SessionContext::sql_with_options` does, with the statement checked before it is
    // planned.
    let state = ctx.state();
    let dialect = state.config().options().sql_parser.dialect;
    let statement = state.sql_to_statement(sql, &dialect)?;
    check_expression_depth(&statement)?;
    let plan = state.statement_to_plan(statement).await?;
    options.verify_plan(&plan)?;
    let frame = ctx.execute_logical_plan(plan).await?;
    Ok(frame.collect().await?)
}

/// The deepest expression nesting a query may have. DataFusion walks expression trees
/// recursively in places its stack protection does not cover (`SchemaDisplay` when it names a
/// column, `BinaryExpr::evaluate` when it computes one), so a long chain of
/// operators, which nests one level per operator (`a + b + c` is `(a + b) + c`), overflowed the
/// stack and aborted the process. Measured 2026-12-03, release build: 3,000 `cost_usd + ...`
/// terms on a runtime worker (2 MiB stack then), 20,000 `1 + ...` on the main thread (8 MiB);
/// debug build: 2,000 `1 + ...`. A thousand levels run in both builds (the CLI's workers now
/// have 8 MiB too), and are more than a query written or generated for this dataset needs.
/// (Parentheses and subqueries are bounded by the parser's own recursion limit.)
pub const MAX_EXPRESSION_DEPTH: usize = 1_000;

/// Refuses `statement` when its expressions nest deeper than [`MAX_EXPRESSION_DEPTH`]. The walk
/// stops at that depth, so it cannot overflow the stack itself.
fn check_expression_depth(
    statement: &datafusion::sql::parser::Statement,
) -> Result<(), EngineError> {
    use std::ops::ControlFlow;

    use datafusion::sql::parser::Statement;
    use datafusion::sql::sqlparser::ast::{Expr, Visit, Visitor};

    struct Depth(usize);
    impl Visitor for Depth {
        type Break = ();
        fn pre_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
            self.0 += 1;
            if self.0 > MAX_EXPRESSION_DEPTH {
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
        fn post_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
            self.0 -= 1;
            ControlFlow::Continue(())
        }
    }
    let mut statement = statement;
    while let Statement::Explain(explain) = statement {
        statement = &explain.statement;
    }
    let Statement::Statement(statement) = statement else {
        // DDL and COPY, which `run_sql` refuses anyway.
        return Ok(());
    };
    if statement.visit(&mut Depth(0)).is_break() {
        return Err(EngineError::DataFusion(DataFusionError::Plan(format!(
            "the query nests expressions more than {MAX_EXPRESSION_DEPTH} deep (each operator in a chain such as `a + b + c` is a level); split it, for example into a subquery or a CTE per part"
        ))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::arrow::util::display::array_value_to_string;

    use super::*;
    use crate::sink::dead_letters::{DeadLetter, dead_letter_batch};
    use crate::sink::parquet_sink::ParquetSink;
    use crate::sink::table_buffer::decoded_client_records;

    /// 2026-01-01T00:00:00Z.
    const NEW_YEAR: i64 = 1_767_225_600_000_000_000;

    #[tokio::test]
    async fn a_statement_opens_only_the_tables_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let letter = DeadLetter {
            received_at_nanos: 1_767_225_600_000_000_000,
            origin: "test".into(),
            topic: None,
            partition: None,
            offset: None,
            error: "bad".into(),
            payload: vec![1, 2, 3],
        };
        let batch = dead_letter_batch(&[letter]).unwrap();
        ParquetSink::new(root)
            .write_segment(
                "seg-a",
                &BTreeMap::from([(Table::DeadLetters, vec![batch])]),
            )
            .unwrap();
        // Another table whose log cannot be read.
        let broken = root.join("anomalies/_delta_log");
        std::fs::create_dir_all(&broken).unwrap();
        std::fs::write(broken.join("00000000000000000000.json"), "not a commit").unwrap();

        let ctx = open_dataset(root).await.unwrap();
        let batches = run_sql(&ctx, "SELECT count(*) FROM dead_letters")
            .await
            .unwrap();
        assert_eq!(batches[0].column(0).as_primitive::<Int64Type>().value(0), 1);
        let error = run_sql(&ctx, "SELECT count(*) FROM anomalies")
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("anomalies"), "{error}");
        let names = ctx
            .catalog("datafusion")
            .unwrap()
            .schema("public")
            .unwrap()
            .table_names();
        assert_eq!(names.len(), Table::ALL.len(), "{names:?}");
    }

    /// A raw row reads with its resource's attributes whether it names them by `resource_id`
    /// (as rows are written now) or carries them in `resource` (as rows written before the
    /// `resources` table did), and a resource flushed in several files does not repeat a row.
    #[tokio::test]
    async fn a_raw_row_reads_with_its_resource_whether_it_names_it_or_carries_it() {
        use datafusion::arrow::array::{MapBuilder, MapFieldNames, StringBuilder, UInt64Array};

        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let sink = ParquetSink::new(root);
        let client = [("service.name", "claude-code"), ("team", "web")];
        let new = decoded_client_records(&client, NEW_YEAR, &["new 1", "new 2"]);
        sink.write_segment("seg-a", &new).unwrap();
        let again = decoded_client_records(&client, NEW_YEAR, &["again 1", "again 2"]);
        sink.write_segment("seg-b", &again).unwrap();
        assert_eq!(new[&Table::Resources][0].num_rows(), 1);

        // A row from before: its own attributes, no id.
        let batch = &new[&Table::LogRecords][0];
        let names = MapFieldNames {
            entry: "entries".into(),
            key: "keys".into(),
            value: "values".into(),
        };
        let mut map = MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new());
        for _ in 0..batch.num_rows() {
            map.keys().append_value("service.name");
            map.values().append_value("an-older-client");
            map.append(true).unwrap();
        }
        let mut columns = batch.columns().to_vec();
        let schema = batch.schema();
        columns[schema.index_of("resource").unwrap()] = Arc::new(map.finish());
        columns[schema.index_of("resource_id").unwrap()] =
            Arc::new(UInt64Array::new_null(batch.num_rows()));
        let old = RecordBatch::try_new(schema, columns).unwrap();
        sink.write_segment("seg-old", &BTreeMap::from([(Table::LogRecords, vec![old])]))
            .unwrap();

        let ctx = open_dataset(root).await.unwrap();
        let sql = "SELECT count(*) AS rows, resource['service.name'] AS service, \
                   resource['team'] AS team FROM log_records GROUP BY 2, 3 ORDER BY 2";
        let batches = run_sql(&ctx, sql).await.unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        let expected = "\
+------+-----------------+------+
| rows | service         | team |
+------+-----------------+------+
| 2    | an-older-client |      |
| 4    | claude-code     | web  |
+------+-----------------+------+";
        assert_eq!(text, expected);
        // The stored rows keep only the id: `resources` holds the attributes, once a file.
        let resources = run_sql(
            &ctx,
            "SELECT count(*), count(DISTINCT resource_id) FROM resources",
        )
        .await
        .unwrap();
        assert_eq!(
            resources[0].column(0).as_primitive::<Int64Type>().value(0),
            2
        );
        assert_eq!(
            resources[0].column(1).as_primitive::<Int64Type>().value(0),
            1
        );
    }

    /// `burnrate query` takes every SQL function of DataFusion's defaults, the hashes and
    /// encodings a user pseudonymises ids with among them (burnrate turns DataFusion's default
    /// features off and names the ones it keeps).
    #[tokio::test]
    async fn a_query_has_every_default_function() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = open_dataset(dir.path()).await.unwrap();
        let sql = "SELECT md5('ada'), encode(sha256('ada'), 'hex'), \
                   regexp_like('claude-opus-4-5', '^claude'), date_trunc('day', now()), \
                   array_length(make_array(1, 2)), upper('a')";
        let batches = run_sql(&ctx, sql).await.unwrap();
        let md5 = array_value_to_string(batches[0].column(0), 0).unwrap();
        assert_eq!(md5, "8c8d357b5e872bbacd45197626bd5759");
    }
}
