//! Model prices and the cost of a model call.
//!
//! Owns: the embedded Anthropic price table (`prices.toml`), user files that override or extend it,
//! model-id resolution (aliases, dated, Bedrock and Vertex ids) and the arithmetic that turns token
//! counts into dollars.
//!
//! Must not know: where token counts come from (OTLP, Arrow, Parquet) or where costs go.
//!
//! Prices are held as integer picodollars per token (USD per million tokens × 10⁶), so that a cost
//! is an exact integer sum converted to `f64` once: `0.3 $/Mtok × 9791 tokens` does not drift.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

const EMBEDDED: &str = include_str!("../prices.toml");

/// Picodollars in one dollar.
const PICO_PER_USD: f64 = 1e12;

#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    #[error("cannot read price file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("price file {path} is not valid TOML: {message}")]
    Toml { path: String, message: String },
    #[error("price file {path} is not valid JSON: {message}")]
    Json { path: String, message: String },
    #[error("price file {path}: model `{model}`: {message}")]
    Invalid {
        path: String,
        model: String,
        message: String,
    },
    #[error("price file {path}: alias `{alias}` points to unknown model `{target}`")]
    DanglingAlias {
        path: String,
        alias: String,
        target: String,
    },
}

/// Tokens of one model call, split the way they are billed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    /// Cache writes with the 5-minute lifetime (Claude Code's default; its events do not split them).
    pub cache_write_5m: u64,
    pub cache_write_1h: u64,
}

impl TokenUsage {
    /// Everything the prompt carried: the quantity a long-context tier is decided on.
    pub fn prompt_tokens(&self) -> u64 {
        self.input
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_write_5m)
            .saturating_add(self.cache_write_1h)
    }
}

/// Prices of one tier, in picodollars per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    pub input: u64,
    pub output: u64,
    pub cache_write_5m: u64,
    pub cache_write_1h: u64,
    pub cache_read: u64,
}

