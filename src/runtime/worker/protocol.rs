//! The protocol between Braid and its Python workers, defined once: the requests Braid sends, the
//! replies a worker sends back, the statuses and the binary results frame in them, and the constants the
//! worker's Python reads, which [`python_constants`] writes from these same definitions into
//! `python/braid_worker/constants.py`. `docs/worker-protocol.md` describes the frames for a reader.
//!
//! Each frame is a little-endian `u32` length and a body, requests on the worker's stdin and replies on
//! its stdout. A request is a JSON object tagged by `op` ([`Request`]). A reply is a JSON object tagged
//! by `op` ([`Reply`]), or a results frame: `R`, then the worker's start (wall-clock µs, `u64`) and the
//! short rows' count n (`u32`); then three columns of n `i64`: keys, start times and durations
//! (nanoseconds after the worker's start); then three JSON texts, each after its `u32` length: the short
//! rows' return values, their backpacks (`0`: every one unchanged), and the other rows (see
//! [`ResultRow`]). A short row is an invocation that returned, printed nothing and has no `if`s: most
//! of a big fan-out, whose integers cost next to nothing to pack and read that way.
//!
//! [`write_results`] is the one writer of that layout and [`read_reply`] the one reader; the worker's
//! native module (`native.rs`) writes frames through the writer. In a plain Python (the package's own
//! tests, a Python with no Braid in it), `protocol.py` packs the same bytes itself; a test below checks
//! that it does, byte for byte.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use strum::{EnumDiscriminants, EnumIter, IntoStaticStr};

use crate::run::{ErrorInfo, ItemNames};
use crate::runtime::invoker::{Program, Task};

/// What Braid asks of a worker.
#[derive(Debug, Serialize, EnumDiscriminants)]
#[strum_discriminants(
    name(RequestOp),
    derive(EnumIter, IntoStaticStr),
    strum(serialize_all = "snake_case")
)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request<'a> {
    /// Compile every block of a program (nothing runs); answered by [`Reply::Loaded`].
    Load(&'a Program),
    /// Run invocations of one block of a loaded program: `keys`, `inputs` (JSON values) and
    /// `backpacks`, one each per invocation; without `backpacks`, each starts with an empty backpack of
    /// its own. Written by [`write_run`] (the inputs are JSON text already); answered by results frames.
    #[serde(skip)]
    Run {
        program: u64,
        block: u32,
        tasks: &'a [Task],
    },
    /// Stop these invocations (each still gets a result, `Cancelled` unless it had finished).
    Cancel { keys: &'a [u64] },
    /// Forget a program (its run has ended).
    Unload { program: u64 },
}

impl Request<'_> {
    /// The frame's body.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Run {
                program,
                block,
                tasks,
            } => write_run(*program, *block, tasks),
            _ => serde_json::to_vec(self).expect("a request serializes: its keys are all strings"),
        }
    }
}

/// How every run request starts: the worker's reading thread tells a run frame by it and hands its
/// bytes to the thread that runs it, decoding nothing.
pub const RUN_PREFIX: &str = r#"{"op":"run","#;

/// A [`Request::Run`] frame. Inputs and backpacks are written as the JSON text the scheduler encoded,
/// so nothing is parsed or encoded again here.
fn write_run(program: u64, block: u32, tasks: &[Task]) -> Vec<u8> {
    let mut frame = String::with_capacity(
        96 + tasks
            .iter()
            .map(|t| 24 + t.input_json.len() + t.backpack_json.len())
            .sum::<usize>(),
    );
    frame.push_str(RUN_PREFIX);
    let _ = write!(frame, r#""program":{program},"block":{block},"keys":"#);
    push_keys(&mut frame, tasks.iter().map(|t| t.key));
    frame.push_str(r#","inputs":"#);
    push_list(&mut frame, tasks.iter().map(|t| t.input_json.as_str()));
    if !tasks.iter().all(|t| &*t.backpack_json == "{}") {
        frame.push_str(r#","backpacks":"#);
        push_list(&mut frame, tasks.iter().map(|t| &*t.backpack_json));
    }
    frame.push('}');
    frame.into_bytes()
}

/// Appends `[k,…]`, the keys as decimal numbers.
fn push_keys(frame: &mut String, keys: impl Iterator<Item = u64>) {
    let mut digits = itoa::Buffer::new();
    frame.push('[');
    for (i, key) in keys.enumerate() {
        if i > 0 {
            frame.push(',');
        }
        frame.push_str(digits.format(key));
    }
    frame.push(']');
}

/// Appends `[a,b,…]`: the items are JSON texts already.
fn push_list<'a>(frame: &mut String, items: impl Iterator<Item = &'a str>) {
    frame.push('[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            frame.push(',');
        }
        frame.push_str(item);
    }
    frame.push(']');
}

/// What a worker sends back.
#[derive(Debug, PartialEq, Deserialize, EnumDiscriminants)]
#[strum_discriminants(
    name(ReplyOp),
    derive(EnumIter, IntoStaticStr),
    strum(serialize_all = "snake_case")
)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    /// A program was compiled: what did not compile, per block.
    Loaded {
        program: u64,
        errors: Vec<LoadError>,
    },
    /// Results of invocations: the binary results frame, never JSON.
    #[serde(skip)]
    Results(Results),
    /// User code called `os._exit(code)` in invocation `key`: the worker is about to end.
    Exiting { key: u64, code: i64 },
    /// Invocation `key` ran past its timeout and ignored the interrupt: the worker must be killed.
    Stuck { key: u64 },
    /// Alive, while invocations run.
    Beat,
}

