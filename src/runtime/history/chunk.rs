//! Chunks: a batch of invocation records as one compact blob, the `data` of a `chunks` row.
//!
//! Recording must cost well under a microsecond of CPU per record (the workers and the engine already use
//! every core), so a record is a few varints and the JSON text of its values, nothing more. A chunk is a
//! format byte and then segments, one per batch the engine sent; the writer concatenates the batches of
//! a transaction without re-encoding them. A segment:
//!
//! ```text
//! count, body length              varints
//! base id                         varint: every id of the segment is at least this
//! base time                       8 bytes, an f64's bits (little-endian)
//! common parent                   varint: the parent of most records (a fan-out's), 0 for none
//! blocks                          varint n, then n × (block id, block name)
//! transitions                     varint n, then n × transition id
//! fired lists                     varint n, then n × (varint m, m × transition index)
//! large values                    varint n, then n × preview (the value is a payload; see `refs`)
//! workers                         varint n, then n × Dask worker address (format 2 on; none for a run
//!                                 on this machine)
//! records                         `count` of them, `body length` bytes in all
//! ```
//!
//! Strings are a varint length and UTF-8. A record:
//!
//! ```text
//! flags                           1 byte: status (3 bits), has started, has ended, attempt ≠ 1,
//!                                 has error, has printed output
//! id − base id                    varint
//! block                           varint index into the segment's blocks
//! item path                       varint n, n × varint
//! [attempt]                       varint
//! parents                         varint: 0 the common parent, 1 none, n + 1 then n × zigzag
//!                                 varint (id − parent)
//! queued                          zigzag varint: its bits − the base time's bits
//! [started], [ended]              the same, from queued and from started (or queued)
//! input, backpack in, output, backpack out           values
//! [error summary, error]          string, value
//! [stdout, stderr]                values (text)
//! fired                           varint index into the segment's fired lists
//! more flags                      1 byte (format 3): has item names, has fanned-out names, carried
//! [item names]                    a key per level of the item path (strings), then the label: varint
//!                                 0 for none, else its length + 1 and UTF-8
//! [fanned-out names]              varint n, n × value: `{"transition", "names": {"keys", "labels"}}`
//! [carried from]                  varint: the invocation of the run redriven
//! [worker]                        varint: 0 none, else 1 + index into the segment's workers (only
//!                                 when the segment has workers)
//! ```
//!
//! Format 2 (chunks written before item names, retries and redrives) has no `more flags`; format 1
//! has neither `more flags` nor `workers`. Both are read as records without what they lack.
//!
//! A value is a tag byte: absent; `{}`; a non-negative integer (a varint follows); inline JSON (or
//! printed text), its length in the tag when short, else in a varint after it; the index of a large value, whose bytes are a payload row (stored
//! once per distinct content) and whose payload id is in the chunk's `refs` (the segments' large values
//! in order); or, for the backpack out, "the backpack in". A trivial record takes about 28 bytes.
//! Times are differences of the f64 bit patterns: exact (the record read back is the record written),
//! and a few bytes, since times of one batch are close together.

use std::sync::Arc;

use serde_json::Value;

use crate::model::TransitionId;
use crate::run::{InvocationId, InvocationRecord, InvocationStatus, RunId};

/// The first byte of every chunk's data: segments, not compressed, each with its table of workers,
/// and records with a second flags byte (item names, fanned-out names, carried over).
pub(super) const FORMAT: u8 = 3;
/// Records without the second flags byte (written before fan-outs named their items): still read.
const FORMAT_WITHOUT_NAMES: u8 = 2;
/// Segments without a table of workers, records without the second flags byte (written before runs
/// went to clusters): still read.
const FORMAT_WITHOUT_WORKERS: u8 = 1;

/// Values whose JSON (or printed text) is this long or longer are payloads, stored once per distinct
/// content and compressed; smaller ones stay in the chunk, where they cost no hash and no lookup.
pub(super) const LARGE_FROM: usize = 1024;

/// How many of a segment's large values a new one is compared with (backpacks repeat record after record;
/// comparing with every one would be quadratic).
const LARGE_MEMO: usize = 8;

const TAG_ABSENT: u8 = 0;
const TAG_LARGE: u8 = 1;
const TAG_SAME_AS_BACKPACK_IN: u8 = 2;
const TAG_EMPTY_OBJECT: u8 = 3;
/// A non-negative integer, as a varint.
const TAG_UINT: u8 = 4;
/// Inline, the length in a varint after the tag.
const TAG_INLINE: u8 = 255;
/// Inline, `tag − TAG_SHORT` bytes long (tags 5 to 7 are free for later).
const TAG_SHORT: u8 = 8;

const HAS_STARTED: u8 = 1 << 3;
const HAS_ENDED: u8 = 1 << 4;
const HAS_ATTEMPT: u8 = 1 << 5;
const HAS_ERROR: u8 = 1 << 6;
const HAS_OUTPUT: u8 = 1 << 7;

/// The second flags byte.
const HAS_ITEM_NAMES: u8 = 1;
const HAS_FANNED_OUT: u8 = 1 << 1;
const HAS_CARRIED_FROM: u8 = 1 << 2;

/// The parents field: the segment's common parent, or none (more: that many parents follow, plus one).
const COMMON_PARENT: u64 = 0;
const NO_PARENTS: u64 = 1;

fn status_code(status: InvocationStatus) -> u8 {
    match status {
        InvocationStatus::Queued => 0,
        InvocationStatus::Running => 1,
        InvocationStatus::Succeeded => 2,
        InvocationStatus::CaughtException => 3,
        InvocationStatus::Exception => 4,
        InvocationStatus::TimedOut => 5,
        InvocationStatus::Cancelled => 6,
        InvocationStatus::Retried => 7,
    }
}

fn status_of(code: u8) -> Option<InvocationStatus> {
    Some(match code {
        0 => InvocationStatus::Queued,
        1 => InvocationStatus::Running,
        2 => InvocationStatus::Succeeded,
        3 => InvocationStatus::CaughtException,
        4 => InvocationStatus::Exception,
        5 => InvocationStatus::TimedOut,
        6 => InvocationStatus::Cancelled,
        7 => InvocationStatus::Retried,
        _ => return None,
    })
}

