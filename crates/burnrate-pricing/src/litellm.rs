//! LiteLLM's `model_prices_and_context_window.json`, the price file ccusage and LiteLLM users
//! already maintain: one object per model id, prices in USD per token.
//!
//! Read: `input_cost_per_token`, `output_cost_per_token`, `cache_read_input_token_cost`,
//! `cache_creation_input_token_cost` (5-minute writes), `cache_creation_input_token_cost_above_1hr`,
//! the `*_above_<N>k_tokens` long-context tier, and `provider_specific_entry.fast` (the fast-mode
//! multiplier). Entries without both an input and an output price (images, audio, `sample_spec`)
//! are skipped. A missing cache price takes Anthropic's multiples of the input price (reads 0.1x,
//! 5-minute writes 1.25x, 1-hour writes 2x).

use serde_json::{Map, Value};

use crate::{LongContext, ModelPrice, PriceError, PriceTable, Rates, permille, strip_decorations};

/// Picodollars in one dollar: a per-token USD price times this is picodollars per token.
const PICO_PER_USD: f64 = 1e12;

pub(crate) fn parse(value: &Value, origin: &str) -> Result<PriceTable, PriceError> {
    let Some(entries) = value.as_object() else {
        return Err(PriceError::Json {
            path: origin.to_string(),
            message: "a price file is a JSON object".into(),
        });
    };
    let mut table = PriceTable::default();
    // Names already taken, and whether by a first-party Anthropic entry, which wins over the
    // Bedrock, Vertex and reseller copies of the same model.
    let mut first_party = std::collections::BTreeMap::<String, bool>::new();
    for (key, entry) in entries {
        let Some(entry) = entry.as_object() else {
            continue;
        };
        if key == "sample_spec" {
            continue;
        }
        let invalid = |message: String| PriceError::Invalid {
            path: origin.to_string(),
            model: key.clone(),
            message,
        };
        let Some(price) = model_price(entry).map_err(invalid)? else {
            continue;
        };
        let is_first_party = entry
            .get("litellm_provider")
            .and_then(Value::as_str)
            .is_some_and(|p| p == "anthropic");
        for name in names(key) {
            let replace = match first_party.get(&name) {
                None => true,
                Some(taken_by_first_party) => is_first_party && !taken_by_first_party,
            };
            if replace {
                first_party.insert(name.clone(), is_first_party);
                table.insert(name, price.clone());
            }
        }
    }
    Ok(table)
}