/// A block's code, or one of its `if` expressions, that does not compile.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadError {
    /// The block's index in the program.
    pub block: u32,
    /// The `if` expression's index among the block's (`None`: the block's code, or a fan-out's).
    #[serde(rename = "if")]
    pub if_index: Option<u32>,
    /// The fan-out's index among the block's whose key or label expression does not compile.
    #[serde(default)]
    pub fan_out: Option<u32>,
    pub line: Option<u32>,
    pub message: String,
}

/// How an invocation ended, as the integer a result row carries.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    serde_repr::Serialize_repr,
    serde_repr::Deserialize_repr,
    EnumIter,
    IntoStaticStr,
)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
#[repr(u8)]
pub enum Status {
    Returned = 0,
    Raised = 1,
    TimedOut = 2,
    Cancelled = 3,
}

/// Why the native loop (`native.rs`) handed a batch back to the worker's Python: the first item of the
/// tuple it leaves in its `hand` list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, IntoStaticStr)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
#[repr(u8)]
pub enum NativeStop {
    /// The batch has no task left.
    Exhausted = 0,
    /// Results are due to go out (enough of them, or one took long).
    Flush = 1,
    /// An invocation raised: the task, its backpack, the exception, its start and duration.
    Raised = 2,
    /// An invocation printed (or did something else that makes its row a full one): the task, its
    /// backpack, the return value, its start and duration.
    Printed = 3,
    /// The next task was cancelled before it ran: the task.
    Cancelling = 4,
}

/// A short row's backpack (and a full row's) that is the one the invocation was given, unchanged: it
/// is not sent back.
pub const UNCHANGED: i64 = 0;

/// The exit code of a worker whose pipes to Braid were closed under it (a block's `os.closerange`):
/// it can say nothing else, and a worker that went on running is ended by Braid with the same verdict.
pub const EXIT_PIPES_CLOSED: i32 = 75;

/// The first byte of a results frame (a JSON reply starts with `{`).
pub const RESULTS_TAG: u8 = b'R';

/// A results frame: the worker's start (wall-clock µs since the epoch; the rows' times count from it)
/// and its rows, short ones first.
#[derive(Clone, Debug, PartialEq)]
pub struct Results {
    pub start_wall_us: u64,
    pub rows: Vec<ResultRow>,
}

/// One invocation's result. On the wire a full row is the JSON array `[key, t0, duration, value,
/// backpack, status, ifs, stdout, stderr, error, items]` (`error`: `[type, message, traceback, line]`
/// or `null`; `items`: `null`, or one `[keys, labels]` per fan-out of the block, each a list of texts
/// or `null`); a short row (returned, printed nothing, no `if`s, no item names) is spread over the
/// frame's columns.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ResultRow {
    pub key: u64,
    /// Nanoseconds after the worker's start.
    pub t0_ns: i64,
    pub duration_ns: i64,
    /// What `main` returned (`null` unless it returned).
    pub value: Value,
    /// The backpack after the invocation; `None`: the one it was given, unchanged ([`UNCHANGED`]).
    #[serde(deserialize_with = "backpack")]
    pub backpack: Option<Value>,
    pub status: Status,
    /// One per `if` transition of the block, in project order.
    pub ifs: Vec<bool>,
    pub stdout: String,
    pub stderr: String,
    pub error: Option<ErrorInfo>,
    /// The names of the returned value's items, one entry per fan-out of the block, when the block's
    /// fan-outs name their items (empty otherwise).
    #[serde(default, deserialize_with = "items")]
    pub items: Vec<ItemLists>,
}

/// One fan-out's item keys and labels, as the worker evaluated them: `[keys, labels]` on the wire,
/// each `null` without its expression.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemLists(#[serde(with = "crate::run::names_pair")] pub ItemNames);

fn items<'de, D: serde::Deserializer<'de>>(reader: D) -> Result<Vec<ItemLists>, D::Error> {
    Ok(Option::<Vec<ItemLists>>::deserialize(reader)?.unwrap_or_default())
}

fn backpack<'de, D: serde::Deserializer<'de>>(reader: D) -> Result<Option<Value>, D::Error> {
    let value = Value::deserialize(reader)?;
    Ok((value != UNCHANGED).then_some(value))
}

impl ResultRow {
    /// A row that goes in the frame's columns rather than as a full row.
    fn is_short(&self) -> bool {
        self.status == Status::Returned
            && self.ifs.is_empty()
            && self.items.is_empty()
            && self.stdout.is_empty()
            && self.stderr.is_empty()
            && self.error.is_none()
    }

    /// A short row read from the columns.
    fn short(key: i64, t0_ns: i64, duration_ns: i64) -> Self {
        Self {
            key: key.cast_unsigned(),
            t0_ns,
            duration_ns,
            value: Value::Null,
            backpack: None,
            status: Status::Returned,
            ifs: Vec::new(),
            stdout: String::new(),
            stderr: String::new(),
            error: None,
            items: Vec::new(),
        }
    }

    /// The invocation failed after all (its value can't be kept): say why, keep its times and output.
    fn fail(&mut self, message: String) {
        self.status = Status::Raised;
        self.value = Value::Null;
        self.backpack = None;
        self.error = Some(ErrorInfo {
            kind: "ValueError".to_owned(),
            message,
            traceback: String::new(),
            line: None,
        });
    }
}