// --- writing ---------------------------------------------------------------------------------------

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_zigzag(out: &mut Vec<u8>, value: i64) {
    put_varint(out, ((value << 1) ^ (value >> 63)).cast_unsigned());
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    put_varint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

/// `time` relative to `base`, as the difference of their bit patterns.
fn put_time(out: &mut Vec<u8>, time: f64, base: f64) {
    put_zigzag(
        out,
        time.to_bits().wrapping_sub(base.to_bits()).cast_signed(),
    );
}

/// One run's records of one batch, encoded; what the engine's thread hands the writer.
pub(super) struct Segment {
    pub run: RunId,
    /// For a run the writer has not seen start.
    pub first_queued_at_ms: f64,
    head: Vec<u8>,
    body: Vec<u8>,
    /// Where each record ends in `body`.
    ends: Vec<usize>,
    pub ids: Vec<InvocationId>,
    pub statuses: Vec<InvocationStatus>,
    /// The bytes of the large values, in index order.
    pub large: Vec<Vec<u8>>,
}

impl Segment {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Appends the segment to a chunk's data, keeping the records for which `keep` is true (all of them
    /// unless some were recorded before).
    pub fn write_to(&self, out: &mut Vec<u8>, keep: Option<&[bool]>) {
        let Some(keep) = keep else {
            put_varint(out, self.ids.len() as u64);
            put_varint(out, self.body.len() as u64);
            out.extend_from_slice(&self.head);
            out.extend_from_slice(&self.body);
            return;
        };
        let mut body = Vec::with_capacity(self.body.len());
        let mut start = 0;
        for (&end, &kept) in self.ends.iter().zip(keep) {
            if kept {
                body.extend_from_slice(&self.body[start..end]);
            }
            start = end;
        }
        put_varint(out, keep.iter().filter(|k| **k).count() as u64);
        put_varint(out, body.len() as u64);
        out.extend_from_slice(&self.head);
        out.extend_from_slice(&body);
    }
}

/// Encodes records into segments, one per run (in practice a batch is one run's).
pub(super) fn encode(records: &[InvocationRecord]) -> Vec<Segment> {
    let mut segments = Vec::new();
    let mut rest = records;
    while let Some(first) = rest.first() {
        // The records of one run share its id (one allocation): the pointer settles it.
        let n = rest
            .iter()
            .position(|r| !Arc::ptr_eq(&r.run_id.0, &first.run_id.0) && r.run_id != first.run_id)
            .unwrap_or(rest.len());
        segments.push(Encoder::new(&rest[..n]).encode(&rest[..n]));
        rest = &rest[n..];
    }
    segments
}

struct Encoder<'a> {
    base_id: u64,
    base_time: f64,
    /// The parent of the first record that has exactly one; 0 for none.
    common_parent: InvocationId,
    body: Vec<u8>,
    blocks: Vec<(&'a str, &'a str)>,
    transitions: Vec<&'a str>,
    fired: Vec<&'a [TransitionId]>,
    large: Vec<Vec<u8>>,
    previews: Vec<String>,
    /// The Dask workers the records ran on; each record names one only when there are any.
    workers: Vec<&'a str>,
    /// A value's JSON, before it is known to be small.
    scratch: Vec<u8>,
}

impl<'a> Encoder<'a> {
    fn new(records: &[InvocationRecord]) -> Self {
        Self {
            base_id: records.iter().map(|r| r.id).min().unwrap_or(0),
            base_time: records.first().map_or(0.0, |r| r.queued_at_ms),
            common_parent: records
                .iter()
                .find_map(|r| (r.parents.len() == 1).then(|| r.parents[0]))
                .unwrap_or(0),
            // Trivial records take about 28 bytes.
            body: Vec::with_capacity(records.len() * 32),
            blocks: Vec::new(),
            transitions: Vec::new(),
            // The empty list is always 0.
            fired: vec![&[]],
            large: Vec::new(),
            previews: Vec::new(),
            workers: Vec::new(),
            scratch: Vec::with_capacity(64),
        }
    }

    fn encode(mut self, records: &'a [InvocationRecord]) -> Segment {
        let mut ends = Vec::with_capacity(records.len());
        let mut ids = Vec::with_capacity(records.len());
        let mut statuses = Vec::with_capacity(records.len());
        let on_workers = records.iter().any(|r| r.worker.is_some());
        for record in records {
            self.record(record);
            if on_workers {
                let worker = self.worker(record.worker.as_deref());
                put_varint(&mut self.body, worker);
            }
            ends.push(self.body.len());
            ids.push(record.id);
            statuses.push(record.status);
        }
        let mut head = Vec::new();
        put_varint(&mut head, self.base_id);
        head.extend_from_slice(&self.base_time.to_bits().to_le_bytes());
        put_varint(&mut head, self.common_parent);
        put_varint(&mut head, self.blocks.len() as u64);
        for (id, name) in &self.blocks {
            put_str(&mut head, id);
            put_str(&mut head, name);
        }
        put_varint(&mut head, self.transitions.len() as u64);
        for transition in &self.transitions {
            put_str(&mut head, transition);
        }
        put_varint(&mut head, self.fired.len() as u64);
        for list in &self.fired {
            put_varint(&mut head, list.len() as u64);
            for transition in *list {
                let index = self.transitions.iter().position(|t| *t == &*transition.0);
                put_varint(&mut head, index.unwrap_or_default() as u64);
            }
        }
        put_varint(&mut head, self.previews.len() as u64);
        for preview in &self.previews {
            put_str(&mut head, preview);
        }
        put_varint(&mut head, self.workers.len() as u64);
        for worker in &self.workers {
            put_str(&mut head, worker);
        }
        Segment {
            run: records[0].run_id.clone(),
            first_queued_at_ms: self.base_time,
            head,
            body: self.body,
            ends,
            ids,
            statuses,
            large: self.large,
        }
    }

