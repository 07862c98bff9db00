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
}

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
        }
    }
}
