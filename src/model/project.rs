//! The project: blocks, transitions and settings. Pure data; everything here serialises in a stable order
//! (vectors, never hash maps) so that a saved project diffs cleanly.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The Braid project file format version written by this build.
pub const FORMAT_VERSION: u32 = 1;
/// Refinery's account-wide default, which Braid keeps as its per-project default.
pub const DEFAULT_CONCURRENCY_LIMIT: u32 = 1000;
/// Refinery's `max_execution_time` default.
pub const DEFAULT_TIMEOUT_S: u64 = 900;
/// The longest timeout a block may have: a day. An invocation that may rightly run longer is better
/// split (a fan-out of smaller ones), and a longer timeout only puts off noticing a call that hangs.
/// Validation refuses more; Refinery's import (whose Lambda limit is 900 s) brings more down to it.
pub const MAX_TIMEOUT_S: u64 = 86_400;
/// How long an API Endpoint waits for its API Response by default: about what API Gateway held a
/// request open for Refinery (29 s).
pub const DEFAULT_ENDPOINT_TIMEOUT_S: u64 = 29;
/// The HTTP methods an API Endpoint answers, as Refinery offered them (`ANY` answers every method).
pub const HTTP_METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD", "PATCH", "ANY",
];
/// A Queue's batch size by default (Refinery's default).
pub const DEFAULT_BATCH_SIZE: u32 = 1;
/// The largest batch a Queue hands its block: SQS stopped at 10, Braid's queues live in SQLite and
/// take more, but a batch is one invocation's input, so it stays a size one invocation handles.
pub const MAX_BATCH_SIZE: u32 = 1000;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BlockId(pub Arc<str>);

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TransitionId(pub Arc<str>);

impl BlockId {
    pub fn new_random() -> Self {
        Self(new_id().into())
    }
}

impl TransitionId {
    pub fn new_random() -> Self {
        Self(new_id().into())
    }
}

impl std::fmt::Display for BlockId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for TransitionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A fresh random identifier (UUID v4 text, like Refinery's ids).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Project {
    pub format_version: u32,
    pub name: String,
    #[serde(default)]
    pub settings: Settings,
    #[serde(default)]
    pub blocks: Vec<Block>,
    #[serde(default)]
    pub transitions: Vec<Transition>,
    /// Free text shown with the project (Refinery projects carry a README).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub readme: String,
}