/// A full row as the worker writes it: an array, not an object.
impl Serialize for ResultRow {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple as _;
        let mut row = serializer.serialize_tuple(11)?;
        row.serialize_element(&self.key)?;
        row.serialize_element(&self.t0_ns)?;
        row.serialize_element(&self.duration_ns)?;
        row.serialize_element(&self.value)?;
        match &self.backpack {
            Some(backpack) => row.serialize_element(backpack)?,
            None => row.serialize_element(&UNCHANGED)?,
        }
        row.serialize_element(&self.status)?;
        row.serialize_element(&self.ifs)?;
        row.serialize_element(&self.stdout)?;
        row.serialize_element(&self.stderr)?;
        row.serialize_element(
            &self
                .error
                .as_ref()
                .map(|e| (&e.kind, &e.message, &e.traceback, e.line)),
        )?;
        row.serialize_element(&(!self.items.is_empty()).then_some(&self.items))?;
        row.end()
    }
}

/// A results frame's body: the short rows' columns (`keys`, `t0s`, `durations`: n each), their return
/// values and backpacks as JSON lists (`None`: all unchanged), and the full rows as a JSON list.
pub struct ResultsParts<'a> {
    pub start_wall_us: u64,
    pub keys: &'a [i64],
    pub t0s: &'a [i64],
    pub durations: &'a [i64],
    pub values: &'a [u8],
    pub backpacks: Option<&'a [u8]>,
    pub full: &'a [u8],
}

/// The results frame's bytes (the layout at the top of this file). `None` when a part is past what its
/// `u32` length can say, or the columns differ in length.
pub fn write_results(parts: &ResultsParts<'_>) -> Option<Vec<u8>> {
    let n = parts.keys.len();
    if parts.t0s.len() != n || parts.durations.len() != n {
        return None;
    }
    let backpacks = parts.backpacks.unwrap_or(b"0");
    let mut frame = Vec::with_capacity(
        1 + 12 + 24 * n + 12 + parts.values.len() + backpacks.len() + parts.full.len(),
    );
    frame.push(RESULTS_TAG);
    frame.extend_from_slice(&parts.start_wall_us.to_le_bytes());
    frame.extend_from_slice(&u32::try_from(n).ok()?.to_le_bytes());
    for column in [parts.keys, parts.t0s, parts.durations] {
        for value in column {
            frame.extend_from_slice(&value.to_le_bytes());
        }
    }
    for part in [parts.values, backpacks, parts.full] {
        frame.extend_from_slice(&u32::try_from(part.len()).ok()?.to_le_bytes());
        frame.extend_from_slice(part);
    }
    Some(frame)
}

impl Results {
    /// The frame a worker would send for these rows: short ones in the columns, the rest as full rows
    /// (so [`read_reply`] gives them back short ones first).
    pub fn encode(&self) -> Option<Vec<u8>> {
        let (short, full): (Vec<&ResultRow>, Vec<&ResultRow>) =
            self.rows.iter().partition(|r| r.is_short());
        let column = |f: fn(&ResultRow) -> i64| short.iter().map(|r| f(r)).collect::<Vec<i64>>();
        let values =
            serde_json::to_vec(&short.iter().map(|r| &r.value).collect::<Vec<_>>()).ok()?;
        let backpacks = short
            .iter()
            .any(|r| r.backpack.is_some())
            .then(|| {
                let list: Vec<Value> = short
                    .iter()
                    .map(|r| r.backpack.clone().unwrap_or(Value::from(UNCHANGED)))
                    .collect();
                serde_json::to_vec(&list)
            })
            .transpose()
            .ok()?;
        write_results(&ResultsParts {
            start_wall_us: self.start_wall_us,
            keys: &column(|r| r.key.cast_signed()),
            t0s: &column(|r| r.t0_ns),
            durations: &column(|r| r.duration_ns),
            values: &values,
            backpacks: backpacks.as_deref(),
            full: &serde_json::to_vec(&full).ok()?,
        })
    }
}

/// A reply frame's body, whichever kind. An `op` Braid does not know is an error that names it.
pub fn read_reply(body: &[u8]) -> Result<Reply, String> {
    match body.split_first() {
        Some((&RESULTS_TAG, rest)) => read_results(rest).map(Reply::Results),
        _ => serde_json::from_slice(body).map_err(|e| e.to_string()),
    }
}