impl Rates {
    fn cost_pico(&self, usage: &TokenUsage) -> u128 {
        let term = |tokens: u64, rate: u64| u128::from(tokens) * u128::from(rate);
        term(usage.input, self.input)
            + term(usage.output, self.output)
            + term(usage.cache_read, self.cache_read)
            + term(usage.cache_write_5m, self.cache_write_5m)
            + term(usage.cache_write_1h, self.cache_write_1h)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPrice {
    pub base: Rates,
    /// Tier used when [`TokenUsage::prompt_tokens`] is above `threshold_tokens`.
    pub long_context: Option<LongContext>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongContext {
    pub threshold_tokens: u64,
    pub rates: Rates,
}

impl ModelPrice {
    pub fn rates_for(&self, usage: &TokenUsage) -> &Rates {
        match &self.long_context {
            Some(tier) if usage.prompt_tokens() > tier.threshold_tokens => &tier.rates,
            _ => &self.base,
        }
    }

    pub fn cost_usd(&self, usage: &TokenUsage) -> f64 {
        self.rates_for(usage).cost_pico(usage) as f64 / PICO_PER_USD
    }
}

/// Model prices by canonical model id, plus aliases.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriceTable {
    models: BTreeMap<String, ModelPrice>,
    aliases: BTreeMap<String, String>,
}

impl PriceTable {
    /// The table compiled into burnrate.
    pub fn embedded() -> Self {
        Self::parse_toml(EMBEDDED, "<embedded prices.toml>")
            .expect("the embedded price table is checked by a unit test")
    }

    /// The embedded table with `path` (TOML or JSON, by extension) laid over it.
    pub fn embedded_with_file(path: &Path) -> Result<Self, PriceError> {
        let mut table = Self::embedded();
        table.extend(Self::from_file(path)?);
        Ok(table)
    }

    pub fn from_file(path: &Path) -> Result<Self, PriceError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PriceError::Read {
            path: shown.clone(),
            source,
        })?;
        let is_json = path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("json"));
        if is_json {
            Self::parse_json(&text, &shown)
        } else {
            Self::parse_toml(&text, &shown)
        }
    }

    pub fn parse_toml(text: &str, origin: &str) -> Result<Self, PriceError> {
        let file: PriceFile = toml::from_str(text).map_err(|e| PriceError::Toml {
            path: origin.to_string(),
            message: e.message().to_string(),
        })?;
        file.into_table(origin)
    }

    pub fn parse_json(text: &str, origin: &str) -> Result<Self, PriceError> {
        let file: PriceFile = serde_json::from_str(text).map_err(|e| PriceError::Json {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        file.into_table(origin)
    }

    /// Lays `other` over `self`: its models replace same-named ones, its aliases are added.
    pub fn extend(&mut self, other: PriceTable) {
        self.models.extend(other.models);
        self.aliases.extend(other.aliases);
    }

    pub fn models(&self) -> impl Iterator<Item = (&str, &ModelPrice)> {
        self.models
            .iter()
            .map(|(name, price)| (name.as_str(), price))
    }

    /// The canonical id and price of `model`, if it is known under any of its spellings.
    pub fn resolve(&self, model: &str) -> Option<(&str, &ModelPrice)> {
        let lowered = model.trim().to_ascii_lowercase();
        let mut candidate = lowered.as_str();
        for _ in 0..2 {
            if let Some(found) = self.lookup(candidate) {
                return Some(found);
            }
            candidate = strip_decorations(candidate);
        }
        None
    }

    /// Cost of a call in USD, or `None` when the model has no price.
    pub fn cost_usd(&self, model: &str, usage: &TokenUsage) -> Option<f64> {
        self.resolve(model).map(|(_, price)| price.cost_usd(usage))
    }

    fn lookup(&self, id: &str) -> Option<(&str, &ModelPrice)> {
        let id = self.aliases.get(id).map(String::as_str).unwrap_or(id);
        self.models
            .get_key_value(id)
            .map(|(name, price)| (name.as_str(), price))
    }
}

/// Removes what providers add around an Anthropic model id:
/// `us.anthropic.` / `anthropic.` / `anthropic/` prefixes, `-v1:0` and `@20250929` suffixes,
/// a trailing `-20250929` date and Claude Code's `[1m]` context marker.
fn strip_decorations(id: &str) -> &str {
    let mut id = id;
    if let Some(pos) = id.find("anthropic.") {
        id = &id[pos + "anthropic.".len()..];
    }
    if let Some(rest) = id.strip_prefix("anthropic/") {
        id = rest;
    }
    if let Some(rest) = id.strip_suffix("[1m]") {
        id = rest;
    }
    if let Some(pos) = id.find('@') {
        id = &id[..pos];
    }
    if let Some(pos) = id.rfind("-v") {
        let version = &id[pos + 2..];
        if !version.is_empty() && version.chars().all(|c| c.is_ascii_digit() || c == ':') {
            id = &id[..pos];
        }
    }
    if let Some(pos) = id.rfind('-') {
        let date = &id[pos + 1..];
        if date.len() == 8 && date.chars().all(|c| c.is_ascii_digit()) {
            id = &id[..pos];
        }
    }
    id
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceFile {
    #[serde(default)]
    models: BTreeMap<String, RatesFile>,
    #[serde(default)]
    aliases: BTreeMap<String, String>,
}

/// USD per million tokens, as people write prices.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RatesFile {
    input: f64,
    output: f64,
    cache_write_5m: f64,
    cache_write_1h: Option<f64>,
    cache_read: f64,
    long_context: Option<LongContextFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LongContextFile {
    threshold_tokens: u64,
    input: f64,
    output: f64,
    cache_write_5m: f64,
    cache_write_1h: Option<f64>,
    cache_read: f64,
}

impl PriceFile {
    fn into_table(self, origin: &str) -> Result<PriceTable, PriceError> {
        let mut models = BTreeMap::new();
        for (name, rates) in self.models {
            let invalid = |message: String| PriceError::Invalid {
                path: origin.to_string(),
                model: name.clone(),
                message,
            };
            let base = to_rates(
                rates.input,
                rates.output,
                rates.cache_write_5m,
                rates.cache_write_1h,
                rates.cache_read,
            )
            .map_err(invalid)?;
            let long_context = match rates.long_context {
                None => None,
                Some(tier) => Some(LongContext {
                    threshold_tokens: tier.threshold_tokens,
                    rates: to_rates(
                        tier.input,
                        tier.output,
                        tier.cache_write_5m,
                        tier.cache_write_1h,
                        tier.cache_read,
                    )
                    .map_err(|m| invalid(format!("long_context: {m}")))?,
                }),
            };
            models.insert(name.to_ascii_lowercase(), ModelPrice { base, long_context });
        }
        let aliases: BTreeMap<String, String> = self
            .aliases
            .into_iter()
            .map(|(a, t)| (a.to_ascii_lowercase(), t.to_ascii_lowercase()))
            .collect();
        Ok(PriceTable { models, aliases })
    }
}

/// A 1-hour write defaults to twice the input price, as Anthropic bills it.
fn to_rates(
    input: f64,
    output: f64,
    write_5m: f64,
    write_1h: Option<f64>,
    read: f64,
) -> Result<Rates, String> {
    Ok(Rates {
        input: pico_per_token(input, "input")?,
        output: pico_per_token(output, "output")?,
        cache_write_5m: pico_per_token(write_5m, "cache_write_5m")?,
        cache_write_1h: pico_per_token(write_1h.unwrap_or(input * 2.0), "cache_write_1h")?,
        cache_read: pico_per_token(read, "cache_read")?,
    })
}

/// USD per million tokens → picodollars per token (exact for prices with up to six decimals).
fn pico_per_token(usd_per_mtok: f64, field: &str) -> Result<u64, String> {
    if !usd_per_mtok.is_finite() || usd_per_mtok < 0.0 {
        return Err(format!(
            "{field} must be a finite, non-negative price, got {usd_per_mtok}"
        ));
    }
    if usd_per_mtok > 1e6 {
        return Err(format!(
            "{field} of {usd_per_mtok} $/Mtok is not a plausible price"
        ));
    }
    Ok((usd_per_mtok * 1e6).round() as u64)
}

/// Checks that every alias of `table` points at a model; used on user files after merging.
pub fn check_aliases(table: &PriceTable, origin: &str) -> Result<(), PriceError> {
    for (alias, target) in &table.aliases {
        if !table.models.contains_key(target) {
            return Err(PriceError::DanglingAlias {
                path: origin.to_string(),
                alias: alias.clone(),
                target: target.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, output: u64, cache_read: u64, cache_write: u64) -> TokenUsage {
        TokenUsage {
            input,
            output,
            cache_read,
            cache_write_5m: cache_write,
            cache_write_1h: 0,
        }
    }

    #[test]
    fn embedded_table_parses_and_its_aliases_resolve() {
        let table = PriceTable::embedded();
        assert!(table.models().count() >= 10);
        check_aliases(&table, "embedded").unwrap();
    }

    #[test]
    fn reproduces_the_cost_claude_code_reported_for_the_samples() {
        let table = PriceTable::embedded();
        // Totals of shared/otlp-samples r01 (opus) and r03 (sonnet), from their README.
        let opus = table.cost_usd("claude-opus-4-8", &usage(27570, 4336, 75840, 1240));
        assert_eq!(opus, Some(0.29192));
        let sonnet = table.cost_usd("claude-sonnet-4-5", &usage(21820, 2544, 9791, 12913));
        assert_eq!(sonnet, Some(0.15498105));
    }

    #[test]
    fn resolves_dated_bedrock_vertex_and_context_suffixed_ids() {
        let table = PriceTable::embedded();
        for id in [
            "claude-sonnet-4-5-20250929",
            "CLAUDE-SONNET-4-5",
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
            "claude-sonnet-4-5@20250929",
            "anthropic/claude-sonnet-4-5",
            "claude-sonnet-4-5[1m]",
        ] {
            let (name, _) = table
                .resolve(id)
                .unwrap_or_else(|| panic!("{id} unresolved"));
            assert_eq!(name, "claude-sonnet-4-5", "{id}");
        }
        assert_eq!(
            table.resolve("claude-sonnet-4-0").unwrap().0,
            "claude-sonnet-4"
        );
        assert!(table.resolve("gpt-4o").is_none());
        assert!(table.resolve("claude-sonnet-4-5-2025").is_none());
    }

    #[test]
    fn long_context_tier_applies_above_the_threshold_only() {
        let table = PriceTable::embedded();
        let at = table
            .cost_usd("claude-sonnet-4-5", &usage(200_000, 1000, 0, 0))
            .unwrap();
        assert_eq!(at, 0.615);
        let above = table
            .cost_usd("claude-sonnet-4-5", &usage(150_000, 1000, 50_001, 0))
            .unwrap();
        assert_eq!(above, 0.9525006);
    }

    #[test]
    fn user_file_overrides_and_extends() {
        let mut table = PriceTable::embedded();
        let user = PriceTable::parse_toml(
            r#"
            [models.claude-opus-4-8]
            input = 1.0
            output = 2.0
            cache_write_5m = 3.0
            cache_read = 0.125
            [models.my-finetune]
            input = 0.5
            output = 0.5
            cache_write_5m = 0.5
            cache_read = 0.5
            [aliases]
            house-model = "my-finetune"
            "#,
            "user.toml",
        )
        .unwrap();
        table.extend(user);
        check_aliases(&table, "user.toml").unwrap();
        let opus = table.resolve("claude-opus-4-8-20260101").unwrap().1;
        assert_eq!(
            opus.base.cache_write_1h, 2_000_000,
            "1h write defaults to 2x input"
        );
        assert_eq!(
            table.cost_usd("claude-opus-4-8", &usage(1_000_000, 0, 0, 0)),
            Some(1.0)
        );
        assert_eq!(
            table.cost_usd("house-model", &usage(0, 2_000_000, 0, 0)),
            Some(1.0)
        );
    }

    #[test]
    fn json_files_and_bad_files_give_clear_errors() {
        let table = PriceTable::parse_json(
            r#"{"models": {"m": {"input": 1, "output": 1, "cache_write_5m": 1, "cache_read": 1}}}"#,
            "p.json",
        )
        .unwrap();
        assert!(table.resolve("m").is_some());
        let negative = PriceTable::parse_toml(
            "[models.m]\ninput = -1.0\noutput = 1.0\ncache_write_5m = 1.0\ncache_read = 1.0\n",
            "p.toml",
        )
        .unwrap_err();
        assert!(
            negative.to_string().contains("model `m`: input must be"),
            "{negative}"
        );
        let typo = PriceTable::parse_toml("[models.m]\ninptu = 1.0\n", "p.toml").unwrap_err();
        assert!(typo.to_string().contains("p.toml"), "{typo}");
        let dangling = PriceTable::parse_toml("[aliases]\na = \"nope\"\n", "p.toml").unwrap();
        assert!(check_aliases(&dangling, "p.toml").is_err());
    }
}