impl Default for Project {
    fn default() -> Self {
        Self {
            format_version: FORMAT_VERSION,
            name: "Untitled project".to_owned(),
            settings: Settings::default(),
            blocks: Vec::new(),
            transitions: Vec::new(),
            readme: String::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// At most this many invocations run at once (Refinery's account limit).
    #[serde(default = "default_concurrency_limit")]
    pub concurrency_limit: u32,
    /// While the project is served, this many of the limit's slots are kept for the invocations of
    /// requests to its API Endpoints: background work (fan-outs, queues, timers) never takes them.
    /// `None`: [`Settings::request_reserve`]'s default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_reserve: Option<u32>,
}

impl Settings {
    /// The slots kept for requests while serving: the setting, else a tenth of the limit (rounded up),
    /// never all of it (background work keeps at least one slot).
    pub fn request_reserve(&self) -> u32 {
        let limit = self.concurrency_limit;
        self.request_reserve
            .unwrap_or_else(|| limit.div_ceil(10))
            .min(limit.saturating_sub(1))
    }
}

fn default_concurrency_limit() -> u32 {
    DEFAULT_CONCURRENCY_LIMIT
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            concurrency_limit: DEFAULT_CONCURRENCY_LIMIT,
            request_reserve: None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Position {
    pub x: f32,
    pub y: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Block {
    pub id: BlockId,
    pub name: String,
    #[serde(default)]
    pub position: Position,
    #[serde(flatten)]
    pub kind: BlockKind,
}

/// What a block does. Serialised as a `"kind"` tag beside the block's common fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
// `deny_unknown_fields` here and on `CodeBlock` makes a misspelt block field a load error rather than
// silently dropped (`Block` itself can't deny: it flattens this enum).
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BlockKind {
    /// A Code Block: `def main(block_input, backpack)`.
    Code(CodeBlock),
    /// Refinery's API Endpoint: while the project is served, each request to `http_method` `api_path`
    /// starts a run here with the request as its input; in a headless run it passes the run's input
    /// through.
    ApiEndpoint {
        #[serde(default)]
        api_path: String,
        #[serde(default)]
        http_method: String,
        /// A request with no API Response reached within this many seconds is answered 504.
        #[serde(default = "default_endpoint_timeout")]
        timeout_s: u64,
    },
    /// Refinery's API Response: the first value that reaches it answers the run's request; its output
    /// is what it received.
    ApiResponse,
    /// Refinery's Timer (`schedule_trigger`): while the project is served, fires on its schedule and
    /// starts a run here; its output is `input_string`, parsed as JSON when it is JSON.
    Timer {
        /// CloudWatch's `rate(5 minutes)` or `cron(0 12 * * ? *)` (see `model::schedule`).
        #[serde(default)]
        schedule_expression: String,
        #[serde(default)]
        input_string: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        description: String,
    },
    /// Refinery's Queue (`sqs_queue`): what reaches it is kept (durably, while served) as messages, a
    /// list as one message per item; its block is invoked with batches of up to `batch_size` of them.
    Queue {
        #[serde(default = "default_batch_size")]
        batch_size: u32,
    },
    /// Refinery's Topic (`sns_topic`): every block it leads to (`then`) receives each message it gets,
    /// with the publisher's backpack.
    Topic,
    /// A block type Braid cannot run yet; kept so that nothing of an imported project is lost.
    Unsupported {
        /// Refinery's type name (`sfn_task`, …: a type Braid does not know).
        refinery_type: String,
        /// The block's original fields, kept verbatim.
        #[serde(default)]
        original: serde_json::Value,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeBlock {
    #[serde(default)]
    pub language: Language,
    #[serde(default)]
    pub code: String,
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
    /// This block's own concurrency cap (Refinery's `reserved_concurrency_count`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_cap: Option<u32>,
    /// Python requirements (`requests`, `numpy==2.1.*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub libraries: Vec<String>,
    /// Names of environment variables the block reads; their values never live in the project file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_vars: Vec<String>,
    /// Whether and how a failed invocation runs again; none (fail at once) when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retries>,
}

/// How a block's failed invocations run again: each attempt waits `delay_s × factor^(n − 1)` seconds
/// after attempt n failed, up to `count` more attempts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retries {
    /// How many more attempts a failed invocation gets (`0`: none).
    pub count: u32,
    /// Seconds before the first retry.
    #[serde(default = "default_retry_delay")]
    pub delay_s: f64,
    /// What each further delay is multiplied by.
    #[serde(default = "default_retry_factor")]
    pub factor: f64,
    /// The error types that are retried (`KeyError`, `ConnectionError`, `Timeout`, `WorkerCrash`);
    /// empty: every failure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<String>,
}

fn default_retry_delay() -> f64 {
    1.0
}

fn default_retry_factor() -> f64 {
    2.0
}

impl Default for Retries {
    fn default() -> Self {
        Self {
            count: 0,
            delay_s: default_retry_delay(),
            factor: default_retry_factor(),
            on: Vec::new(),
        }
    }
}

impl Retries {
    /// Whether a failure of this type (`ErrorInfo::kind`) is retried.
    pub fn retries(&self, kind: &str) -> bool {
        self.on.is_empty() || self.on.iter().any(|on| on == kind)
    }

    /// How long to wait after attempt `attempt` (counting from 1) failed, in milliseconds.
    pub fn delay_ms(&self, attempt: u32) -> f64 {
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        (self.delay_s * self.factor.powi(exponent) * 1000.0).clamp(0.0, MAX_RETRY_DELAY_S * 1000.0)
    }
}

/// The longest wait before a retry, however the delays grow: a day.
pub const MAX_RETRY_DELAY_S: f64 = 86_400.0;

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_S
}

fn default_endpoint_timeout() -> u64 {
    DEFAULT_ENDPOINT_TIMEOUT_S
}

fn default_batch_size() -> u32 {
    DEFAULT_BATCH_SIZE
}

impl Default for CodeBlock {
    fn default() -> Self {
        Self {
            language: Language::Python,
            code: DEFAULT_PYTHON_CODE.to_owned(),
            timeout_s: DEFAULT_TIMEOUT_S,
            concurrency_cap: None,
            libraries: Vec::new(),
            env_vars: Vec::new(),
            retries: None,
        }
    }
}

/// The code a new Code Block starts with.
pub const DEFAULT_PYTHON_CODE: &str = "def main(block_input, backpack):\n    return block_input\n";

/// The language of a Code Block. Only Python runs today; others load and are reported as not runnable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    #[default]
    Python,
    /// Any other language, with Refinery's name for it (`nodejs8.10`, `go1.12`, …).
    Other(String),
}

impl Language {
    pub fn is_runnable(&self) -> bool {
        matches!(self, Self::Python)
    }

    pub fn label(&self) -> &str {
        match self {
            Self::Python => "Python",
            Self::Other(name) => name,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transition {
    pub id: TransitionId,
    pub from: BlockId,
    pub to: BlockId,
    #[serde(rename = "type")]
    pub kind: TransitionKind,
    /// The Python condition of an `if` transition, over `return_data`, `backpack` and `block_input`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub expression: String,
    /// A fan-out's item key: a Python expression over `item` (and `index`, `return_data`, `backpack`,
    /// `block_input`) naming each item across runs. Empty: the item's index is its key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub item_key: String,
    /// A fan-out's item label, what people read for each item: a Python expression like `item_key`.
    /// Empty: no label (the key shows).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub item_label: String,
    /// A fan-in's failure budget: how many of its fan-out's items may fail with the fan-in still
    /// firing. None: every item must deliver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerated_failures: Option<Tolerance>,
}

/// How many failed items a fan-in tolerates: a count (`3` in the file) or a share of its items
/// (`"5%"`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Tolerance {
    Count(u32),
    /// Percent of the fan-out's items, 0 to 100.
    Percent(f64),
}

impl Tolerance {
    /// How many of `items` may fail.
    pub fn allowed(self, items: usize) -> usize {
        match self {
            Self::Count(n) => n as usize,
            // Rounded down: 5% of 10 items tolerates none, so "5%" never allows more than it says.
            Self::Percent(p) => ((items as f64) * p.clamp(0.0, 100.0) / 100.0).floor() as usize,
        }
    }

    /// `3` or `5%`, as the inspector shows and reads it.
    pub fn text(self) -> String {
        match self {
            Self::Count(n) => n.to_string(),
            Self::Percent(p) => format!("{p}%"),
        }
    }

    /// Reads `3` or `5%` (or `2.5 %`); `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        match text.strip_suffix('%') {
            Some(percent) => percent
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|p| p.is_finite())
                .map(Self::Percent),
            None => text.parse().ok().map(Self::Count),
        }
    }
}

impl Serialize for Tolerance {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Count(n) => serializer.serialize_u32(*n),
            Self::Percent(_) => serializer.serialize_str(&self.text()),
        }
    }
}