    fn record(&mut self, r: &'a InvocationRecord) {
        let printed = !r.stdout.is_empty() || !r.stderr.is_empty();
        let flags = status_code(r.status)
            | if r.started_at_ms.is_some() {
                HAS_STARTED
            } else {
                0
            }
            | if r.ended_at_ms.is_some() {
                HAS_ENDED
            } else {
                0
            }
            | if r.attempt == 1 { 0 } else { HAS_ATTEMPT }
            | if r.error.is_some() { HAS_ERROR } else { 0 }
            | if printed { HAS_OUTPUT } else { 0 };
        let block = self.block(&r.block_id.0, &r.block_name);
        let fired = self.fired(&r.fired);
        let body = &mut self.body;
        body.push(flags);
        put_varint(body, r.id - self.base_id);
        put_varint(body, block);
        put_varint(body, r.item_path.len() as u64);
        for &index in &r.item_path {
            put_varint(body, u64::from(index));
        }
        if r.attempt != 1 {
            put_varint(body, u64::from(r.attempt));
        }
        match r.parents[..] {
            [] => put_varint(body, NO_PARENTS),
            [parent] if parent == self.common_parent && parent != 0 => {
                put_varint(body, COMMON_PARENT);
            }
            _ => {
                put_varint(body, r.parents.len() as u64 + 1);
                for &parent in &r.parents {
                    put_zigzag(body, r.id.wrapping_sub(parent).cast_signed());
                }
            }
        }
        put_time(body, r.queued_at_ms, self.base_time);
        if let Some(started) = r.started_at_ms {
            put_time(body, started, r.queued_at_ms);
        }
        if let Some(ended) = r.ended_at_ms {
            put_time(body, ended, r.started_at_ms.unwrap_or(r.queued_at_ms));
        }
        self.value(Some(&r.input));
        self.value(Some(&r.backpack_in));
        self.value(r.output.as_ref());
        // The same shared value (most invocations leave the backpack alone) or an equal one.
        if r.backpack_out
            .as_ref()
            .is_some_and(|out| Arc::ptr_eq(out, &r.backpack_in) || out == &r.backpack_in)
        {
            self.body.push(TAG_SAME_AS_BACKPACK_IN);
        } else {
            self.value(r.backpack_out.as_deref());
        }
        if let Some(error) = &r.error {
            put_str(&mut self.body, &error.summary());
            self.json(Some(error));
        }
        if printed {
            self.text(&r.stdout);
            self.text(&r.stderr);
        }
        put_varint(&mut self.body, fired);
        let names = r.item_names.len() == r.item_path.len() && !r.item_names.is_empty();
        let more = if names { HAS_ITEM_NAMES } else { 0 }
            | if r.fanned_out.is_empty() {
                0
            } else {
                HAS_FANNED_OUT
            }
            | if r.carried_from.is_some() {
                HAS_CARRIED_FROM
            } else {
                0
            };
        self.body.push(more);
        if names {
            for name in &r.item_names {
                put_str(&mut self.body, &name.key());
            }
            match r.item_label() {
                Some(label) => {
                    put_varint(&mut self.body, label.len() as u64 + 1);
                    self.body.extend_from_slice(label.as_bytes());
                }
                None => put_varint(&mut self.body, 0),
            }
        }
        if !r.fanned_out.is_empty() {
            put_varint(&mut self.body, r.fanned_out.len() as u64);
            for fanned in &r.fanned_out {
                self.json(Some(fanned));
            }
        }
        if let Some(from) = r.carried_from {
            put_varint(&mut self.body, from);
        }
    }

    fn block(&mut self, id: &'a str, name: &'a str) -> u64 {
        // The plan's shared strings: comparing where they are settles nearly every lookup.
        let same = |a: &str, b: &str| std::ptr::eq(a, b) || a == b;
        let found = self
            .blocks
            .iter()
            .position(|b| same(b.0, id) && same(b.1, name));
        found.unwrap_or_else(|| {
            self.blocks.push((id, name));
            self.blocks.len() - 1
        }) as u64
    }

    /// 0 for none, else one more than the worker's index in the segment's table.
    fn worker(&mut self, worker: Option<&'a str>) -> u64 {
        let Some(worker) = worker else {
            return 0;
        };
        let found = self.workers.iter().position(|w| *w == worker);
        1 + found.unwrap_or_else(|| {
            self.workers.push(worker);
            self.workers.len() - 1
        }) as u64
    }

    /// The index of this list of fired transitions in the segment's table.
    fn fired(&mut self, fired: &'a [TransitionId]) -> u64 {
        // The same transitions are the same shared strings (the plan's): a pointer check settles
        // nearly every comparison without reading the ids.
        let same = |a: &TransitionId, b: &TransitionId| Arc::ptr_eq(&a.0, &b.0) || a == b;
        let found = self
            .fired
            .iter()
            .position(|f| f.len() == fired.len() && f.iter().zip(fired).all(|(a, b)| same(a, b)));
        found.unwrap_or_else(|| {
            for transition in fired {
                if !self.transitions.contains(&&*transition.0) {
                    self.transitions.push(&transition.0);
                }
            }
            self.fired.push(fired);
            self.fired.len() - 1
        }) as u64
    }

    /// A value; non-negative integers, `{}`, `[]`, `null` and booleans (most values of a big fan-out)
    /// written directly, without serde's machinery.
    fn value(&mut self, value: Option<&Value>) {
        let json: &[u8] = match value {
            Some(Value::Number(n)) if n.is_u64() => {
                self.body.push(TAG_UINT);
                put_varint(&mut self.body, n.as_u64().unwrap_or(0));
                return;
            }
            Some(Value::Object(map)) if map.is_empty() => {
                self.body.push(TAG_EMPTY_OBJECT);
                return;
            }
            Some(Value::Array(items)) if items.is_empty() => b"[]",
            Some(Value::Null) => b"null",
            Some(Value::Bool(true)) => b"true",
            Some(Value::Bool(false)) => b"false",
            other => return self.json(other),
        };
        self.inline(json);
    }

    fn inline(&mut self, bytes: &[u8]) {
        match u8::try_from(bytes.len() + usize::from(TAG_SHORT)) {
            Ok(tag) if tag < TAG_INLINE => self.body.push(tag),
            _ => {
                self.body.push(TAG_INLINE);
                put_varint(&mut self.body, bytes.len() as u64);
            }
        }
        self.body.extend_from_slice(bytes);
    }

    fn json<T: serde::Serialize>(&mut self, value: Option<&T>) {
        let Some(value) = value else {
            self.body.push(TAG_ABSENT);
            return;
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        // Serialising a `Value` (or our own plain structs) into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut scratch, value);
        self.bytes(&scratch);
        self.scratch = scratch;
    }

    /// Printed output: nothing printed is no value.
    fn text(&mut self, text: &str) {
        if text.is_empty() {
            self.body.push(TAG_ABSENT);
        } else {
            self.bytes(text.as_bytes());
        }
    }

    fn bytes(&mut self, bytes: &[u8]) {
        if bytes.len() < LARGE_FROM {
            self.inline(bytes);
            return;
        }
        let recent = self.large.len().saturating_sub(LARGE_MEMO);
        let found = (recent..self.large.len())
            .rev()
            .find(|&i| self.large[i] == bytes);
        let index = found.unwrap_or_else(|| {
            self.large.push(bytes.to_vec());
            self.previews.push(preview(bytes));
            self.large.len() - 1
        });
        self.body.push(TAG_LARGE);
        put_varint(&mut self.body, index as u64);
    }
}

/// `n` in decimal, as `serde_json` writes it.
pub(super) fn decimal(mut n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &digits[at..];
        }
    }
}

