//! Which OTLP attributes, event names and span names feed the canonical tables.
//!
//! Every list is "first present wins", so one configuration reads Claude Code's events, GenAI
//! semantic-convention spans and the older `claude.*` span attributes side by side.

use serde::{Deserialize, Serialize};

/// Where a Claude Code model call or tool call is read from when both an event and a span
/// describe it. The other source still lands in the raw tables; it is only kept out of
/// `api_requests` / `tool_calls`, so that no call is counted twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallSource {
    /// `claude_code.api_request` / `api_error` / `tool_result` log events (Claude Code's default
    /// exporter set; present without the tracing beta).
    #[default]
    Events,
    /// `claude_code.llm_request` / `claude_code.tool` spans (needs
    /// `CLAUDE_CODE_ENHANCED_TELEMETRY_BETA=1`).
    Spans,
}

/// What happens to attributes that hold prompt or response text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentPolicy {
    /// Replaced by `[redacted: N chars]`.
    #[default]
    Redact,
    /// Replaced by `xxh3:<hex>` of the text: equal prompts stay equal, the text is gone.
    Hash,
    Keep,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MappingConfig {
    pub call_source: CallSource,
    /// Metric-name prefixes whose sums become `usage_metrics` rows.
    pub usage_metric_prefixes: Vec<String>,
    pub content: ContentPolicy,
    /// Attribute keys treated as content under [`ContentPolicy`].
    pub content_attributes: Vec<String>,
    pub attributes: AttributeNames,
    pub events: EventNames,
    pub spans: SpanNames,
}

impl Default for MappingConfig {
    fn default() -> Self {
        MappingConfig {
            call_source: CallSource::Events,
            usage_metric_prefixes: names(&["claude_code."]),
            content: ContentPolicy::Redact,
            content_attributes: names(&[
                "prompt",
                "user_prompt",
                "response",
                "llm_request.context",
                "tool_parameters",
                "tool_input",
                "gen_ai.prompt",
                "gen_ai.completion",
                "gen_ai.input.messages",
                "gen_ai.output.messages",
                "gen_ai.system_instructions",
            ]),
            attributes: AttributeNames::default(),
            events: EventNames::default(),
            spans: SpanNames::default(),
        }
    }
}

/// Attribute keys per canonical column. Record attributes are searched first, then the resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttributeNames {
    pub event_name: Vec<String>,
    pub session_id: Vec<String>,
    pub user_id: Vec<String>,
    pub user_email: Vec<String>,
    pub organization_id: Vec<String>,
    pub team: Vec<String>,
    pub project: Vec<String>,
    pub env: Vec<String>,
    pub service_name: Vec<String>,
    pub model: Vec<String>,
    pub input_tokens: Vec<String>,
    pub output_tokens: Vec<String>,
    pub cache_read_tokens: Vec<String>,
    pub cache_creation_tokens: Vec<String>,
    pub cost_usd: Vec<String>,
    pub duration_ms: Vec<String>,
    pub success: Vec<String>,
    pub error: Vec<String>,
    pub status_code: Vec<String>,
    pub attempt: Vec<String>,
    pub prompt_id: Vec<String>,
    pub request_id: Vec<String>,
    pub query_source: Vec<String>,
    /// `cache_creation_tokens` written with the 5-minute and the 1-hour cache lifetime.
    pub cache_creation_5m_tokens: Vec<String>,
    pub cache_creation_1h_tokens: Vec<String>,
    /// Time to first token, in milliseconds.
    pub ttft_ms: Vec<String>,
    /// `normal` or `fast`: fast mode is priced apart.
    pub speed: Vec<String>,
    /// The reasoning effort the call was made with.
    pub effort: Vec<String>,
    pub tool_name: Vec<String>,
    pub tool_use_id: Vec<String>,
    pub decision: Vec<String>,
    pub decision_source: Vec<String>,
    /// Metric attribute that splits a usage metric: token `type`, lines-of-code `type`, ...
    pub metric_type: Vec<String>,
    /// Event time carried as an ISO-8601 string; used when the record's own time is missing.
    pub event_timestamp: Vec<String>,
}

/// Declares [`Attr`], one variant per field of [`AttributeNames`], from one list, so that the
/// variants, [`Attr::ALL`] and [`AttributeNames::keys`] cannot drift apart.
macro_rules! attrs {
    ($($variant:ident => $field:ident,)*) => {
        /// One attribute the mapping reads: a field of [`AttributeNames`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Attr {
            $($variant,)*
        }

        impl Attr {
            pub const ALL: &[Attr] = &[$(Attr::$variant,)*];
            pub const COUNT: usize = Attr::ALL.len();
        }

        impl AttributeNames {
            /// The keys `attr` is read from, first present wins.
            pub fn keys(&self, attr: Attr) -> &[String] {
                match attr {
                    $(Attr::$variant => &self.$field,)*
                }
            }
        }
    };
}