/// A results frame after its tag.
fn read_results(body: &[u8]) -> Result<Results, String> {
    let mut rest = body;
    let mut take = |n: usize| -> Result<&[u8], String> {
        if rest.len() < n {
            return Err("a results frame is cut short".to_owned());
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let start_wall_us = u64::from_le_bytes(take(8)?.try_into().map_err(|_| "bad header")?);
    let n = u32::from_le_bytes(take(4)?.try_into().map_err(|_| "bad header")?) as usize;
    let column = |bytes: &[u8]| -> Vec<i64> {
        bytes
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect()
    };
    let size = n.checked_mul(8).ok_or("a results frame is cut short")?;
    let keys = column(take(size)?);
    let t0s = column(take(size)?);
    let durations = column(take(size)?);
    let mut json = || -> Result<&[u8], String> {
        let len = u32::from_le_bytes(take(4)?.try_into().map_err(|_| "bad length")?);
        take(len as usize)
    };
    let values = json_list(json()?, "return value")?;
    let backpacks = json()?;
    let backpacks = if backpacks == b"0" {
        vec![Ok(Value::from(UNCHANGED)); n]
    } else {
        json_list(backpacks, "backpack")?
    };
    let full = full_rows(json()?)?;
    if values.len() != n || backpacks.len() != n {
        return Err(format!(
            "{n} results but {} return values and {} backpacks",
            values.len(),
            backpacks.len()
        ));
    }
    let mut rows = Vec::with_capacity(n + full.len());
    for (i, (value, backpack)) in values.into_iter().zip(backpacks).enumerate() {
        let mut row = ResultRow::short(keys[i], t0s[i], durations[i]);
        match (value, backpack) {
            (Ok(value), Ok(backpack)) => {
                row.value = value;
                row.backpack = (backpack != UNCHANGED).then_some(backpack);
            }
            (Err(too_deep), _) | (_, Err(too_deep)) => row.fail(too_deep),
        }
        rows.push(row);
    }
    rows.extend(full);
    Ok(Results {
        start_wall_us,
        rows,
    })
}

/// The deepest nesting a value may have: `serde_json`'s own limit, which keeps every thread's stack safe
/// (Python's encoder goes to about 1,000).
const MAX_DEPTH: usize = 127;

/// A results frame's JSON list of values. A value nested deeper than [`MAX_DEPTH`] is an error of its
/// own (its invocation fails, saying so), not a broken frame.
fn json_list(json: &[u8], what: &str) -> Result<Vec<Result<Value, String>>, String> {
    match serde_json::from_slice::<Vec<Value>>(json) {
        Ok(values) => Ok(values.into_iter().map(Ok).collect()),
        Err(e) if too_deep(&e) => Ok(split_list(json)?
            .into_iter()
            .map(|(element, depth)| parse_element(element, depth, what))
            .collect()),
        Err(e) => Err(e.to_string()),
    }
}

fn too_deep(error: &serde_json::Error) -> bool {
    error.to_string().contains("recursion limit exceeded")
}

fn parse_element(element: &[u8], depth: usize, what: &str) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "the {what} is nested {depth} levels deep; Braid keeps values up to {MAX_DEPTH} levels"
        ));
    }
    serde_json::from_slice(element).map_err(|e| e.to_string())
}

/// The full rows; a row holding a value nested too deep fails alone, keeping its key, times and output.
fn full_rows(json: &[u8]) -> Result<Vec<ResultRow>, String> {
    match serde_json::from_slice::<Vec<ResultRow>>(json) {
        Ok(rows) => Ok(rows),
        Err(e) if too_deep(&e) => split_list(json)?
            .into_iter()
            .map(|(row, _)| match serde_json::from_slice::<ResultRow>(row) {
                Ok(row) => Ok(row),
                Err(e) if too_deep(&e) => deep_row(row),
                Err(e) => Err(e.to_string()),
            })
            .collect(),
        Err(e) => Err(e.to_string()),
    }
}

