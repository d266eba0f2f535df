//! Query results for people and scripts: a terminal table, CSV, or JSON lines.

use std::io::Write;

use comfy_table::{Cell, CellAlignment, Table as Grid, presets::UTF8_FULL_CONDENSED};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde::{Deserialize, Serialize};

use crate::EngineError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultFormat {
    #[default]
    Table,
    Csv,
    Json,
}

pub fn write_results(
    batches: &[RecordBatch],
    format: ResultFormat,
    out: &mut dyn Write,
) -> Result<(), EngineError> {
    match format {
        ResultFormat::Table => write_table(batches, out),
        ResultFormat::Csv => {
            let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(out);
            for batch in batches {
                writer.write(batch)?;
            }
            Ok(())
        }
        ResultFormat::Json => {
            // Every column is a key of every object, null or not: scripts read fixed keys.
            let mut writer = datafusion::arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, datafusion::arrow::json::writer::LineDelimited>(out);
            for batch in batches {
                writer.write(batch)?;
            }
            writer.finish()?;
            Ok(())
        }
    }
}

fn write_table(batches: &[RecordBatch], out: &mut dyn Write) -> Result<(), EngineError> {
    let Some(first) = batches.first() else {
        writeln!(out, "(no rows)").map_err(EngineError::Output)?;
        return Ok(());
    };
    let schema = first.schema();
    let mut grid = Grid::new();
    grid.load_style(UTF8_FULL_CONDENSED);
    grid.set_header(schema.fields().iter().map(|f| Cell::new(f.name())));
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = 0;
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            rows += 1;
            grid.add_row(formatters.iter().zip(schema.fields()).map(|(f, field)| {
                let cell = Cell::new(f.value(row).to_string());
                if is_numeric(field.data_type()) {
                    cell.set_alignment(CellAlignment::Right)
                } else {
                    cell
                }
            }));
        }
    }
    writeln!(out, "{grid}").map_err(EngineError::Output)?;
    writeln!(out, "{rows} row{}", if rows == 1 { "" } else { "s" }).map_err(EngineError::Output)?;
    Ok(())
}

fn is_numeric(data_type: &DataType) -> bool {
    data_type.is_numeric()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Float64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn json_lines_keep_null_columns_as_explicit_nulls() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("model", DataType::Utf8, true),
            Field::new("cost_usd", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("claude-x"), None])),
                Arc::new(Float64Array::from(vec![None, Some(1.5)])),
            ],
        )
        .unwrap();
        let mut out = Vec::new();
        write_results(&[batch], ResultFormat::Json, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"model\":\"claude-x\",\"cost_usd\":null}\n{\"model\":null,\"cost_usd\":1.5}\n"
        );
    }
}