attrs! {
    EventName => event_name,
    SessionId => session_id,
    UserId => user_id,
    UserEmail => user_email,
    OrganizationId => organization_id,
    Team => team,
    Project => project,
    Env => env,
    ServiceName => service_name,
    Model => model,
    InputTokens => input_tokens,
    OutputTokens => output_tokens,
    CacheReadTokens => cache_read_tokens,
    CacheCreationTokens => cache_creation_tokens,
    CostUsd => cost_usd,
    DurationMs => duration_ms,
    Success => success,
    Error => error,
    StatusCode => status_code,
    Attempt => attempt,
    PromptId => prompt_id,
    RequestId => request_id,
    QuerySource => query_source,
    CacheCreation5mTokens => cache_creation_5m_tokens,
    CacheCreation1hTokens => cache_creation_1h_tokens,
    TtftMs => ttft_ms,
    Speed => speed,
    Effort => effort,
    ToolName => tool_name,
    ToolUseId => tool_use_id,
    Decision => decision,
    DecisionSource => decision_source,
    MetricType => metric_type,
    EventTimestamp => event_timestamp,
}

impl Default for AttributeNames {
    fn default() -> Self {
        AttributeNames {
            event_name: names(&["event.name"]),
            session_id: names(&["session.id", "gen_ai.conversation.id", "claude.session_id"]),
            user_id: names(&["user.id", "enduser.id"]),
            user_email: names(&["user.email"]),
            organization_id: names(&["organization.id"]),
            team: names(&["team", "team.name"]),
            project: names(&["project", "project.name"]),
            env: names(&[
                "env",
                "deployment.environment.name",
                "deployment.environment",
            ]),
            service_name: names(&["service.name"]),
            model: names(&[
                "model",
                "gen_ai.response.model",
                "gen_ai.request.model",
                "claude.model",
            ]),
            input_tokens: names(&[
                "input_tokens",
                "gen_ai.usage.input_tokens",
                "claude.input_tokens",
            ]),
            output_tokens: names(&[
                "output_tokens",
                "gen_ai.usage.output_tokens",
                "claude.output_tokens",
            ]),
            cache_read_tokens: names(&[
                "cache_read_tokens",
                "gen_ai.usage.cache_read.input_tokens",
                "gen_ai.usage.cache_read_input_tokens",
                "claude.cache_read_tokens",
            ]),
            cache_creation_tokens: names(&[
                "cache_creation_tokens",
                "gen_ai.usage.cache_creation.input_tokens",
                "gen_ai.usage.cache_creation_input_tokens",
                "claude.cache_creation_tokens",
            ]),
            cost_usd: names(&["cost_usd", "claude.cost_usd"]),
            duration_ms: names(&["duration_ms", "claude.duration_ms"]),
            success: names(&["success"]),
            error: names(&["error", "error.type"]),
            status_code: names(&["status_code", "http.response.status_code"]),
            attempt: names(&["attempt"]),
            prompt_id: names(&["prompt.id"]),
            request_id: names(&["request_id", "gen_ai.response.id"]),
            query_source: names(&["query_source"]),
            cache_creation_5m_tokens: names(&["cache_creation_5m_tokens"]),
            cache_creation_1h_tokens: names(&["cache_creation_1h_tokens"]),
            ttft_ms: names(&["ttft_ms"]),
            speed: names(&["speed"]),
            effort: names(&["effort"]),
            tool_name: names(&["tool_name", "gen_ai.tool.name"]),
            tool_use_id: names(&["tool_use_id", "gen_ai.tool.call.id"]),
            decision: names(&["decision"]),
            decision_source: names(&["source"]),
            metric_type: names(&["type"]),
            event_timestamp: names(&["event.timestamp"]),
        }
    }
}

/// Claude Code event names (the `event.name` attribute, or the body with its `claude_code.`
/// prefix).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventNames {
    /// Prefix stripped from bodies and event names before matching.
    pub prefix: String,
    pub api_request: Vec<String>,
    pub api_error: Vec<String>,
    pub tool_result: Vec<String>,
    pub tool_decision: Vec<String>,
}

impl Default for EventNames {
    fn default() -> Self {
        EventNames {
            prefix: "claude_code.".into(),
            api_request: names(&["api_request"]),
            api_error: names(&["api_error"]),
            tool_result: names(&["tool_result"]),
            tool_decision: names(&["tool_decision"]),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpanNames {
    /// Claude Code's model-call spans (used when `call_source = "spans"`).
    pub llm_request: Vec<String>,
    /// Claude Code's tool spans (used when `call_source = "spans"`).
    pub tool: Vec<String>,
    /// Child span of a tool span that carries its `success`.
    pub tool_execution: Vec<String>,
    /// Child span of a tool span that carries the permission `decision`.
    pub tool_blocked_on_user: Vec<String>,
    /// Spans of the older `claude.*` convention: one span per task with its token totals.
    pub claude_task: Vec<String>,
    /// `gen_ai.operation.name` values that make a span a model call.
    pub gen_ai_call_operations: Vec<String>,
    /// `gen_ai.operation.name` values that make a span a tool call.
    pub gen_ai_tool_operations: Vec<String>,
}

impl Default for SpanNames {
    fn default() -> Self {
        SpanNames {
            llm_request: names(&["claude_code.llm_request"]),
            tool: names(&["claude_code.tool"]),
            tool_execution: names(&["claude_code.tool.execution"]),
            tool_blocked_on_user: names(&["claude_code.tool.blocked_on_user"]),
            claude_task: names(&["claude.task"]),
            gen_ai_call_operations: names(&["chat", "text_completion", "generate_content"]),
            gen_ai_tool_operations: names(&["execute_tool"]),
        }
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_string()).collect()
}