impl<'de> Deserialize<'de> for Tolerance {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(u32),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Count(n) => Ok(Self::Count(n)),
            Raw::Text(text) => Self::parse(&text)
                .filter(|t| matches!(t, Self::Percent(_)))
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "tolerated_failures is a count (3) or a percentage (\"5%\"), not {text:?}"
                    ))
                }),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransitionKind {
    Then,
    If,
    Else,
    Exception,
    FanOut,
    FanIn,
    Merge,
}

impl TransitionKind {
    pub const ALL: [Self; 7] = [
        Self::Then,
        Self::If,
        Self::Else,
        Self::Exception,
        Self::FanOut,
        Self::FanIn,
        Self::Merge,
    ];

    /// The name users see and files store.
    pub fn label(self) -> &'static str {
        match self {
            Self::Then => "then",
            Self::If => "if",
            Self::Else => "else",
            Self::Exception => "exception",
            Self::FanOut => "fan-out",
            Self::FanIn => "fan-in",
            Self::Merge => "merge",
        }
    }

    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.label() == label)
    }
}

impl std::fmt::Display for TransitionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

impl Project {
    pub fn block(&self, id: &BlockId) -> Option<&Block> {
        self.blocks.iter().find(|b| &b.id == id)
    }

    pub fn block_mut(&mut self, id: &BlockId) -> Option<&mut Block> {
        self.blocks.iter_mut().find(|b| &b.id == id)
    }