/// Longest input preview, in characters.
pub(super) const PREVIEW_CHARS: usize = 120;

/// JSON text cut to at most [`PREVIEW_CHARS`] characters, the last one `…` when it was cut.
pub(super) fn preview(json: &[u8]) -> String {
    // Only the start matters (a large value can be megabytes): 120 characters take at most 480 bytes,
    // so a text longer than this has more than 120 characters and is cut either way.
    let head = &json[..json.len().min(PREVIEW_CHARS * 4 + 4)];
    crate::text::truncate(&String::from_utf8_lossy(head), PREVIEW_CHARS)
}

// --- reading ---------------------------------------------------------------------------------------

/// What went wrong reading a chunk, for a "damaged history" message.
pub(super) type Damage = String;

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    fn is_empty(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn byte(&mut self) -> Result<u8, Damage> {
        let byte = *self.bytes.get(self.at).ok_or("a record is cut short")?;
        self.at += 1;
        Ok(byte)
    }

    fn varint(&mut self) -> Result<u64, Damage> {
        let mut value = 0_u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a number is too long".to_owned())
    }

    fn zigzag(&mut self) -> Result<i64, Damage> {
        let raw = self.varint()?;
        Ok((raw >> 1).cast_signed() ^ -((raw & 1).cast_signed()))
    }

    /// A count of things that take at least a byte each: never more than the bytes left.
    fn count(&mut self) -> Result<usize, Damage> {
        let n = self.varint()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.bytes.len().saturating_sub(self.at))
            .ok_or_else(|| format!("a count ({n}) is larger than what follows"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Damage> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or("a value is cut short")?;
        let bytes = &self.bytes[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn str(&mut self) -> Result<&'a str, Damage> {
        let n = self.count()?;
        std::str::from_utf8(self.take(n)?).map_err(|_| "a text is not UTF-8".to_owned())
    }

    fn time(&mut self, base: f64) -> Result<f64, Damage> {
        Ok(f64::from_bits(
            base.to_bits().wrapping_add(self.zigzag()?.cast_unsigned()),
        ))
    }

    fn value(&mut self) -> Result<Option<Val<'a>>, Damage> {
        Ok(match self.byte()? {
            TAG_ABSENT => None,
            TAG_INLINE => {
                let n = self.count()?;
                Some(Val::Inline(self.take(n)?))
            }
            TAG_LARGE => Some(Val::Large(
                usize::try_from(self.varint()?).unwrap_or(usize::MAX),
            )),
            TAG_SAME_AS_BACKPACK_IN => Some(Val::SameAsBackpackIn),
            TAG_EMPTY_OBJECT => Some(Val::Inline(b"{}")),
            TAG_UINT => Some(Val::Uint(self.varint()?)),
            tag if tag >= TAG_SHORT => Some(Val::Inline(self.take(usize::from(tag - TAG_SHORT))?)),
            tag => return Err(format!("a value has an unknown tag ({tag})")),
        })
    }
}

/// A value as the chunk holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Val<'a> {
    /// JSON (or printed text).
    Inline(&'a [u8]),
    /// A non-negative integer.
    Uint(u64),
    /// The segment's large value with this index.
    Large(usize),
    /// Only for the backpack out.
    SameAsBackpackIn,
}

/// A chunk's data, split into segments; records are read on demand.
pub(super) struct Chunk<'a> {
    pub segments: Vec<SegmentView<'a>>,
}

pub(super) struct SegmentView<'a> {
    /// Where it starts in the chunk's data.
    pub start: usize,
    pub count: usize,
    base_id: u64,
    base_time: f64,
    common_parent: InvocationId,
    pub blocks: Vec<(&'a str, &'a str)>,
    pub transitions: Vec<&'a str>,
    /// Lists of indices into `transitions`.
    fired: Vec<Vec<usize>>,
    pub previews: Vec<&'a str>,
    /// The Dask workers its records ran on (none for a run on this machine).
    pub workers: Vec<&'a str>,
    /// The index in the chunk's `refs` of this segment's first large value.
    pub first_ref: usize,
    body: &'a [u8],
    /// The chunk's format.
    format: u8,
}

impl<'a> Chunk<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Self, Damage> {
        let format = chunk_format(data)?;
        let mut reader = Reader::new(data);
        reader.at = 1;
        let mut segments = Vec::new();
        let mut first_ref = 0;
        while !reader.is_empty() {
            let segment = SegmentView::read_head(&mut reader, first_ref, format)?;
            first_ref += segment.previews.len();
            segments.push(segment);
        }
        Ok(Self { segments })
    }

    /// How many large values (refs) its segments have.
    pub fn refs_needed(&self) -> usize {
        self.segments.iter().map(|s| s.previews.len()).sum()
    }
}

/// The chunk's format byte, if this Braid reads it.
fn chunk_format(data: &[u8]) -> Result<u8, Damage> {
    match data.first() {
        None => Err("an empty chunk".to_owned()),
        Some(&format @ (FORMAT | FORMAT_WITHOUT_NAMES | FORMAT_WITHOUT_WORKERS)) => Ok(format),
        Some(format) => Err(format!("a chunk of an unknown format ({format})")),
    }
}

