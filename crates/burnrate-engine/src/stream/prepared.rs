//! SQL planned once and run on new rows every time: the window statements, which run on every
//! flush.
//!
//! Planning a statement (parsing, analysing, optimising, each on a new session) was a third of
//! the windows' thread in a profile of the Kafka bench, as much as running the statements on a
//! flush's rows. A [`PreparedSql`] keeps one session and each statement's optimised logical plan,
//! and runs a plan again by pointing its table scans at the new rows: a run makes only the
//! physical plan.
//!
//! A statement calling a function whose result is not fixed by its arguments (`now()`,
//! `random()`) is planned every run: the optimiser folds `now()` into a constant.
//!
//! Owns: the session and the plans. Must not know what the statements compute.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::{MemTable, provider_as_source};
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::physical_plan::collect;
use datafusion::prelude::SessionContext;

use crate::EngineError;

/// A session whose statements are planned once, over tables whose rows each run supplies.
pub struct PreparedSql {
    ctx: SessionContext,
    /// The tables statements read, by name: registered empty, bound to rows per run.
    tables: BTreeMap<String, SchemaRef>,
    /// Each statement's optimised plan, by its text. `None`: planned every run (see the module
    /// doc).
    plans: Mutex<HashMap<String, Option<LogicalPlan>>>,
}

impl std::fmt::Debug for PreparedSql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedSql")
            .field("tables", &self.tables.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl PreparedSql {
    /// A session `ctx` (with any functions the statements call) over `tables`.
    pub fn new(ctx: SessionContext, tables: &[(&str, SchemaRef)]) -> Result<Self, EngineError> {
        for (name, schema) in tables {
            ctx.register_table(
                *name,
                Arc::new(MemTable::try_new(schema.clone(), vec![Vec::new()])?),
            )?;
        }
        Ok(PreparedSql {
            ctx,
            tables: tables
                .iter()
                .map(|(name, schema)| (name.to_string(), schema.clone()))
                .collect(),
            plans: Mutex::new(HashMap::new()),
        })
    }

    /// Runs `sql` over `inputs` (rows by table name; a table left out is empty).
    pub async fn run(
        &self,
        sql: &str,
        inputs: &[(&str, Vec<RecordBatch>)],
    ) -> Result<Vec<RecordBatch>, EngineError> {
        let state = self.ctx.state();
        let cached = self.lock().get(sql).cloned();
        let plan = match cached {
            Some(Some(plan)) => plan,
            Some(None) => state.optimize(&state.create_logical_plan(sql).await?)?,
            None => {
                let plan = state.create_logical_plan(sql).await?;
                let fixed = !calls_unfixed_function(&plan)?;
                let plan = state.optimize(&plan)?;
                self.lock()
                    .insert(sql.to_string(), fixed.then(|| plan.clone()));
                plan
            }
        };
        let bound = plan
            .transform_up_with_subqueries(|node| self.bind(node, inputs))?
            .data;
        let physical = state
            .query_planner()
            .create_physical_plan(&bound, &state)
            .await?;
        Ok(collect(physical, self.ctx.task_ctx()).await?)
    }

    /// `node` reading its table's rows in `inputs`, if it scans one of the session's tables.
    fn bind(
        &self,
        node: LogicalPlan,
        inputs: &[(&str, Vec<RecordBatch>)],
    ) -> datafusion::common::Result<Transformed<LogicalPlan>> {
        let LogicalPlan::TableScan(mut scan) = node else {
            return Ok(Transformed::no(node));
        };
        let name = scan.table_name.table();
        let Some(schema) = self.tables.get(name) else {
            return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
        };
        let rows = inputs
            .iter()
            .find(|(table, _)| *table == name)
            .map(|(_, rows)| rows.clone())
            .unwrap_or_default();
        scan.source = provider_as_source(Arc::new(MemTable::try_new(schema.clone(), vec![rows])?));
        Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<LogicalPlan>>> {
        // The map is only read and inserted into; a panic elsewhere leaves it whole.
        self.plans.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether `plan` calls a function whose result is not fixed by its arguments.
fn calls_unfixed_function(plan: &LogicalPlan) -> datafusion::common::Result<bool> {
    let mut found = false;
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::ScalarFunction(call) = e
                    && call.func.signature().volatility != Volatility::Immutable
                {
                    found = true;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    fn numbers() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]))
    }

    fn rows(values: &[i64]) -> Vec<RecordBatch> {
        vec![
            RecordBatch::try_new(numbers(), vec![Arc::new(Int64Array::from(values.to_vec()))])
                .unwrap(),
        ]
    }

    fn sum(batches: &[RecordBatch]) -> Vec<Option<i64>> {
        batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .iter()
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn run(
        prepared: &PreparedSql,
        sql: &str,
        inputs: &[(&str, Vec<RecordBatch>)],
    ) -> Vec<RecordBatch> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(prepared.run(sql, inputs))
            .unwrap()
    }

    #[test]
    fn a_plan_made_once_reads_each_runs_rows() {
        let prepared =
            PreparedSql::new(SessionContext::new(), &[("a", numbers()), ("b", numbers())]).unwrap();
        let sql = "SELECT sum(n) FROM (SELECT n FROM a WHERE n > 1 UNION ALL SELECT n FROM b)";
        assert_eq!(
            sum(&run(
                &prepared,
                sql,
                &[("a", rows(&[1, 2, 3])), ("b", rows(&[10]))]
            )),
            [Some(15)]
        );
        assert_eq!(
            sum(&run(&prepared, sql, &[("a", rows(&[5]))])),
            [Some(5)],
            "b left out is empty"
        );
        assert_eq!(sum(&run(&prepared, sql, &[])), [None]);
        assert!(prepared.lock()[sql].is_some(), "the plan was kept");
        // A table scanned twice reads the same rows twice.
        let twice = "SELECT sum(x.n) FROM a x JOIN a y ON x.n = y.n";
        assert_eq!(
            sum(&run(&prepared, twice, &[("a", rows(&[2, 3]))])),
            [Some(5)]
        );
    }

    #[test]
    fn a_statement_calling_now_is_planned_every_run() {
        let prepared = PreparedSql::new(SessionContext::new(), &[("a", numbers())]).unwrap();
        let sql = "SELECT now() AS t FROM a";
        let at = |batches: Vec<RecordBatch>| {
            batches[0]
                .column(0)
                .as_any()
                .downcast_ref::<TimestampNanosecondArray>()
                .unwrap()
                .value(0)
        };
        let first = at(run(&prepared, sql, &[("a", rows(&[1]))]));
        std::thread::sleep(std::time::Duration::from_millis(5));
        let second = at(run(&prepared, sql, &[("a", rows(&[1]))]));
        assert!(second > first, "now() was folded into the kept plan");
        assert!(prepared.lock()[sql].is_none());
    }
}
