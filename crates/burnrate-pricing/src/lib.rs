//! Model prices and the cost of a model call.
//!
//! Owns: the embedded Anthropic price table (`prices.toml`), user files that override or extend it
//! (burnrate's TOML/JSON shape, or LiteLLM's `model_prices_and_context_window.json`), model-id
//! resolution (aliases, dated, Bedrock and Vertex ids), the arithmetic that turns token counts into
//! dollars, and the precedence between the table's price and the cost a client reported
//! ([`PriceTable::price_call`]).
//!
//! Must not know: where token counts come from (OTLP, Arrow, Parquet) or where costs go.
//!
//! Prices are held as integer picodollars per token (USD per million tokens × 10⁶), so that a cost
//! is an exact integer sum converted to `f64` once: `0.3 $/Mtok × 9791 tokens` does not drift.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

mod call;
mod litellm;

pub use call::{Call, CallCost, CostSource, MISMATCH_ABSOLUTE_USD, MISMATCH_RELATIVE};

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

impl PriceError {
    /// Whether loading the same file again, unchanged, can succeed: only a read the system
    /// interrupted or timed out. A file that is missing, unreadable or invalid stays so until
    /// someone fixes it.
    pub fn is_retryable(&self) -> bool {
        match self {
            PriceError::Read { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::WouldBlock
            ),
            PriceError::Toml { .. }
            | PriceError::Json { .. }
            | PriceError::Invalid { .. }
            | PriceError::DanglingAlias { .. } => false,
        }
    }
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

/// 5-minute and 1-hour cache writes from a call's total and its split by lifetime. The 1-hour
/// part is priced as such whenever it is reported; the rest of the total is a 5-minute write.
/// Claude Code sends a split of zeros when its API did not report one, so the total is what
/// counts; without a total, the split's sum is.
pub fn split_cache_writes(
    total: Option<u64>,
    five_minute: Option<u64>,
    one_hour: Option<u64>,
) -> (u64, u64) {
    let one_hour = one_hour.unwrap_or(0);
    let total = total.unwrap_or_else(|| five_minute.unwrap_or(0).saturating_add(one_hour));
    let one_hour = one_hour.min(total);
    (total - one_hour, one_hour)
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
    /// `speed = fast` costs this many thousandths of the normal price (6000 = 6x); `None` when
    /// the fast price is not known, so such a call has no table price.
    pub fast_permille: Option<u64>,
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

    /// Cost at `speed`: `None`, `normal` and `standard` are the normal price; `fast` needs a known
    /// fast multiplier; any other speed has no price.
    pub fn cost_usd_at(&self, usage: &TokenUsage, speed: Option<&str>) -> Option<f64> {
        let pico = self.rates_for(usage).cost_pico(usage);
        match speed.map(str::trim) {
            None | Some("" | "normal" | "standard" | "default") => Some(pico as f64 / PICO_PER_USD),
            Some(s) if s.eq_ignore_ascii_case("fast") => self
                .fast_permille
                .map(|m| (pico * u128::from(m) / 1000) as f64 / PICO_PER_USD),
            Some(_) => None,
        }
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

    /// The embedded table with `path` (TOML, JSON of the same shape, or LiteLLM's JSON) laid over it.
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

    /// burnrate's own shape (`models`, `aliases`) or LiteLLM's (`model name -> costs per token`),
    /// told apart by the top-level keys.
    pub fn parse_json(text: &str, origin: &str) -> Result<Self, PriceError> {
        let json_error = |e: serde_json::Error| PriceError::Json {
            path: origin.to_string(),
            message: e.to_string(),
        };
        let value: serde_json::Value = serde_json::from_str(text).map_err(json_error)?;
        let ours = value.as_object().is_some_and(|top| {
            !top.is_empty() && top.keys().all(|k| k == "models" || k == "aliases")
        });
        if ours {
            let file: PriceFile = serde_json::from_value(value).map_err(json_error)?;
            file.into_table(origin)
        } else {
            litellm::parse(&value, origin)
        }
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

    /// Adds one model under its canonical id (lower case); an existing one is replaced.
    fn insert(&mut self, name: String, price: ModelPrice) {
        self.models.insert(name, price);
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
pub(crate) fn strip_decorations(id: &str) -> &str {
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
    /// `speed = fast` costs this multiple of the normal price (absent: not known).
    fast_multiplier: Option<f64>,
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
            let fast_permille = rates
                .fast_multiplier
                .map(permille)
                .transpose()
                .map_err(|m| invalid(format!("fast_multiplier: {m}")))?;
            models.insert(
                name.to_ascii_lowercase(),
                ModelPrice {
                    base,
                    long_context,
                    fast_permille,
                },
            );
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

/// A price multiplier as thousandths, so that multiplied costs stay exact integers.
pub(crate) fn permille(multiplier: f64) -> Result<u64, String> {
    if !multiplier.is_finite() || !(1.0..=100.0).contains(&multiplier) {
        return Err(format!(
            "a multiplier must be between 1 and 100, got {multiplier}"
        ));
    }
    Ok((multiplier * 1000.0).round() as u64)
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
    fn only_an_interrupted_read_is_worth_retrying() {
        let read = |kind| PriceError::Read {
            path: "prices.toml".into(),
            source: std::io::Error::from(kind),
        };
        assert!(read(std::io::ErrorKind::Interrupted).is_retryable());
        assert!(!read(std::io::ErrorKind::NotFound).is_retryable());
        let invalid = PriceError::Toml {
            path: "prices.toml".into(),
            message: "expected `=`".into(),
        };
        assert!(!invalid.is_retryable());
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
        // shared/otlp-samples-2.1.332 r01: the same calls, reported as claude-opus-5-5.
        let opus_5_5 = table.cost_usd("claude-opus-5-5", &usage(27570, 4336, 75840, 1240));
        assert_eq!(opus_5_5, Some(0.218368));
    }

    #[test]
    fn one_hour_cache_writes_cost_twice_the_input_and_five_minute_ones_one_and_a_quarter() {
        let table = PriceTable::embedded();
        for model in ["claude-opus-5-5", "claude-sonnet-4-6", "claude-haiku-4-5"] {
            let input = table.cost_usd(model, &usage(1_000_000, 0, 0, 0)).unwrap();
            let write_5m = table.cost_usd(model, &usage(0, 0, 0, 1_000_000)).unwrap();
            let write_1h = table
                .cost_usd(
                    model,
                    &TokenUsage {
                        cache_write_1h: 1_000_000,
                        ..TokenUsage::default()
                    },
                )
                .unwrap();
            assert_eq!(write_5m, input * 1.25, "{model}");
            assert_eq!(write_1h, input * 2.0, "{model}");
        }
    }

    #[test]
    fn cache_writes_split_by_lifetime_and_fall_back_to_the_total() {
        assert_eq!(split_cache_writes(Some(100), Some(60), Some(40)), (60, 40));
        assert_eq!(
            split_cache_writes(Some(100), Some(0), Some(0)),
            (100, 0),
            "no split"
        );
        assert_eq!(split_cache_writes(Some(100), None, None), (100, 0));
        assert_eq!(split_cache_writes(None, Some(30), Some(20)), (30, 20));
        assert_eq!(
            split_cache_writes(Some(10), Some(0), Some(50)),
            (0, 10),
            "capped"
        );
        assert_eq!(split_cache_writes(None, None, None), (0, 0));
    }

    #[test]
    fn fast_speed_is_priced_only_where_its_multiplier_is_known() {
        let table = PriceTable::embedded();
        let (_, opus) = table.resolve("claude-opus-4-6").unwrap();
        let tokens = usage(100_000, 0, 0, 0);
        assert_eq!(opus.cost_usd_at(&tokens, Some("normal")), Some(0.5));
        assert_eq!(opus.cost_usd_at(&tokens, Some("fast")), Some(3.0));
        assert_eq!(opus.cost_usd_at(&tokens, Some("warp")), None);
        let (_, sonnet) = table.resolve("claude-sonnet-4-5").unwrap();
        assert_eq!(sonnet.cost_usd_at(&tokens, Some("fast")), None);
        assert_eq!(sonnet.cost_usd_at(&tokens, None), Some(0.3));
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