impl<'a> SegmentView<'a> {
    /// The segment that starts at `reader`'s position; `first_ref` is the index in the chunk's refs of its
    /// first large value.
    fn read_head(reader: &mut Reader<'a>, first_ref: usize, format: u8) -> Result<Self, Damage> {
        let start = reader.at;
        let count = reader.count()?;
        let body_len = reader.count()?;
        let base_id = reader.varint()?;
        let base_time = f64::from_bits(u64::from_le_bytes(
            reader
                .take(8)?
                .try_into()
                .map_err(|_| "a time is cut short")?,
        ));
        let common_parent = reader.varint()?;
        let mut blocks = Vec::new();
        for _ in 0..reader.count()? {
            blocks.push((reader.str()?, reader.str()?));
        }
        let mut transitions = Vec::new();
        for _ in 0..reader.count()? {
            transitions.push(reader.str()?);
        }
        let mut fired = Vec::new();
        for _ in 0..reader.count()? {
            let mut list = Vec::new();
            for _ in 0..reader.count()? {
                list.push(
                    usize::try_from(reader.varint()?)
                        .ok()
                        .filter(|&t| t < transitions.len())
                        .ok_or("a fired transition the chunk does not have")?,
                );
            }
            fired.push(list);
        }
        let mut previews = Vec::new();
        for _ in 0..reader.count()? {
            previews.push(reader.str()?);
        }
        let mut workers = Vec::new();
        if format != FORMAT_WITHOUT_WORKERS {
            for _ in 0..reader.count()? {
                workers.push(reader.str()?);
            }
        }
        let body = reader.take(body_len)?;
        Ok(Self {
            start,
            count,
            base_id,
            base_time,
            common_parent,
            blocks,
            transitions,
            fired,
            previews,
            workers,
            first_ref,
            body,
            format,
        })
    }

    /// The segment that starts at byte `start` of a chunk's data (as [`Self::start`] said).
    pub fn at(data: &'a [u8], start: usize, first_ref: usize) -> Result<Self, Damage> {
        let format = chunk_format(data)?;
        let mut reader = Reader::new(data);
        reader.at = start;
        Self::read_head(&mut reader, first_ref, format)
    }

    /// The records, in the order they were written; `at` is each one's offset in the body (for
    /// [`Self::record_at`]).
    pub fn records(&self) -> Records<'a, '_> {
        Records {
            segment: self,
            reader: Reader::new(self.body),
            left: self.count,
        }
    }

    /// The record at this offset of the body.
    pub fn record_at(&self, at: usize) -> Result<Raw<'a>, Damage> {
        let mut reader = Reader::new(self.body);
        reader.at = at;
        self.read(&mut reader)
    }

    fn read(&self, reader: &mut Reader<'a>) -> Result<Raw<'a>, Damage> {
        let at = reader.at;
        let flags = reader.byte()?;
        let status = status_of(flags & 0b111)
            .ok_or_else(|| format!("a record has an unknown status ({})", flags & 0b111))?;
        let id = self
            .base_id
            .checked_add(reader.varint()?)
            .ok_or("an id is out of range")?;
        let block = usize::try_from(reader.varint()?)
            .ok()
            .filter(|&b| b < self.blocks.len())
            .ok_or("a record names a block the chunk does not have")?;
        let path_len = reader.count()?;
        let path_start = reader.at;
        for _ in 0..path_len {
            reader.varint()?;
        }
        let item_path = &reader.bytes[path_start..reader.at];
        let attempt = if flags & HAS_ATTEMPT == 0 {
            1
        } else {
            u32::try_from(reader.varint()?).map_err(|_| "an attempt is out of range")?
        };
        let parents = match reader.varint()? {
            COMMON_PARENT if self.common_parent != 0 => Parents::Common(self.common_parent),
            COMMON_PARENT => {
                return Err("a record names a common parent the chunk does not have".to_owned());
            }
            NO_PARENTS => Parents::Listed(0, &[]),
            n => {
                let count = usize::try_from(n - 1)
                    .ok()
                    .filter(|&n| n <= reader.bytes.len().saturating_sub(reader.at))
                    .ok_or("a count of parents is larger than what follows")?;
                let start = reader.at;
                for _ in 0..count {
                    reader.varint()?;
                }
                Parents::Listed(count, &reader.bytes[start..reader.at])
            }
        };
        let queued_at_ms = reader.time(self.base_time)?;
        let started_at_ms = if flags & HAS_STARTED == 0 {
            None
        } else {
            Some(reader.time(queued_at_ms)?)
        };
        let ended_at_ms = if flags & HAS_ENDED == 0 {
            None
        } else {
            Some(reader.time(started_at_ms.unwrap_or(queued_at_ms))?)
        };
        let required = |v: Option<Val<'a>>| v.ok_or("a required value is missing".to_owned());
        let input = required(reader.value()?)?;
        let backpack_in = required(reader.value()?)?;
        let output = reader.value()?;
        let backpack_out = reader.value()?;
        let error = if flags & HAS_ERROR == 0 {
            None
        } else {
            let summary = reader.str()?;
            Some((summary, required(reader.value()?)?))
        };
        let (stdout, stderr) = if flags & HAS_OUTPUT == 0 {
            (None, None)
        } else {
            (reader.value()?, reader.value()?)
        };
        let fired = usize::try_from(reader.varint()?)
            .ok()
            .filter(|&f| f < self.fired.len())
            .ok_or("a record names fired transitions the chunk does not have")?;
        let more = if self.format < FORMAT {
            0
        } else {
            reader.byte()?
        };
        let (item_keys, item_label) = if more & HAS_ITEM_NAMES == 0 {
            (&[][..], None)
        } else {
            let start = reader.at;
            for _ in 0..path_len {
                reader.str()?;
            }
            let keys = &reader.bytes[start..reader.at];
            // Its length + 1: a varint, not a count (0 is "no label").
            let label = match usize::try_from(reader.varint()?).unwrap_or(usize::MAX) {
                0 => None,
                n => Some(
                    std::str::from_utf8(reader.take(n - 1)?)
                        .map_err(|_| "a label is not UTF-8".to_owned())?,
                ),
            };
            (keys, label)
        };
        let mut fanned_out = Vec::new();
        if more & HAS_FANNED_OUT != 0 {
            for _ in 0..reader.count()? {
                fanned_out.push(reader.value()?.ok_or("fanned-out names are missing")?);
            }
        }
        let carried_from = if more & HAS_CARRIED_FROM == 0 {
            None
        } else {
            Some(reader.varint()?)
        };
        let worker = if self.workers.is_empty() {
            0
        } else {
            usize::try_from(reader.varint()?)
                .ok()
                .filter(|&w| w <= self.workers.len())
                .ok_or("a record names a worker the chunk does not have")?
        };
        Ok(Raw {
            at,
            id,
            block,
            status,
            attempt,
            path_len,
            item_path,
            parents,
            queued_at_ms,
            started_at_ms,
            ended_at_ms,
            input,
            backpack_in,
            output,
            backpack_out,
            error,
            stdout,
            stderr,
            fired,
            worker,
            item_keys,
            item_label,
            fanned_out,
            carried_from,
        })
    }

    /// The index in the chunk's refs of this segment's large value `index`.
    pub fn large_ref(&self, index: usize) -> Result<usize, Damage> {
        if index < self.previews.len() {
            Ok(self.first_ref + index)
        } else {
            Err(format!(
                "a record names large value {index} the chunk does not have"
            ))
        }
    }

    /// The preview of an input as the table shows it.
    pub fn input_preview(&self, input: Val<'_>) -> Result<String, Damage> {
        match input {
            Val::Inline(json) => Ok(preview(json)),
            Val::Uint(n) => Ok(n.to_string()),
            Val::Large(index) => {
                self.large_ref(index)?;
                Ok(self.previews[index].to_owned())
            }
            Val::SameAsBackpackIn => Err("an input refers to a backpack".to_owned()),
        }
    }
}

