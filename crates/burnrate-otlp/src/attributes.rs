//! Typed reads of OTLP attributes. Claude Code sends some numbers as strings and others as
//! ints; every reader accepts both and reports what it could not parse instead of guessing.

use crate::view::{AnyValue, KeyValue, Value};

/// Attributes of one record with its resource behind it: a key is looked up on the record
/// first, then on the resource.
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    pub record: &'a [KeyValue<'a>],
    pub resource: &'a [KeyValue<'a>],
}

impl<'a> Scope<'a> {
    pub fn get<'k>(&self, keys: &'k [String]) -> Option<(&'k str, &'a Value<'a>)> {
        keys.iter().find_map(|key| {
            find(self.record, key)
                .or_else(|| find(self.resource, key))
                .map(|value| (key.as_str(), value))
        })
    }

    pub fn get_record<'k>(&self, keys: &'k [String]) -> Option<(&'k str, &'a Value<'a>)> {
        keys.iter()
            .find_map(|key| find(self.record, key).map(|value| (key.as_str(), value)))
    }

    pub fn str(&self, keys: &[String]) -> Option<&'a str> {
        match self.get(keys)?.1 {
            Value::StringValue(s) => Some(s),
            _ => None,
        }
    }
}

pub fn find<'a>(attributes: &'a [KeyValue<'a>], key: &str) -> Option<&'a Value<'a>> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

/// Collects the first problem of a row, and how many there were.
#[derive(Debug, Default)]
pub struct RowErrors {
    pub count: u32,
    pub first: Option<String>,
}

impl RowErrors {
    pub fn push(&mut self, message: String) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(message);
        }
    }

    /// Reads a value with `parse`, recording a failure as `key: reason`.
    pub fn read<T>(
        &mut self,
        found: Option<(&str, &Value)>,
        parse: impl Fn(&Value) -> Result<T, String>,
    ) -> Option<T> {
        let (key, value) = found?;
        match parse(value) {
            Ok(v) => Some(v),
            Err(reason) => {
                self.push(format!("{key}: {reason}"));
                None
            }
        }
    }
}

/// A token count: a non-negative integer, as an int, an integral double or a decimal string.
pub fn count(value: &Value) -> Result<i64, String> {
    let n = integer(value)?;
    if n < 0 {
        return Err(format!("negative count {n}"));
    }
    Ok(n)
}

/// More tokens than any model's context window holds in one call: a count past it is a broken
/// or hostile client, not usage, and would book absurd spend (2^63 tokens cost $4.6e13).
pub const MAX_TOKENS_PER_CALL: i64 = 10_000_000;

/// A token count of one model call: a count no larger than [`MAX_TOKENS_PER_CALL`].
pub fn tokens(value: &Value) -> Result<i64, String> {
    let n = count(value)?;
    if n > MAX_TOKENS_PER_CALL {
        return Err(format!(
            "{n} tokens in one call is more than any context window ({MAX_TOKENS_PER_CALL})"
        ));
    }
    Ok(n)
}

/// The most one call can plausibly cost, in US dollars: ten million tokens at any list price
/// stays far below it.
pub const MAX_COST_PER_CALL_USD: f64 = 10_000.0;

/// A reported cost of one call: non-negative and no more than [`MAX_COST_PER_CALL_USD`].
pub fn call_cost(value: &Value) -> Result<f64, String> {
    let usd = non_negative(value)?;
    if usd > MAX_COST_PER_CALL_USD {
        return Err(format!(
            "a cost of {usd} USD for one call is not plausible (over {MAX_COST_PER_CALL_USD})"
        ));
    }
    Ok(usd)
}

pub fn integer(value: &Value) -> Result<i64, String> {
    match value {
        Value::IntValue(n) => Ok(*n),
        Value::DoubleValue(d) => integral(*d),
        Value::StringValue(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .or_else(|_| {
                    s.parse::<f64>()
                        .map_err(|_| ())
                        .and_then(|d| integral(d).map_err(|_| ()))
                })
                .map_err(|_| format!("{s:?} is not an integer"))
        }
        other => Err(format!("{} is not an integer", kind(other))),
    }
}

fn integral(d: f64) -> Result<i64, String> {
    if d.is_finite() && d.fract() == 0.0 && d.abs() < 9.0e15 {
        Ok(d as i64)
    } else {
        Err(format!("{d} is not an integer"))
    }
}

/// A finite number.
pub fn number(value: &Value) -> Result<f64, String> {
    let d = match value {
        Value::IntValue(n) => *n as f64,
        Value::DoubleValue(d) => *d,
        Value::StringValue(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("{s:?} is not a number"))?,
        other => return Err(format!("{} is not a number", kind(other))),
    };
    if d.is_finite() {
        Ok(d)
    } else {
        Err(format!("{d} is not a finite number"))
    }
}