/// A full row with a value too deep in it: its other fields as sent, the invocation failed.
fn deep_row(row: &[u8]) -> Result<ResultRow, String> {
    let fields = split_list(row)?;
    let field = |i: usize| -> Result<Value, String> {
        let (bytes, depth) = fields.get(i).ok_or("a result row is cut short")?;
        parse_element(
            bytes,
            *depth,
            if i == 3 { "return value" } else { "backpack" },
        )
    };
    let plain = |i: usize| field(i).map_err(|_| "a result row is damaged".to_owned());
    let number = |i: usize| plain(i).map(|v| v.as_i64().unwrap_or_default());
    let text = |i: usize| {
        plain(i)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let mut result = ResultRow::short(
        plain(0)?
            .as_u64()
            .ok_or("a result row has no key")?
            .cast_signed(),
        number(1)?,
        number(2)?,
    );
    result.stdout = text(7);
    result.stderr = text(8);
    match (field(3), field(4)) {
        (Err(too_deep), _) | (_, Err(too_deep)) => result.fail(too_deep),
        // The depth was elsewhere (the error's text): say so plainly.
        (Ok(_), Ok(_)) => result.fail(format!(
            "its result is nested more than {MAX_DEPTH} levels deep"
        )),
    }
    Ok(result)
}

/// A JSON array's elements, each as its bytes and its nesting depth, without parsing them.
fn split_list(json: &[u8]) -> Result<Vec<(&[u8], usize)>, String> {
    let damaged = || "a results frame's JSON is damaged".to_owned();
    let skip_space = |mut i: usize| {
        while json.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    let mut i = skip_space(0);
    if json.get(i) != Some(&b'[') {
        return Err(damaged());
    }
    i = skip_space(i + 1);
    let mut elements = Vec::new();
    if json.get(i) == Some(&b']') {
        return Ok(elements);
    }
    loop {
        let start = i;
        let (mut depth, mut deepest, mut in_string, mut escaped) = (0_usize, 0, false, false);
        while let Some(&c) = json.get(i) {
            if in_string {
                match c {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => in_string = false,
                    _ => {}
                }
            } else {
                match c {
                    b'"' => in_string = true,
                    b'[' | b'{' => {
                        depth += 1;
                        deepest = deepest.max(depth);
                    }
                    b']' | b'}' | b',' if depth == 0 => break,
                    b']' | b'}' => depth -= 1,
                    _ => {}
                }
            }
            i += 1;
        }
        elements.push((&json[start..i], deepest));
        match json.get(i) {
            Some(b',') => i = skip_space(i + 1),
            Some(b']') => return Ok(elements),
            _ => return Err(damaged()),
        }
    }
}

/// The text of `python/braid_worker/constants.py`: the names the worker's Python uses for what this
/// file defines, written from the definitions themselves. A test checks that the file holds exactly
/// this (`BRAID_WRITE_CONSTANTS=1 cargo test --lib constants` rewrites it).
#[cfg(test)]
fn python_constants() -> String {
    use strum::IntoEnumIterator as _;
    let mut text = String::from(
        "# Written by Braid from src/runtime/worker/protocol.rs (python_constants): do not edit.\n\
         # `cargo test` checks that this file is what the Rust definitions say.\n\
         # The protocol itself: docs/worker-protocol.md.\n",
    );
    let mut section = |title: &str, lines: Vec<(String, String)>| {
        let _ = write!(text, "\n# {title}\n");
        for (name, value) in lines {
            let _ = writeln!(text, "{name} = {value}");
        }
    };
    let op = |name: &'static str| (format!("OP_{}", name.to_uppercase()), format!("{name:?}"));
    section(
        "Requests (Braid to the worker): their `op`.",
        RequestOp::iter().map(|o| op(o.into())).collect(),
    );
    section(
        "How a run request starts.",
        vec![("RUN_PREFIX".to_owned(), format!("b'{RUN_PREFIX}'"))],
    );
    section(
        "Replies (the worker to Braid): their `op` (results go in a binary frame).",
        ReplyOp::iter()
            .filter(|o| *o != ReplyOp::Results)
            .map(|o| op(o.into()))
            .collect(),
    );
    section(
        "The first byte of a results frame.",
        vec![(
            "RESULTS_TAG".to_owned(),
            format!("b\"{}\"", char::from(RESULTS_TAG)),
        )],
    );
    section(
        "A result row's status.",
        Status::iter()
            .map(|s| (<&str>::from(s).to_owned(), (s as u8).to_string()))
            .collect(),
    );
    section(
        "A backpack that is the one the invocation was given, unchanged.",
        vec![("UNCHANGED".to_owned(), UNCHANGED.to_string())],
    );
    section(
        "How a worker whose pipes to Braid were closed under it exits.",
        vec![(
            "EXIT_PIPES_CLOSED".to_owned(),
            EXIT_PIPES_CLOSED.to_string(),
        )],
    );
    section(
        "Why the native loop handed a batch back.",
        NativeStop::iter()
            .map(|s| (format!("NATIVE_{}", <&str>::from(s)), (s as u8).to_string()))
            .collect(),
    );
    text
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use pyo3::prelude::*;
    use serde_json::json;
    use strum::IntoEnumIterator as _;

    use super::*;

    const CONSTANTS_PY: &str = include_str!("python/braid_worker/constants.py");
    const PROTOCOL_PY: &str = include_str!("python/braid_worker/protocol.py");

    fn row(key: u64, value: Value) -> ResultRow {
        let mut row = ResultRow::short(
            key.cast_signed(),
            (key % 1_000_000).cast_signed() * 1_000,
            7,
        );
        row.value = value;
        row
    }

    fn round_trip(results: &Results) -> Results {
        match read_reply(&results.encode().expect("encodes")).expect("reads") {
            Reply::Results(back) => back,
            other => panic!("{other:?}"),
        }
    }

    /// Rows written by the writer read back as they were: short rows in the columns (first), full rows
    /// after them, with every kind of edge a frame can have.
    #[test]
    fn a_results_frame_reads_back_as_the_rows_written() {
        let mut changed = row(3, json!({"k": [1, 2.5]}));
        changed.backpack = Some(json!({"seen": true}));
        let mut printed = row(4, json!("out"));
        printed.stdout = "hello\n".to_owned();
        printed.stderr = "warn é\n".to_owned();
        let mut raised = row(5, Value::Null);
        raised.status = Status::Raised;
        raised.backpack = Some(Value::Null);
        raised.error = Some(ErrorInfo {
            kind: "ValueError".to_owned(),
            message: "bad".to_owned(),
            traceback: "Traceback…".to_owned(),
            line: Some(3),
        });
        let mut with_ifs = row(6, json!(1));
        with_ifs.ifs = vec![true, false];
        with_ifs.backpack = Some(json!({}));
        let mut timed_out = row(7, Value::Null);
        timed_out.status = Status::TimedOut;
        timed_out.error = Some(ErrorInfo {
            kind: "Timeout".to_owned(),
            message: "ran past its timeout of 1 s".to_owned(),
            traceback: String::new(),
            line: None,
        });
        let mut cancelled = row(8, Value::Null);
        cancelled.status = Status::Cancelled;
        let mut named = row(9, json!([{"id": "a"}, {"id": "b"}]));
        named.items = vec![
            ItemLists(ItemNames::new(Some(["a", "b"]), None::<[&str; 0]>)),
            ItemLists(ItemNames::new(None::<[&str; 0]>, Some(["A é", ""]))),
        ];
        let big_key = row(u64::MAX >> 1, json!([null, false, "x"]));
        let cases: Vec<(&str, Vec<ResultRow>)> = vec![
            ("no rows", vec![]),
            (
                "short rows, backpacks unchanged",
                vec![row(1, json!(10)), row(2, json!(null)), big_key.clone()],
            ),
            (
                "short rows, one backpack changed",
                vec![row(1, json!(10)), changed.clone()],
            ),
            (
                "full rows only",
                vec![printed.clone(), raised.clone(), with_ifs.clone()],
            ),
            (
                "both",
                vec![
                    row(1, json!(10)),
                    changed,
                    printed,
                    raised,
                    with_ifs,
                    timed_out,
                    cancelled,
                    named,
                ],
            ),
        ];
        for (case, rows) in cases {
            let results = Results {
                start_wall_us: 1_700_000_000_000_000,
                rows,
            };
            assert_eq!(round_trip(&results), results, "{case}");
        }
    }

    /// What the writer puts where, read without the reader: the layout the docs describe.
    #[test]
    fn a_results_frame_is_laid_out_as_documented() {
        let frame = write_results(&ResultsParts {
            start_wall_us: 5,
            keys: &[9],
            t0s: &[-1],
            durations: &[2],
            values: b"[7]",
            backpacks: None,
            full: b"[]",
        })
        .unwrap();
        let mut expected = vec![b'R'];
        expected.extend(5_u64.to_le_bytes());
        expected.extend(1_u32.to_le_bytes());
        expected.extend(9_i64.to_le_bytes());
        expected.extend((-1_i64).to_le_bytes());
        expected.extend(2_i64.to_le_bytes());
        for part in [&b"[7]"[..], b"0", b"[]"] {
            expected.extend(u32::try_from(part.len()).unwrap().to_le_bytes());
            expected.extend(part);
        }
        assert_eq!(frame, expected);
        let uneven = ResultsParts {
            keys: &[1, 2],
            ..ResultsParts {
                start_wall_us: 0,
                keys: &[],
                t0s: &[0],
                durations: &[0],
                values: b"[]",
                backpacks: None,
                full: b"[]",
            }
        };
        assert_eq!(write_results(&uneven), None);
    }

    #[test]
    fn a_damaged_results_frame_is_an_error_not_a_panic() {
        let good = Results {
            start_wall_us: 1,
            rows: vec![row(1, json!(1)), row(2, json!(2))],
        }
        .encode()
        .unwrap();
        for cut in [1, 5, 13, 20, good.len() - 1] {
            assert!(read_reply(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge = good.clone();
        huge[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            read_reply(&huge).unwrap_err(),
            "a results frame is cut short"
        );
        let mut miscounted = good;
        miscounted[9..13].copy_from_slice(&1_u32.to_le_bytes());
        assert!(read_reply(&miscounted).is_err());
    }

    #[test]
    fn a_value_too_deep_fails_alone() {
        let deep = format!("{}0{}", "[".repeat(200), "]".repeat(200));
        let list = format!("[1, {deep}, 3]");
        let values = json_list(list.as_bytes(), "return value").unwrap();
        assert_eq!(values[0], Ok(Value::from(1)));
        assert_eq!(
            values[1],
            Err(
                "the return value is nested 200 levels deep; Braid keeps values up to 127 levels"
                    .to_owned()
            )
        );
        assert_eq!(values[2], Ok(Value::from(3)));
        // Damage is still damage.
        assert!(json_list(b"[1, oops]", "return value").is_err());
        // In a full row, the row fails alone with its key, times and printed output.
        let full =
            format!(r#"[[4,10,20,{deep},{{}},0,[],"said","",null],[5,1,2,6,0,0,[],"","",null]]"#);
        let rows = full_rows(full.as_bytes()).unwrap();
        assert_eq!(
            (rows[0].key, rows[0].t0_ns, rows[0].duration_ns),
            (4, 10, 20)
        );
        assert_eq!(rows[0].status, Status::Raised);
        assert_eq!(rows[0].stdout, "said");
        assert!(
            rows[0]
                .error
                .as_ref()
                .unwrap()
                .message
                .contains("nested 200 levels deep")
        );
        assert_eq!((rows[1].key, rows[1].value.clone()), (5, json!(6)));
    }

    #[test]
    fn split_list_finds_elements_and_depths_past_strings() {
        let json = br#" [ 1, "a,]\"[{", [[2]], {"k": [3, "]"]} ] "#;
        let parts: Vec<(String, usize)> = split_list(json)
            .unwrap()
            .into_iter()
            .map(|(bytes, depth)| (String::from_utf8_lossy(bytes).trim().to_owned(), depth))
            .collect();
        assert_eq!(
            parts,
            [
                ("1".to_owned(), 0),
                (r#""a,]\"[{""#.to_owned(), 0),
                ("[[2]]".to_owned(), 2),
                (r#"{"k": [3, "]"]}"#.to_owned(), 2),
            ]
        );
        assert_eq!(split_list(b"[]").unwrap().len(), 0);
        assert!(split_list(b"[1, 2").is_err());
        assert!(split_list(b"{}").is_err());
    }

    /// A reply Braid does not know is an error naming its `op`, not something passed over.
    #[test]
    fn an_unknown_reply_is_an_error_that_names_it() {
        let error = read_reply(br#"{"op":"hello","key":1}"#).unwrap_err();
        assert!(error.starts_with("unknown variant `hello`"), "{error}");
        let error = read_reply(br#"{"op":"results"}"#).unwrap_err();
        assert!(error.starts_with("unknown variant `results`"), "{error}");
        let error = read_reply(br#"{"op":"stuck","key":1,"extra":2}"#).unwrap_err();
        assert!(error.contains("unknown field `extra`"), "{error}");
        let error = read_reply(br#"{"key":1}"#).unwrap_err();
        assert!(error.contains("missing field `op`"), "{error}");
        let status = br#"[[1,0,0,null,0,7,[],"","",null]]"#;
        let error = full_rows(status).unwrap_err();
        assert!(error.contains('7'), "{error}");
    }

    fn task(key: u64, input: &str, backpack: &str) -> Task {
        Task {
            key,
            attempt: 1,
            program: 3,
            block: 2,
            timeout_s: 1.0,
            input_json: input.into(),
            backpack_json: Arc::from(backpack),
        }
    }

    /// Requests as the worker reads them: `op` first (a run's as [`RUN_PREFIX`]), a run's inputs and
    /// backpacks as the JSON values they were, backpacks left out when every one starts empty.
    #[test]
    fn requests_are_written_as_the_worker_reads_them() {
        let fresh = [task(1, "10", "{}"), task(2, r#"{"a":[1]}"#, "{}")];
        let frame = Request::Run {
            program: 3,
            block: 2,
            tasks: &fresh,
        }
        .encode();
        assert!(frame.starts_with(RUN_PREFIX.as_bytes()));
        assert_eq!(
            serde_json::from_slice::<Value>(&frame).unwrap(),
            json!({"op": "run", "program": 3, "block": 2, "keys": [1, 2], "inputs": [10, {"a": [1]}]})
        );
        let carried = [task(1, "null", r#"{"n":1}"#), task(2, "2", "{}")];
        let frame = Request::Run {
            program: 3,
            block: 2,
            tasks: &carried,
        }
        .encode();
        assert_eq!(
            serde_json::from_slice::<Value>(&frame).unwrap(),
            json!({"op": "run", "program": 3, "block": 2, "keys": [1, 2], "inputs": [null, 2], "backpacks": [{"n": 1}, {}]})
        );
        assert_eq!(
            Request::Cancel { keys: &[4, 5] }.encode(),
            br#"{"op":"cancel","keys":[4,5]}"#
        );
        assert_eq!(
            Request::Unload { program: 9 }.encode(),
            br#"{"op":"unload","program":9}"#
        );
        let program = Program {
            id: 4,
            blocks: Vec::new(),
            site_packages: None,
            cwd: None,
            compile_only: true,
            requirements: vec!["numpy".to_owned()],
        };
        assert_eq!(
            serde_json::from_slice::<Value>(&Request::Load(&program).encode()).unwrap(),
            json!({"op": "load", "program": 4, "blocks": [], "site_packages": null, "cwd": null, "compile_only": true})
        );
        // Each op is the name the constants give it.
        let ops: Vec<&str> = RequestOp::iter().map(<&str>::from).collect();
        assert_eq!(ops, ["load", "run", "cancel", "unload"]);
        assert_eq!(RUN_PREFIX, r#"{"op":"run","#);
    }

    /// `constants.py` is what the Rust definitions say, and Python reads from it the same values.
    #[test]
    fn the_python_constants_are_written_from_the_definitions() {
        let text = python_constants();
        if std::env::var_os("BRAID_WRITE_CONSTANTS").is_some() {
            let path = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/src/runtime/worker/python/braid_worker/constants.py"
            );
            std::fs::write(path, &text).unwrap();
            return;
        }
        assert_eq!(
            CONSTANTS_PY, text,
            "constants.py is out of date: BRAID_WRITE_CONSTANTS=1 cargo test --lib constants"
        );
        Python::attach(|py| {
            let code = std::ffi::CString::new(CONSTANTS_PY).unwrap();
            let module =
                pyo3::types::PyModule::from_code(py, &code, c"constants.py", c"constants").unwrap();
            let get = |name: &str| module.getattr(name).unwrap();
            for status in Status::iter() {
                assert_eq!(get(status.into()).extract::<u8>().unwrap(), status as u8);
            }
            for stop in NativeStop::iter() {
                let name = format!("NATIVE_{}", <&str>::from(stop));
                assert_eq!(get(&name).extract::<u8>().unwrap(), stop as u8);
            }
            for op in RequestOp::iter().map(<&str>::from).chain(
                ReplyOp::iter()
                    .filter(|o| *o != ReplyOp::Results)
                    .map(<&str>::from),
            ) {
                let name = format!("OP_{}", op.to_uppercase());
                assert_eq!(get(&name).extract::<String>().unwrap(), op);
            }
            assert_eq!(
                get("RUN_PREFIX").extract::<Vec<u8>>().unwrap(),
                RUN_PREFIX.as_bytes()
            );
            assert_eq!(
                get("RESULTS_TAG").extract::<Vec<u8>>().unwrap(),
                [RESULTS_TAG]
            );
            assert_eq!(get("UNCHANGED").extract::<i64>().unwrap(), UNCHANGED);
        });
    }

    /// `protocol.py` as a module of its own (the constants it imports beside it), in a plain Python:
    /// without Braid's native module, as the package runs in its own tests.
    fn plain_protocol(py: Python<'_>) -> Bound<'_, pyo3::types::PyModule> {
        let package = pyo3::types::PyModule::new(py, "protocol_test_package").unwrap();
        let constants = pyo3::types::PyModule::from_code(
            py,
            &std::ffi::CString::new(CONSTANTS_PY).unwrap(),
            c"constants.py",
            c"protocol_test_package.constants",
        )
        .unwrap();
        package.setattr("constants", &constants).unwrap();
        package.setattr("__path__", Vec::<String>::new()).unwrap();
        let modules = py.import("sys").unwrap().getattr("modules").unwrap();
        modules.set_item("protocol_test_package", &package).unwrap();
        modules
            .set_item("protocol_test_package.constants", &constants)
            .unwrap();
        let source = PROTOCOL_PY.replace("from braid_native import", "from no_such_module import");
        pyo3::types::PyModule::from_code(
            py,
            &std::ffi::CString::new(source).unwrap(),
            c"protocol.py",
            c"protocol_test_package.protocol",
        )
        .unwrap()
    }

    fn tuple<'py>(
        py: Python<'py>,
        items: Vec<Bound<'py, PyAny>>,
    ) -> Bound<'py, pyo3::types::PyTuple> {
        pyo3::types::PyTuple::new(py, items).unwrap()
    }

    /// The replies `protocol.py` builds read as the replies they are; its own writer of results frames
    /// (for a Python without Braid's native module) packs the bytes [`write_results`] does.
    #[test]
    fn the_python_side_writes_what_the_rust_side_reads() {
        Python::attach(|py| {
            let protocol = plain_protocol(py);
            let call = |name: &str, args: Bound<'_, pyo3::types::PyTuple>| -> Vec<u8> {
                let message = protocol.getattr(name).unwrap().call1(args).unwrap();
                protocol
                    .getattr("message")
                    .unwrap()
                    .call1((message,))
                    .unwrap()
                    .extract()
                    .unwrap()
            };
            let int = |n: i64| n.into_pyobject(py).unwrap().into_any();
            let text = |s: &str| pyo3::types::PyString::new(py, s).into_any();
            let none = py.None().into_bound(py);
            let load_error = protocol.getattr("load_error").unwrap();
            let errors = pyo3::types::PyList::new(
                py,
                [
                    load_error
                        .call1((0, none.clone(), 3, "SyntaxError: invalid syntax"))
                        .unwrap(),
                    load_error
                        .call1((1, 2, none.clone(), "if expression"))
                        .unwrap(),
                ],
            )
            .unwrap()
            .into_any();
            assert_eq!(
                read_reply(&call("loaded", tuple(py, vec![int(7), errors]))).unwrap(),
                Reply::Loaded {
                    program: 7,
                    errors: vec![
                        LoadError {
                            block: 0,
                            if_index: None,
                            fan_out: None,
                            line: Some(3),
                            message: "SyntaxError: invalid syntax".to_owned()
                        },
                        LoadError {
                            block: 1,
                            if_index: Some(2),
                            fan_out: None,
                            line: None,
                            message: "if expression".to_owned()
                        },
                    ]
                }
            );
            assert_eq!(
                read_reply(&call("exiting", tuple(py, vec![int(12), int(-3)]))).unwrap(),
                Reply::Exiting { key: 12, code: -3 }
            );
            assert_eq!(
                read_reply(&call("stuck", tuple(py, vec![int(13)]))).unwrap(),
                Reply::Stuck { key: 13 }
            );
            assert_eq!(
                read_reply(&call("beat", tuple(py, vec![]))).unwrap(),
                Reply::Beat
            );

            // A full row and an error as protocol.py builds them.
            let error = protocol
                .getattr("error")
                .unwrap()
                .call1(tuple(
                    py,
                    vec![text("KeyError"), text("'x'"), text("tb"), int(4)],
                ))
                .unwrap();
            let ifs = pyo3::types::PyList::new(py, [true, false])
                .unwrap()
                .into_any();
            let full = protocol
                .getattr("full_row")
                .unwrap()
                .call1(tuple(
                    py,
                    vec![
                        int(21),
                        int(100),
                        int(50),
                        none.clone(),
                        int(UNCHANGED),
                        int(Status::Raised as i64),
                        ifs,
                        text("out"),
                        text("err"),
                        error,
                    ],
                ))
                .unwrap();
            let full_json: Vec<u8> = protocol
                .getattr("encode_rows")
                .unwrap()
                .call1((pyo3::types::PyList::new(py, [full]).unwrap(),))
                .unwrap()
                .extract()
                .unwrap();
            let expected_full = ResultRow {
                key: 21,
                t0_ns: 100,
                duration_ns: 50,
                value: Value::Null,
                backpack: None,
                status: Status::Raised,
                ifs: vec![true, false],
                stdout: "out".to_owned(),
                stderr: "err".to_owned(),
                error: Some(ErrorInfo {
                    kind: "KeyError".to_owned(),
                    message: "'x'".to_owned(),
                    traceback: "tb".to_owned(),
                    line: Some(4),
                }),
                items: Vec::new(),
            };
            // The plain writer packs what the Rust writer does, for each kind of frame.
            let pack = protocol.getattr("pack_results_plain").unwrap();
            for (keys, values, backpacks, full) in [
                (vec![], &b"[]"[..], None, &b"[]"[..]),
                (vec![5_i64, 6], b"[1,\"a\"]", None, b"[]"),
                (vec![5], b"[1]", Some(&b"[{\"k\":1}]"[..]), &full_json[..]),
                (vec![], b"[]", None, &full_json[..]),
            ] {
                let t0s: Vec<i64> = keys.iter().map(|k| k * 10).collect();
                let durations: Vec<i64> = keys.iter().map(|k| -k).collect();
                let parts = ResultsParts {
                    start_wall_us: 1_700_000_000_000_001,
                    keys: &keys,
                    t0s: &t0s,
                    durations: &durations,
                    values,
                    backpacks,
                    full,
                };
                let ours = write_results(&parts).unwrap();
                let theirs: Vec<u8> = pack
                    .call1((
                        parts.start_wall_us,
                        keys.clone(),
                        t0s.clone(),
                        durations.clone(),
                        pyo3::types::PyBytes::new(py, values),
                        backpacks.map(|b| pyo3::types::PyBytes::new(py, b)),
                        pyo3::types::PyBytes::new(py, full),
                    ))
                    .unwrap()
                    .extract()
                    .unwrap();
                assert_eq!(theirs, ours, "{keys:?}");
                let Reply::Results(back) = read_reply(&theirs).unwrap() else {
                    panic!("not results");
                };
                if full.len() > 2 {
                    assert_eq!(back.rows.last(), Some(&expected_full));
                }
                assert_eq!(back.rows.len(), keys.len() + usize::from(full.len() > 2));
            }
        });
    }
}