pub(super) struct Records<'a, 's> {
    segment: &'s SegmentView<'a>,
    reader: Reader<'a>,
    left: usize,
}

impl<'a> Iterator for Records<'a, '_> {
    type Item = Result<Raw<'a>, Damage>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let record = self.segment.read(&mut self.reader);
        if record.is_err() {
            self.left = 0;
        }
        Some(record)
    }
}

/// A record as the chunk holds it: numbers decoded, lists and values still bytes.
#[derive(Debug)]
pub(super) struct Raw<'a> {
    /// The record's offset in its segment's body.
    pub at: usize,
    pub id: InvocationId,
    /// Index into the segment's blocks.
    pub block: usize,
    pub status: InvocationStatus,
    pub attempt: u32,
    path_len: usize,
    item_path: &'a [u8],
    parents: Parents<'a>,
    pub queued_at_ms: f64,
    pub started_at_ms: Option<f64>,
    pub ended_at_ms: Option<f64>,
    pub input: Val<'a>,
    pub backpack_in: Val<'a>,
    pub output: Option<Val<'a>>,
    pub backpack_out: Option<Val<'a>>,
    /// The summary (`ValueError: bad row`) and the whole error.
    pub error: Option<(&'a str, Val<'a>)>,
    pub stdout: Option<Val<'a>>,
    pub stderr: Option<Val<'a>>,
    /// Index into the segment's fired lists.
    fired: usize,
    /// 0 for none, else one more than the index into the segment's workers.
    worker: usize,
    /// The item's keys, one string per level (checked), when they were recorded.
    item_keys: &'a [u8],
    pub item_label: Option<&'a str>,
    /// Each fan-out that named its items: a [`crate::run::FannedOut`] as JSON.
    pub fanned_out: Vec<Val<'a>>,
    pub carried_from: Option<InvocationId>,
}

#[derive(Debug)]
enum Parents<'a> {
    Common(InvocationId),
    /// How many, and their zigzag varints (checked).
    Listed(usize, &'a [u8]),
}

/// Varints already checked by [`SegmentView::read`].
fn varints(bytes: &[u8], count: usize) -> impl Iterator<Item = u64> + '_ {
    let mut reader = Reader::new(bytes);
    (0..count).map(move |_| reader.varint().unwrap_or_default())
}

impl<'a> Raw<'a> {
    pub fn item_path(&self) -> Result<crate::run::ItemPath, Damage> {
        varints(self.item_path, self.path_len)
            .map(|i| u32::try_from(i).map_err(|_| "an item index is out of range".to_owned()))
            .collect()
    }

    /// The item's keys, outermost first, when they were recorded (else none).
    pub fn item_keys(&self) -> impl Iterator<Item = &'a str> + '_ {
        let mut reader = Reader::new(self.item_keys);
        std::iter::from_fn(move || (!reader.is_empty()).then(|| reader.str().unwrap_or_default()))
    }

    /// The innermost item's key: the recorded one, else its index as text.
    pub fn item_key(&self) -> Option<std::borrow::Cow<'a, str>> {
        match self.item_keys().last() {
            Some(key) => Some(std::borrow::Cow::Borrowed(key)),
            None => varints(self.item_path, self.path_len)
                .last()
                .map(|i| std::borrow::Cow::Owned(i.to_string())),
        }
    }

    /// Its innermost item's name, as a row shows it, when the item has recorded names.
    pub fn item_name(&self) -> Option<crate::run::ItemName> {
        let key = self.item_keys().last()?;
        Some(crate::run::ItemName::single(key, self.item_label))
    }

    /// Its items' names, outermost first, the label on the innermost; empty when none was recorded.
    pub fn item_names(&self) -> crate::run::ItemNamePath {
        let keys: Vec<&str> = self.item_keys().collect();
        let last = keys.len().saturating_sub(1);
        keys.iter()
            .enumerate()
            .map(|(i, key)| {
                crate::run::ItemName::single(key, if i == last { self.item_label } else { None })
            })
            .collect()
    }

    /// Whether the item path starts with `prefix`.
    pub fn path_starts_with(&self, prefix: &[u32]) -> bool {
        prefix.len() <= self.path_len
            && varints(self.item_path, self.path_len)
                .zip(prefix)
                .all(|(index, &p)| index == u64::from(p))
    }

    pub fn parents(&self) -> impl Iterator<Item = InvocationId> + '_ {
        let (common, count, bytes) = match self.parents {
            Parents::Common(parent) => (Some(parent), 0, &[][..]),
            Parents::Listed(count, bytes) => (None, count, bytes),
        };
        let mut reader = Reader::new(bytes);
        common.into_iter().chain((0..count).map(move |_| {
            let delta = reader.zigzag().unwrap_or_default();
            self.id.wrapping_sub(delta.cast_unsigned())
        }))
    }

    /// The Dask worker it ran on (the index was checked when the segment was read).
    pub fn worker(&self, segment: &SegmentView<'_>) -> Option<Arc<str>> {
        let index = self.worker.checked_sub(1)?;
        segment.workers.get(index).map(|&w| w.into())
    }

    /// The transitions that fired (indices checked when the segment was read).
    pub fn fired(&self, segment: &SegmentView<'_>) -> Vec<TransitionId> {
        segment.fired[self.fired]
            .iter()
            .map(|&t| TransitionId(segment.transitions[t].into()))
            .collect()
    }
}

/// The ids of a chunk's records (for a writer that meets a run it did not start).
pub(super) fn ids(data: &[u8]) -> Result<Vec<InvocationId>, Damage> {
    let chunk = Chunk::parse(data)?;
    let mut ids = Vec::new();
    for segment in &chunk.segments {
        for record in segment.records() {
            ids.push(record?.id);
        }
    }
    Ok(ids)
}