/// The ids a LiteLLM key answers to: itself, and without its `provider/` path and decorations
/// (`anthropic/claude-x`, `vertex_ai/claude-x@20250929`, `claude-x-20250929` all price `claude-x`).
fn names(key: &str) -> Vec<String> {
    let lowered = key.trim().to_ascii_lowercase();
    let last = lowered.rsplit('/').next().unwrap_or(&lowered).to_string();
    let bare = strip_decorations(strip_decorations(&last)).to_string();
    let mut names = vec![lowered];
    for name in [last, bare] {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

fn model_price(entry: &Map<String, Value>) -> Result<Option<ModelPrice>, String> {
    let (Some(input), Some(output)) = (
        price(entry, "input_cost_per_token")?,
        price(entry, "output_cost_per_token")?,
    ) else {
        return Ok(None);
    };
    let base = rates(entry, "", input, output)?;
    let long_context = match long_context_threshold(entry) {
        Some((threshold_tokens, suffix)) => {
            let input_above =
                price(entry, &format!("input_cost_per_token{suffix}"))?.unwrap_or(input);
            let output_above =
                price(entry, &format!("output_cost_per_token{suffix}"))?.unwrap_or(output);
            Some(LongContext {
                threshold_tokens,
                rates: rates(entry, &suffix, input_above, output_above)?,
            })
        }
        None => None,
    };
    let fast_permille = match entry
        .get("provider_specific_entry")
        .and_then(|p| p.get("fast"))
    {
        Some(value) => {
            let multiplier = value
                .as_f64()
                .ok_or_else(|| format!("provider_specific_entry.fast is not a number: {value}"))?;
            Some(permille(multiplier)?)
        }
        None => None,
    };
    Ok(Some(ModelPrice {
        base,
        long_context,
        fast_permille,
    }))
}

/// The rates of one tier (`suffix` is `""` or `_above_200k_tokens`), in picodollars per token.
fn rates(
    entry: &Map<String, Value>,
    suffix: &str,
    input: u64,
    output: u64,
) -> Result<Rates, String> {
    let times = |rate: u64, numerator: u64, denominator: u64| rate * numerator / denominator;
    Ok(Rates {
        input,
        output,
        cache_read: price(entry, &format!("cache_read_input_token_cost{suffix}"))?
            .unwrap_or(times(input, 1, 10)),
        cache_write_5m: price(entry, &format!("cache_creation_input_token_cost{suffix}"))?
            .unwrap_or(times(input, 5, 4)),
        cache_write_1h: price(
            entry,
            &format!("cache_creation_input_token_cost_above_1hr{suffix}"),
        )?
        .unwrap_or(times(input, 2, 1)),
    })
}

/// The long-context tier's threshold and key suffix, from the first `input_cost_per_token_above_<N>k_tokens`.
fn long_context_threshold(entry: &Map<String, Value>) -> Option<(u64, String)> {
    entry.keys().find_map(|key| {
        let rest = key.strip_prefix("input_cost_per_token_above_")?;
        let thousands: u64 = rest.strip_suffix("k_tokens")?.parse().ok()?;
        Some((thousands * 1000, format!("_above_{thousands}k_tokens")))
    })
}

/// A per-token USD price as picodollars per token; `None` when the key is absent or null.
fn price(entry: &Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    match entry.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => {
            let usd = value
                .as_f64()
                .ok_or_else(|| format!("{key} is not a number: {value}"))?;
            if !usd.is_finite() || !(0.0..=1.0).contains(&usd) {
                return Err(format!(
                    "{key} of {usd} USD per token is not a plausible price"
                ));
            }
            Ok(Some((usd * PICO_PER_USD).round() as u64))
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Call, CostSource, PriceTable, TokenUsage};

    /// The shape of LiteLLM's file, with the fields it has for Claude models.
    const SAMPLE: &str = r#"{
        "sample_spec": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0, "litellm_provider": "one of ..."},
        "claude-sonnet-4-5-20250929": {
            "litellm_provider": "anthropic", "mode": "chat",
            "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
            "cache_read_input_token_cost": 3e-07, "cache_creation_input_token_cost": 3.75e-06,
            "cache_creation_input_token_cost_above_1hr": 6e-06,
            "input_cost_per_token_above_200k_tokens": 6e-06, "output_cost_per_token_above_200k_tokens": 2.25e-05,
            "cache_read_input_token_cost_above_200k_tokens": 6e-07,
            "cache_creation_input_token_cost_above_200k_tokens": 7.5e-06
        },
        "vertex_ai/claude-sonnet-4-5@20250929": {
            "litellm_provider": "vertex_ai-anthropic_models",
            "input_cost_per_token": 9e-06, "output_cost_per_token": 9e-05
        },
        "claude-opus-5-5": {
            "litellm_provider": "anthropic",
            "input_cost_per_token": 4e-06, "output_cost_per_token": 2e-05,
            "cache_read_input_token_cost": 2e-07, "cache_creation_input_token_cost": 5e-06,
            "provider_specific_entry": {"fast": 2, "us": 1.1}
        },
        "dall-e-3": {"output_cost_per_image": 0.04},
        "text-embedding-3-small": {"input_cost_per_token": 2e-08, "mode": "embedding"}
    }"#;

    fn usage(input: u64, output: u64, cache_read: u64, write_5m: u64, write_1h: u64) -> TokenUsage {
        TokenUsage {
            input,
            output,
            cache_read,
            cache_write_5m: write_5m,
            cache_write_1h: write_1h,
        }
    }

    #[test]
    fn litellm_files_price_like_the_embedded_table() {
        let litellm = PriceTable::parse_json(SAMPLE, "model_prices.json").unwrap();
        let embedded = PriceTable::embedded();
        for usage in [
            usage(21820, 2544, 9791, 12913, 0),
            usage(150_000, 1000, 50_001, 0, 0),
            usage(1000, 1000, 0, 500, 700),
        ] {
            assert_eq!(
                litellm.cost_usd("claude-sonnet-4-5", &usage),
                embedded.cost_usd("claude-sonnet-4-5", &usage),
                "{usage:?}"
            );
        }
        // The reported cost of the 2.1.332 r01 run (shared/otlp-samples-2.1.332/README.md).
        assert_eq!(
            litellm.cost_usd("claude-opus-5-5", &usage(27570, 4336, 75840, 1240, 0)),
            Some(0.218368)
        );
    }

    #[test]
    fn first_party_entries_win_and_non_token_entries_are_skipped() {
        let table = PriceTable::parse_json(SAMPLE, "model_prices.json").unwrap();
        let (_, sonnet) = table.resolve("claude-sonnet-4-5").unwrap();
        assert_eq!(
            sonnet.base.input, 3_000_000,
            "anthropic, not vertex, prices the bare id"
        );
        let (_, vertex) = table
            .resolve("vertex_ai/claude-sonnet-4-5@20250929")
            .unwrap();
        assert_eq!(
            vertex.base.input, 9_000_000,
            "the full key is still its own entry"
        );
        assert!(table.resolve("dall-e-3").is_none());
        assert!(table.resolve("text-embedding-3-small").is_none());
        assert!(table.resolve("sample_spec").is_none());
    }

    #[test]
    fn the_fast_multiplier_prices_fast_calls() {
        let table = PriceTable::parse_json(SAMPLE, "model_prices.json").unwrap();
        let cost = table.price_call(&Call {
            model: Some("claude-opus-5-5"),
            usage: usage(1_000_000, 0, 0, 0, 0),
            speed: Some("fast"),
            reported_usd: None,
        });
        assert_eq!(cost.cost_usd, Some(8.0));
        assert_eq!(cost.source, CostSource::PriceTable);
    }

    #[test]
    fn bad_prices_name_the_model_and_the_field() {
        let error = PriceTable::parse_json(
            r#"{"m": {"input_cost_per_token": "3e-06", "output_cost_per_token": 1e-05}}"#,
            "p.json",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("model `m`") && error.contains("input_cost_per_token"),
            "{error}"
        );
        let error = PriceTable::parse_json(
            r#"{"m": {"input_cost_per_token": -1, "output_cost_per_token": 1e-05}}"#,
            "p.json",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("plausible"), "{error}");
        assert!(PriceTable::parse_json("[1, 2]", "p.json").is_err());
    }
}
