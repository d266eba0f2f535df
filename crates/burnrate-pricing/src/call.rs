//! Which cost a model call gets: the table's price where the table knows the model (and its
//! speed), otherwise the cost the client reported, and only when neither exists no cost at all.
//! A cost tool must never count a call it cannot price as free.

use crate::{PriceTable, TokenUsage};

/// A table price and a reported cost differ when they are apart by more than this share of the
/// reported cost ...
pub const MISMATCH_RELATIVE: f64 = 0.01;
/// ... and by more than this many dollars (so that rounding of sub-cent calls is no mismatch).
pub const MISMATCH_ABSOLUTE_USD: f64 = 0.000_001;

/// Where a call's `cost_usd` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CostSource {
    /// The price table knows the model (at the call's speed).
    PriceTable,
    /// The table has no price; the cost is what the client reported.
    Reported,
    /// Neither a price nor a reported cost: `cost_usd` is NULL.
    None,
}

impl CostSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CostSource::PriceTable => "price_table",
            CostSource::Reported => "reported",
            CostSource::None => "none",
        }
    }
}

/// What a client said about one model call, as far as its cost goes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Call<'a> {
    pub model: Option<&'a str>,
    pub usage: TokenUsage,
    /// `normal` (or absent) or `fast`.
    pub speed: Option<&'a str>,
    /// The cost the client itself reported, when it did.
    pub reported_usd: Option<f64>,
}

/// The cost a call is booked at, and how it was decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallCost {
    pub cost_usd: Option<f64>,
    pub source: CostSource,
    /// `Some(true)` when the table's price and the reported cost disagree beyond
    /// [`MISMATCH_RELATIVE`] and [`MISMATCH_ABSOLUTE_USD`]: a stale price table shows itself
    /// here. `None` when there were not both to compare.
    pub mismatch: Option<bool>,
}

impl PriceTable {
    /// The cost of `call`: the table's price when it has one, else the reported cost.
    pub fn price_call(&self, call: &Call<'_>) -> CallCost {
        let table_usd = call.model.and_then(|model| {
            self.resolve(model)
                .and_then(|(_, price)| price.cost_usd_at(&call.usage, call.speed))
        });
        let reported = call.reported_usd.filter(|v| v.is_finite() && *v >= 0.0);
        match (table_usd, reported) {
            (Some(table), reported) => CallCost {
                cost_usd: Some(table),
                source: CostSource::PriceTable,
                mismatch: reported.map(|reported| disagree(table, reported)),
            },
            (None, Some(reported)) => CallCost {
                cost_usd: Some(reported),
                source: CostSource::Reported,
                mismatch: None,
            },
            (None, None) => CallCost {
                cost_usd: None,
                source: CostSource::None,
                mismatch: None,
            },
        }
    }
}

fn disagree(table: f64, reported: f64) -> bool {
    let gap = (table - reported).abs();
    gap > MISMATCH_ABSOLUTE_USD && gap > MISMATCH_RELATIVE * reported.abs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, output: u64) -> TokenUsage {
        TokenUsage {
            input,
            output,
            ..TokenUsage::default()
        }
    }

    #[test]
    fn the_table_wins_the_report_fills_in_and_none_is_only_for_neither() {
        let table = PriceTable::embedded();
        let known = Call {
            model: Some("claude-sonnet-4-5"),
            usage: usage(100_000, 0),
            speed: Some("normal"),
            reported_usd: Some(0.3),
        };
        assert_eq!(
            table.price_call(&known),
            CallCost {
                cost_usd: Some(0.3),
                source: CostSource::PriceTable,
                mismatch: Some(false)
            }
        );
        let unknown = Call {
            model: Some("claude-unreleased-9"),
            ..known
        };
        assert_eq!(
            table.price_call(&unknown),
            CallCost {
                cost_usd: Some(0.3),
                source: CostSource::Reported,
                mismatch: None
            }
        );
        let neither = Call {
            reported_usd: None,
            ..unknown
        };
        assert_eq!(table.price_call(&neither).source, CostSource::None);
        assert_eq!(table.price_call(&neither).cost_usd, None);
        let no_model = Call {
            model: None,
            ..known
        };
        assert_eq!(table.price_call(&no_model).source, CostSource::Reported);
    }

    #[test]
    fn a_mismatch_needs_both_one_percent_and_a_millionth_of_a_dollar() {
        let table = PriceTable::embedded();
        let call = |tokens: u64, reported: f64| {
            table
                .price_call(&Call {
                    model: Some("claude-sonnet-4-5"),
                    usage: usage(tokens, 0),
                    speed: None,
                    reported_usd: Some(reported),
                })
                .mismatch
        };
        // $0.30 by the table.
        assert_eq!(call(100_000, 0.302), Some(false), "0.7% apart");
        assert_eq!(call(100_000, 0.305), Some(true), "1.6% apart");
        // $0.000003 by the table: 17% apart, but half a millionth of a dollar.
        assert_eq!(call(1, 0.000_002_5), Some(false));
        assert_eq!(call(10, 0.000_01), Some(true), "$0.00003 vs $0.00001");
    }

    #[test]
    fn fast_calls_use_the_fast_multiplier_or_fall_back_to_the_report() {
        let table = PriceTable::parse_toml(
            "[models.m]\ninput = 1.0\noutput = 1.0\ncache_write_5m = 1.0\ncache_read = 1.0\nfast_multiplier = 6.0\n\
             [models.n]\ninput = 1.0\noutput = 1.0\ncache_write_5m = 1.0\ncache_read = 1.0\n",
            "p.toml",
        )
        .unwrap();
        let fast = |model: &'static str| {
            table.price_call(&Call {
                model: Some(model),
                usage: usage(1_000_000, 0),
                speed: Some("fast"),
                reported_usd: Some(2.5),
            })
        };
        assert_eq!(fast("m").cost_usd, Some(6.0));
        assert_eq!(fast("m").source, CostSource::PriceTable);
        assert_eq!(fast("n").cost_usd, Some(2.5), "no fast price: the report");
        assert_eq!(fast("n").source, CostSource::Reported);
    }

    #[test]
    fn a_reported_cost_that_is_not_a_cost_is_ignored() {
        let table = PriceTable::embedded();
        for bad in [f64::NAN, -1.0, f64::INFINITY] {
            let cost = table.price_call(&Call {
                model: Some("claude-unreleased-9"),
                usage: usage(1, 1),
                speed: None,
                reported_usd: Some(bad),
            });
            assert_eq!(cost.source, CostSource::None, "{bad}");
        }
    }
}