/// Payload ids as the `refs` column holds them: varints.
pub(super) fn put_ref(out: &mut Vec<u8>, id: i64) {
    put_varint(out, id.cast_unsigned());
}

pub(super) fn parse_refs(refs: &[u8]) -> Result<Vec<i64>, Damage> {
    let mut reader = Reader::new(refs);
    let mut out = Vec::new();
    while !reader.is_empty() {
        out.push(reader.varint()?.cast_signed());
    }
    Ok(out)
}

/// Read the whole value of `bytes` (JSON) into `T`.
pub(super) fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Damage> {
    serde_json::from_slice(bytes).map_err(|e| format!("a stored value: {e}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::BlockId;

    fn record(id: u64) -> InvocationRecord {
        InvocationRecord {
            run_id: RunId("r".into()),
            id,
            block_id: BlockId("b".into()),
            block_name: "B".into(),
            item_path: smallvec::smallvec![id as u32, 7],
            item_names: crate::run::ItemNamePath::new(),
            attempt: 1,
            parents: smallvec::smallvec![1],
            status: InvocationStatus::Succeeded,
            queued_at_ms: 1.7e12 + id as f64 * 0.123,
            started_at_ms: Some(1.7e12 + id as f64 * 0.125),
            ended_at_ms: Some(1.7e12 + id as f64 * 0.131),
            input: json!(id),
            backpack_in: json!({}).into(),
            output: Some(json!(id * 2)),
            backpack_out: Some(json!({}).into()),
            stdout: String::new(),
            stderr: String::new(),
            error: None,
            fired: vec![TransitionId("t".into())],
            worker: None,
            fanned_out: Vec::new(),
            carried_from: None,
        }
    }

    fn chunk_of(segments: &[Segment]) -> Vec<u8> {
        let mut data = vec![FORMAT];
        for s in segments {
            s.write_to(&mut data, None);
        }
        data
    }

    #[test]
    fn trivial_records_are_small_and_read_back() {
        let records: Vec<_> = (2..1002).map(record).collect();
        let segments = encode(&records);
        assert_eq!(segments.len(), 1);
        let data = chunk_of(&segments);
        assert!(data.len() < 30 * 1000, "{} bytes", data.len());
        let chunk = Chunk::parse(&data).unwrap();
        let segment = &chunk.segments[0];
        for (raw, original) in segment.records().zip(&records) {
            let raw = raw.unwrap();
            assert_eq!(raw.id, original.id);
            assert_eq!(raw.item_path().unwrap(), original.item_path);
            assert_eq!(raw.parents().collect::<Vec<_>>(), original.parents.to_vec());
            assert_eq!(raw.queued_at_ms.to_bits(), original.queued_at_ms.to_bits());
            assert_eq!(raw.started_at_ms, original.started_at_ms);
            assert_eq!(raw.ended_at_ms, original.ended_at_ms);
            assert_eq!(raw.input, Val::Uint(original.id));
            assert_eq!(raw.backpack_out, Some(Val::SameAsBackpackIn));
            assert_eq!(raw.fired(segment), original.fired);
            assert!(raw.path_starts_with(&[original.item_path[0]]));
            assert!(!raw.path_starts_with(&[original.item_path[0] + 1]));
        }
    }

    #[test]
    fn parents_and_fired_transitions_of_every_shape_round_trip() {
        let mut records: Vec<_> = (1..=6).map(record).collect();
        records[0].parents = smallvec::smallvec![];
        records[2].parents = smallvec::smallvec![2];
        records[3].parents = smallvec::smallvec![5, 1, 3];
        records[4].fired = vec![];
        records[5].fired = vec![TransitionId("u".into()), TransitionId("t".into())];
        let data = chunk_of(&encode(&records));
        let chunk = Chunk::parse(&data).unwrap();
        let segment = &chunk.segments[0];
        for (raw, original) in segment.records().zip(&records) {
            let raw = raw.unwrap();
            assert_eq!(raw.parents().collect::<Vec<_>>(), original.parents.to_vec());
            assert_eq!(raw.fired(segment), original.fired);
        }
    }

    #[test]
    fn the_dask_worker_of_each_record_round_trips() {
        let mut records: Vec<_> = (1..=4).map(record).collect();
        records[0].worker = Some("tcp://127.0.0.1:4001".into());
        records[1].worker = Some("tcp://127.0.0.1:4002".into());
        records[2].worker = Some("tcp://127.0.0.1:4001".into());
        let data = chunk_of(&encode(&records));
        let chunk = Chunk::parse(&data).unwrap();
        let segment = &chunk.segments[0];
        assert_eq!(
            segment.workers,
            ["tcp://127.0.0.1:4001", "tcp://127.0.0.1:4002"]
        );
        let workers: Vec<Option<Arc<str>>> = segment
            .records()
            .map(|raw| raw.unwrap().worker(segment))
            .collect();
        assert_eq!(
            workers,
            records.iter().map(|r| r.worker.clone()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn records_of_a_run_on_this_machine_name_no_worker_and_cost_nothing_more() {
        let records: Vec<_> = (1..=100).map(record).collect();
        let segments = encode(&records);
        let local = chunk_of(&segments).len();
        let mut on_cluster = records.clone();
        for r in &mut on_cluster {
            r.worker = Some("tcp://127.0.0.1:4001".into());
        }
        let data = chunk_of(&encode(&on_cluster));
        assert_eq!(data.len(), local + "tcp://127.0.0.1:4001".len() + 1 + 100);
        let local_data = chunk_of(&segments);
        let chunk = Chunk::parse(&local_data).unwrap();
        assert!(chunk.segments[0].workers.is_empty());
        let raw = chunk.segments[0].records().next().unwrap().unwrap();
        assert_eq!(raw.worker(&chunk.segments[0]), None);
    }

    #[test]
    fn large_values_are_set_apart_once_per_segment() {
        let big = json!({"shared": "x".repeat(5000)});
        let records: Vec<_> = (1..=10)
            .map(|id| {
                let mut r = record(id);
                r.backpack_in = big.clone().into();
                r.backpack_out = Some(json!({"other": "y".repeat(2000)}).into());
                r
            })
            .collect();
        let segments = encode(&records);
        assert_eq!(segments[0].large.len(), 2);
        assert_eq!(
            serde_json::from_slice::<Value>(&segments[0].large[0]).unwrap(),
            big
        );
        let data = chunk_of(&segments);
        let chunk = Chunk::parse(&data).unwrap();
        assert_eq!(chunk.refs_needed(), 2);
        let raw = chunk.segments[0].records().nth(3).unwrap().unwrap();
        assert_eq!(raw.backpack_in, Val::Large(0));
        assert_eq!(raw.backpack_out, Some(Val::Large(1)));
    }

    #[test]
    fn records_can_be_left_out_of_a_segment() {
        let records: Vec<_> = (1..=5).map(record).collect();
        let segments = encode(&records);
        let mut data = vec![FORMAT];
        segments[0].write_to(&mut data, Some(&[true, false, true, false, true]));
        let ids: Vec<_> = ids(&data).unwrap();
        assert_eq!(ids, [1, 3, 5]);
    }

    #[test]
    fn segments_of_several_runs_and_odd_times_round_trip() {
        let mut records: Vec<_> = (1..=3).map(record).collect();
        records[1].run_id = RunId("other".into());
        records[2].started_at_ms = None;
        records[2].ended_at_ms = Some(-5.0);
        records[2].queued_at_ms = f64::MAX;
        let segments = encode(&records);
        assert_eq!(segments.len(), 3);
        let data = chunk_of(&segments);
        let chunk = Chunk::parse(&data).unwrap();
        let raw = chunk.segments[2].records().next().unwrap().unwrap();
        assert_eq!(raw.queued_at_ms.to_bits(), f64::MAX.to_bits());
        assert_eq!(raw.started_at_ms, None);
        assert_eq!(raw.ended_at_ms, Some(-5.0));
    }

    /// `segments` as an older format wrote them: without the second flags byte (the last of each of
    /// these records, 0), and for format 1 without the (empty) workers table too (the last byte of
    /// each head).
    fn older_chunk(segments: &[Segment], format: u8) -> Vec<u8> {
        let mut data = vec![format];
        for segment in segments {
            let mut body = Vec::new();
            let mut start = 0;
            for &end in &segment.ends {
                assert_eq!(segment.body[end - 1], 0, "no names, nothing carried");
                body.extend_from_slice(&segment.body[start..end - 1]);
                start = end;
            }
            let mut head = &segment.head[..];
            if format == FORMAT_WITHOUT_WORKERS {
                assert_eq!(head.last(), Some(&0), "the empty workers table");
                head = &head[..head.len() - 1];
            }
            put_varint(&mut data, segment.ids.len() as u64);
            put_varint(&mut data, body.len() as u64);
            data.extend_from_slice(head);
            data.extend_from_slice(&body);
        }
        data
    }

    /// Chunks written before fan-outs named their items (format 2), and before that before records
    /// named workers (format 1): read as records without what they lack.
    #[test]
    fn chunks_of_the_older_formats_still_read() {
        let records: Vec<_> = (1..=3).map(record).collect();
        let segments = encode(&records);
        for format in [FORMAT_WITHOUT_NAMES, FORMAT_WITHOUT_WORKERS] {
            let data = older_chunk(&segments, format);
            let chunk = Chunk::parse(&data).unwrap();
            let segment = &chunk.segments[0];
            assert!(segment.workers.is_empty());
            let read: Vec<(u64, Vec<u32>, bool, Option<u64>)> = segment
                .records()
                .map(|raw| {
                    let raw = raw.unwrap();
                    (
                        raw.id,
                        raw.item_path().unwrap().to_vec(),
                        raw.item_names().is_empty(),
                        raw.carried_from,
                    )
                })
                .collect();
            assert_eq!(
                read,
                [
                    (1, vec![1, 7], true, None),
                    (2, vec![2, 7], true, None),
                    (3, vec![3, 7], true, None)
                ],
                "format {format}"
            );
        }
    }

    #[test]
    fn damaged_chunks_are_errors_not_panics() {
        let records: Vec<_> = (1..=20).map(record).collect();
        let data = chunk_of(&encode(&records));
        // Every truncation and every single-byte change: an error or a record, never a panic.
        for cut in 0..data.len() {
            let _ = ids(&data[..cut]);
        }
        for at in 0..data.len() {
            for byte in [0x00, 0x7f, 0x80, 0xff] {
                let mut damaged = data.clone();
                damaged[at] = byte;
                if let Ok(chunk) = Chunk::parse(&damaged) {
                    for segment in &chunk.segments {
                        for raw in segment.records().flatten() {
                            let _ = raw.item_path();
                            let _ = raw.fired(segment);
                            let _ = raw.parents().count();
                            let _ = segment.input_preview(raw.input);
                        }
                    }
                }
            }
        }
        assert!(ids(&[]).is_err());
        assert!(ids(&[9]).is_err());
        assert!(ids(&data[..data.len() - 1]).is_err());
    }

    #[test]
    fn values_are_the_json_serde_writes() {
        for value in [
            json!(0),
            json!(7),
            json!(u64::MAX),
            json!(-3),
            json!(2.5),
            json!({}),
            json!([]),
            json!(null),
            json!(true),
            json!(false),
            json!("text"),
            json!({"a": [1, {}]}),
        ] {
            let mut r = record(1);
            r.input = value.clone();
            let segments = encode(&[r]);
            let data = chunk_of(&segments);
            let chunk = Chunk::parse(&data).unwrap();
            let raw = chunk.segments[0].records().next().unwrap().unwrap();
            assert_eq!(
                chunk.segments[0].input_preview(raw.input).unwrap(),
                value.to_string()
            );
        }
    }

    #[test]
    fn previews_are_cut_to_120_characters() {
        let long = format!("\"{}\"", "é".repeat(500));
        let cut = preview(long.as_bytes());
        assert_eq!(cut.chars().count(), PREVIEW_CHARS);
        assert!(cut.ends_with('…'));
        assert_eq!(preview(b"[1,2]"), "[1,2]");
        let exact = "a".repeat(PREVIEW_CHARS);
        assert_eq!(preview(exact.as_bytes()), exact);
        let one_more = "a".repeat(PREVIEW_CHARS + 1);
        assert_eq!(preview(one_more.as_bytes()).chars().count(), PREVIEW_CHARS);
        let huge = "b".repeat(100_000);
        assert_eq!(preview(huge.as_bytes()).chars().count(), PREVIEW_CHARS);
    }
}