/// A finite number that is not negative (durations, costs).
pub fn non_negative(value: &Value) -> Result<f64, String> {
    let d = number(value)?;
    if d < 0.0 {
        return Err(format!("negative value {d}"));
    }
    Ok(d)
}

pub fn boolean(value: &Value) -> Result<bool, String> {
    match value {
        Value::BoolValue(b) => Ok(*b),
        Value::IntValue(0) => Ok(false),
        Value::IntValue(1) => Ok(true),
        Value::StringValue(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(format!("{s:?} is not a boolean")),
        },
        other => Err(format!("{} is not a boolean", kind(other))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::StringValue(_) => "a string",
        Value::BoolValue(_) => "a boolean",
        Value::IntValue(_) => "an int",
        Value::DoubleValue(_) => "a double",
        Value::ArrayValue(_) => "an array",
        Value::KvlistValue(_) => "a key-value list",
        Value::BytesValue(_) => "bytes",
        Value::StringValueStrindex(_) => "a string-table index",
    }
}

/// An attribute value as text: strings verbatim, scalars in their usual spelling, arrays and
/// maps as JSON.
pub fn render(value: &Value) -> String {
    match value {
        Value::StringValue(s) => s.to_string(),
        _ => {
            let mut out = String::new();
            render_into(value, &mut out);
            out
        }
    }
}

pub fn render_any(value: Option<&AnyValue>) -> Option<String> {
    value.and_then(|v| v.value.as_ref()).map(render)
}

/// [`render`], appended to `out`.
pub fn render_into(value: &Value, out: &mut String) {
    use std::fmt::Write;
    match value {
        Value::StringValue(s) => out.push_str(s),
        Value::BoolValue(b) => out.push_str(if *b { "true" } else { "false" }),
        // Token counts and durations are most of the non-string values: itoa, not `fmt`.
        Value::IntValue(n) => out.push_str(itoa::Buffer::new().format(*n)),
        Value::DoubleValue(d) => {
            let _ = write!(out, "{d}");
        }
        Value::BytesValue(b) => {
            for byte in b.iter() {
                let _ = write!(out, "{byte:02x}");
            }
        }
        Value::StringValueStrindex(i) => {
            let _ = write!(out, "#{i}");
        }
        Value::ArrayValue(_) | Value::KvlistValue(_) => {
            out.push_str(&to_json(value).to_string());
        }
    }
}

fn to_json(value: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        Value::StringValue(s) => J::String(s.to_string()),
        Value::BoolValue(b) => J::Bool(*b),
        Value::IntValue(n) => J::from(*n),
        Value::DoubleValue(d) => serde_json::Number::from_f64(*d).map_or(J::Null, J::Number),
        Value::BytesValue(_) | Value::StringValueStrindex(_) => J::String(render(value)),
        Value::ArrayValue(array) => J::Array(
            array
                .values
                .iter()
                .map(|v| v.value.as_ref().map_or(J::Null, to_json))
                .collect(),
        ),
        Value::KvlistValue(list) => J::Object(
            list.values
                .iter()
                .map(|kv| {
                    let v = kv.value.as_ref().and_then(|v| v.value.as_ref());
                    (kv.key.to_string(), v.map_or(J::Null, to_json))
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value<'_> {
        Value::StringValue(v)
    }

    #[test]
    fn counts_accept_claude_codes_spellings_and_reject_the_rest() {
        assert_eq!(count(&Value::IntValue(42)), Ok(42));
        assert_eq!(count(&s(" 42 ")), Ok(42));
        assert_eq!(count(&s("42.0")), Ok(42));
        assert_eq!(count(&Value::DoubleValue(7.0)), Ok(7));
        assert!(
            count(&Value::IntValue(-1))
                .unwrap_err()
                .contains("negative")
        );
        assert!(count(&Value::DoubleValue(f64::NAN)).is_err());
        assert!(count(&s("NaN")).is_err());
        assert!(count(&s("12abc")).is_err());
        assert!(count(&Value::DoubleValue(1.5)).is_err());
        assert!(count(&Value::BoolValue(true)).is_err());
    }

    #[test]
    fn numbers_and_booleans() {
        assert_eq!(number(&s("0.25")), Ok(0.25));
        assert!(number(&s("inf")).is_err());
        assert!(non_negative(&Value::DoubleValue(-0.5)).is_err());
        assert_eq!(boolean(&s("true")), Ok(true));
        assert_eq!(boolean(&s("False")), Ok(false));
        assert!(boolean(&s("maybe")).is_err());
    }

    #[test]
    fn renders_nested_values_as_json() {
        use crate::view::ArrayValue;
        let array = Value::ArrayValue(ArrayValue {
            values: vec![
                AnyValue {
                    value: Some(s("end_turn")),
                },
                AnyValue {
                    value: Some(Value::IntValue(3)),
                },
            ],
        });
        assert_eq!(render(&array), r#"["end_turn",3]"#);
        assert_eq!(render(&Value::DoubleValue(0.5)), "0.5");
    }
}