    pub fn transition(&self, id: &TransitionId) -> Option<&Transition> {
        self.transitions.iter().find(|t| &t.id == id)
    }

    /// Finds a block by id, or else by exact name (what `--from` accepts).
    pub fn find_block(&self, id_or_name: &str) -> Option<&Block> {
        self.blocks
            .iter()
            .find(|b| *b.id.0 == *id_or_name)
            .or_else(|| self.blocks.iter().find(|b| b.name == id_or_name))
    }

    /// Blocks with no incoming transition: where a run starts by default.
    pub fn entry_blocks(&self) -> Vec<&Block> {
        let reached: std::collections::HashSet<&BlockId> =
            self.transitions.iter().map(|t| &t.to).collect();
        self.blocks
            .iter()
            .filter(|b| !reached.contains(&b.id))
            .collect()
    }

    /// The name of a block for messages, falling back to its id.
    pub fn block_name<'a>(&'a self, id: &'a BlockId) -> &'a str {
        self.block(id).map_or(&*id.0, |b| b.name.as_str())
    }

    /// A block's name as the editor lists it beside others: its name, and when other blocks share it
    /// (a Refinery export's "Untitled Code Block"s), its place among them, `Untitled Code Block (2)`,
    /// so that two failures of same-named blocks can be told apart.
    pub fn distinct_name(&self, id: &BlockId) -> String {
        let name = self.block_name(id);
        let same: Vec<&BlockId> = self
            .blocks
            .iter()
            .filter(|b| b.name == name)
            .map(|b| &b.id)
            .collect();
        match same.iter().position(|other| *other == id) {
            Some(place) if same.len() > 1 => format!("{name} ({})", place + 1),
            _ => name.to_owned(),
        }
    }
}

impl Block {
    pub fn new_code(name: impl Into<String>, code: impl Into<String>, position: Position) -> Self {
        Self {
            id: BlockId::new_random(),
            name: name.into(),
            position,
            kind: BlockKind::Code(CodeBlock {
                code: code.into(),
                ..CodeBlock::default()
            }),
        }
    }

    /// An API Endpoint, Timer, Queue or Topic: a block whose work is done while the project is served.
    pub fn is_service(&self) -> bool {
        matches!(
            self.kind,
            BlockKind::ApiEndpoint { .. }
                | BlockKind::Timer { .. }
                | BlockKind::Queue { .. }
                | BlockKind::Topic
        )
    }

    pub fn code(&self) -> Option<&CodeBlock> {
        match &self.kind {
            BlockKind::Code(code) => Some(code),
            _ => None,
        }
    }

    pub fn code_mut(&mut self) -> Option<&mut CodeBlock> {
        match &mut self.kind {
            BlockKind::Code(code) => Some(code),
            _ => None,
        }
    }

    /// A short label for the block's kind, as shown on the canvas.
    pub fn kind_label(&self) -> String {
        match &self.kind {
            BlockKind::Code(code) => format!("{} Code Block", code.language.label()),
            BlockKind::ApiEndpoint {
                api_path,
                http_method,
                ..
            } => format!("API Endpoint {http_method} {api_path}"),
            BlockKind::ApiResponse => "API Response".to_owned(),
            BlockKind::Timer {
                schedule_expression,
                ..
            } => format!("Timer {schedule_expression}"),
            BlockKind::Queue { batch_size } => format!("Queue (batches of {batch_size})"),
            BlockKind::Topic => "Topic".to_owned(),
            BlockKind::Unsupported { refinery_type, .. } => {
                format!("{refinery_type} (not supported yet)")
            }
        }
    }
}

impl Transition {
    pub fn new(from: BlockId, to: BlockId, kind: TransitionKind) -> Self {
        Self {
            id: TransitionId::new_random(),
            from,
            to,
            kind,
            expression: String::new(),
            item_key: String::new(),
            item_label: String::new(),
            tolerated_failures: None,
        }
    }

    /// Whether a fan-out names its items by an expression (a key or a label).
    pub fn names_items(&self) -> bool {
        !self.item_key.trim().is_empty() || !self.item_label.trim().is_empty()
    }
}
