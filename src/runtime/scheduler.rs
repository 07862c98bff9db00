//! One run's state machine: the queue past the concurrency limit, per-block caps, transitions, fan-out /
//! fan-in and merge bookkeeping, retries waiting for their time, fan-ins' failure budgets, the ledger
//! (counts per state) and a redrive's carried-over results. Synchronous and free of I/O: results go
//! in, tasks and records come out, so every rule here is tested without Python.

use std::collections::{HashMap, VecDeque};

use rustc_hash::FxHashMap;
use smallvec::SmallVec;
use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::capacity::{Full, Room, RunRoom};
use super::invoker::{Outcome, Task, TaskResult};
use super::plan::{Behaviour, Outgoing, Plan};
use super::redrive::{CarriedEnd, Redrive};
use crate::model::TransitionId;
use crate::run::{
    BlockCounts, ErrorInfo, FanInCounts, FannedOut, InvocationId, InvocationRecord,
    InvocationStatus, ItemName, ItemNamePath, ItemNames, ItemPath, MissingItem,
    ParentIds as Parents, RunFailure, RunId, RunResult, RunStatus, RunSummary, now_ms,
};

/// The backpack key under which a fan-in that tolerates failures gets its failed items: a list of
/// `{"index", "key", "label", "error"}` objects in item order (empty when none failed).
pub const FAILED_ITEMS_KEY: &str = "braid_failed_items";

/// Where an invocation sits: its item path, the open fan-outs (frame, item) around it and their
/// items' names, outermost first. Inline up to a few levels of nesting: a fan-out's items then cost
/// one allocation each, not three.
#[derive(Debug, Default)]
struct Ctx {
    path: SmallVec<[u32; 4]>,
    frames: SmallVec<[(u64, u32); 2]>,
    /// One per level; empty when no fan-out around it names its items.
    names: ItemNamePath,
}

struct Pending {
    id: InvocationId,
    block: usize,
    input: Value,
    /// Shared by the items of a fan-out (one value, encoded once for them all).
    backpack: Arc<Value>,
    /// Where it runs; for a fan-out's item, where its fan-out ran (shared by all its items), with the
    /// item itself in `item`. A context of its own is made only if it queues something: a fan-out's
    /// items made one each (and a list of parents), which kept the engine allocating fresh memory for
    /// about a sixth of its time.
    ctx: Arc<Ctx>,
    /// A fan-out's item: its frame and index, on top of `ctx`.
    item: Option<(u64, u32)>,
    parents: Parents,
    queued_at_ms: f64,
    /// The attempt it runs as (its first is 1).
    attempt: u32,
    /// How many times the block's retries ran it again.
    retried: u32,
    /// In a redrive: every invocation it came from was carried over, so it may be too.
    from_carried: bool,
}

impl Pending {
    fn path(&self) -> ItemPath {
        let mut path = ItemPath::from_slice(&self.ctx.path);
        path.extend(self.item.map(|(_, index)| index));
        path
    }

    /// The innermost fan-out item it is part of.
    fn innermost(&self) -> Option<(u64, u32)> {
        self.item.or_else(|| self.ctx.frames.last().copied())
    }

    /// The open fan-out items around it, innermost first.
    fn open_items(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.item
            .into_iter()
            .chain(self.ctx.frames.iter().rev().copied())
    }

    /// Its whole context, for what it queues (made once, when first needed).
    fn full_ctx(&mut self, frames: &FxHashMap<u64, Frame>) -> Arc<Ctx> {
        if let Some((frame, index)) = self.item.take() {
            let mut path = self.ctx.path.clone();
            path.push(index);
            let mut levels = self.ctx.frames.clone();
            levels.push((frame, index));
            let names = item_names(&self.ctx, Some((frame, index)), frames);
            self.ctx = Arc::new(Ctx {
                path,
                frames: levels,
                names,
            });
        }
        Arc::clone(&self.ctx)
    }
}

/// The names of an invocation's items: `ctx`'s, and its own item's on top. Every level has a name once
/// any level is named (the others by their index); none when no level is.
fn item_names(ctx: &Ctx, item: Option<(u64, u32)>, frames: &FxHashMap<u64, Frame>) -> ItemNamePath {
    let Some((frame, index)) = item else {
        return ctx.names.clone();
    };
    let Some(names) = frames.get(&frame).map(|f| &f.names) else {
        return ctx.names.clone();
    };
    let any_named = names.has_keys() || names.has_labels();
    if ctx.names.is_empty() && !any_named {
        return ItemNamePath::new();
    }
    let mut path = if ctx.names.len() == ctx.frames.len() {
        ctx.names.clone()
    } else {
        // The outer levels were unnamed: they are named by their indices from here in.
        ctx.frames
            .iter()
            .map(|&(outer, i)| {
                let names = frames
                    .get(&outer)
                    .map_or_else(|| Arc::new(ItemNames::indexed()), |f| Arc::clone(&f.names));
                ItemName::new(names, i)
            })
            .collect()
    };
    path.push(ItemName::new(Arc::clone(names), index));
    path
}

struct Delivery {
    value: Value,
    backpack: Arc<Value>,
    from: InvocationId,
    /// The delivering invocation was carried over (a redrive).
    carried: bool,
}

/// The deliveries expected by one fan-in target of one fan-out.
struct FanInSet {
    target: usize,
    got: Vec<Option<Delivery>>,
    extra: Vec<u32>,
    delivered: usize,
}

struct Frame {
    parent: Arc<Ctx>,
    /// The invocation that fanned out: what a fan-in of no items comes from.
    origin: InvocationId,
    base_backpack: Arc<Value>,
    alive: Vec<u32>,
    unsettled: usize,
    sets: Vec<FanInSet>,
    /// Why an item's branch ended without delivering (the first reason), kept only for items that have
    /// one: most have none, and a fan-out may have millions of items.
    reasons: FxHashMap<u32, String>,
    /// Its items' keys and labels (by index when it names them by no expression).
    names: Arc<ItemNames>,
    /// Every fan-in closing it tolerates failures: its items' failures wait for the fan-ins' verdict
    /// (tolerated, or failures of the run) rather than failing the run at once.
    tolerant: bool,
    /// Those waiting failures, in the order they happened.
    held_failures: Vec<(usize, RunFailure)>,
    /// The fan-out was carried over (a redrive): a fan-in of no items comes from it as carried.
    carried: bool,
}

struct MergeState {
    ctx: Arc<Ctx>,
    got: Vec<Option<Delivery>>,
    extra: Vec<u32>,
}

/// What a replay's block fires: nothing.
static NO_TRANSITIONS: Outgoing = Outgoing {
    then: Vec::new(),
    ifs: Vec::new(),
    elses: Vec::new(),
    exceptions: Vec::new(),
    fan_outs: Vec::new(),
    fan_ins: Vec::new(),
    merges: Vec::new(),
};

/// The blocks that have queued invocations, each with its oldest queued invocation's id (ids count up
/// in the order invocations are queued), taken oldest first. A project has few blocks, so a scan of a
/// short list beats a tree: a big fan-out puts its block in and takes it out once per invocation.
struct Ready {
    entries: Vec<(u64, usize)>,
    listed: Vec<bool>,
}

impl Ready {
    fn new(blocks: usize) -> Self {
        Self {
            entries: Vec::new(),
            listed: vec![false; blocks],
        }
    }

    /// Lists `block` (whose oldest queued invocation is `seq`, its id) unless it is listed already.
    fn insert(&mut self, (seq, block): (u64, usize)) {
        if !self.listed[block] {
            self.listed[block] = true;
            self.entries.push((seq, block));
        }
    }

    fn pop_first(&mut self) -> Option<(u64, usize)> {
        let (index, _) = self
            .entries
            .iter()
            .enumerate()
            .min_by_key(|(_, (seq, _))| *seq)?;
        let entry = self.entries.swap_remove(index);
        self.listed[entry.1] = false;
        Some(entry)
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.listed.fill(false);
    }
}

/// What answers a served run's request: the first value that reaches an API Response, or the first
/// failure that no `exception` transition caught (whichever comes first).
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    Value(Value),
    Failed {
        block: String,
        /// `ValueError: bad row`.
        error: String,
        invocation: Option<InvocationId>,
    },
}

/// How an invocation of a block runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Runs {
    /// In the invoker, in a slot of the run's room.
    InSlot,
    /// Elsewhere, needing no slot: a Queue's messages kept by the service's host.
    Elsewhere,
    /// Here and now, with no task (a block that passes its input on, or can't run).
    AtOnce,
}

/// A redrive's carried-over ends, by block and item keys (see [`carry_key`]), each key's in id order.
type Carry = HashMap<String, VecDeque<Carried>>;

/// An end a redrive carries over.
struct Carried {
    id: InvocationId,
    end: CarriedEnd,
}

/// How a carried-over end is found: the block's index and the item's keys, each key prefixed by its
/// length (so no key can pass for two).
fn carry_key<'a>(block: usize, keys: impl IntoIterator<Item = &'a str>) -> String {
    let mut text = block.to_string();
    for key in keys {
        let _ = write!(text, "/{}:{key}", key.len());
    }
    text
}

/// A run in progress.
pub struct RunScheduler {
    run_id: RunId,
    plan: Arc<Plan>,
    program: u64,
    /// The slots of a run that has the limit to itself (see [`Self::take_ready`]).
    own_room: RunRoom,
    key_base: u64,
    next_id: InvocationId,
    next_frame: u64,
    queues: Vec<VecDeque<Pending>>,
    ready: Ready,
    running: FxHashMap<InvocationId, Pending>,
    /// Failed attempts waiting for their retry, with the time (ms since the epoch) it is due.
    waiting: Vec<(f64, Pending)>,
    frames: FxHashMap<u64, Frame>,
    merges: HashMap<(usize, Vec<(u64, u32)>), MergeState>,
    counts: Vec<BlockCounts>,
    /// Each fan-in target's ledger (all zero for other blocks).
    fan_ins: Vec<FanInCounts>,
    outbox: Vec<InvocationRecord>,
    results: Vec<(usize, RunResult)>,
    failures: Vec<(usize, RunFailure)>,
    tolerated: Vec<(usize, RunFailure)>,
    failed: bool,
    cancelled: bool,
    started_at_ms: f64,
    queued_total: usize,
    /// The most invocations it may have queued at once ([`MAX_QUEUED`] unless a test sets another).
    max_queued: usize,
    /// The block that would have queued past `max_queued`: the run stops, failed, at the end of the
    /// step that tried.
    overflow: Option<usize>,
    /// Keys of running invocations the run stopped by itself, for the invoker to stop.
    stops: Vec<u64>,
    /// The largest input, as JSON, an invocation may take ([`MAX_INPUT_BYTES`] unless a test sets
    /// another).
    max_input_bytes: usize,
    single: bool,
    /// A redrive's carried-over ends, and the run it redrives.
    carry: Option<Carry>,
    redrive_of: Option<RunId>,
    /// The time invocations queued now are stamped with: read once per step, not once per invocation.
    now_ms: f64,
    /// The last backpack encoded for a task, and its JSON (the items of a fan-out share one).
    backpack_json: Option<(Arc<Value>, Arc<str>)>,
    /// Where a task's input is encoded before it is copied into the task (inline, when short).
    json: Vec<u8>,
    /// Whether the run answers a request (see [`Self::take_answer`]), and whether it has.
    answering: Answering,
    answer: Option<Answer>,
}

/// Whether a run answers a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answering {
    No,
    /// It does, and has no answer yet.
    Waiting,
    Answered,
}

/// The largest invocation number a run can have: keys carry it in their low bits.
pub const KEY_BITS: u32 = 40;

/// The most invocations one run may have queued at once: twice the largest fan-out Braid is
/// measured with (1,000,000 items, about 350 MB), so that a loop through a fan-out, which multiplies
/// its invocations each time round, fails naming its block rather than filling the memory.
pub const MAX_QUEUED: usize = 2_000_000;

/// The largest input an invocation may take, as JSON (256 MiB). Braid holds an input about three
/// times over while it is handed to a worker (the value for the record, its JSON for the task, and a
/// frame's copy on its way), and the worker as much again: past this, the invocation fails naming its
/// block and size rather than taking gigabytes (see docs/runtime.md).
pub const MAX_INPUT_BYTES: usize = 256 << 20;

/// The errors of an invocation Braid refused to hand to a worker: another attempt would be refused the
/// same way, so none is made whatever the block's retries say.
const REFUSALS: [&str; 2] = ["NotRunnable", "InputTooLarge"];

/// The encoding buffer's size kept between tasks: a larger one (a fan-in's input) is let go.
const SCRATCH_KEPT: usize = 1 << 20;

/// How an invocation ended, once its outcome is read: what the scheduler does next follows from it.
enum Ending {
    Returned {
        output: Value,
        backpack: Arc<Value>,
        ifs: Vec<bool>,
        items: Vec<ItemNames>,
    },
    /// A redrive's carried-over success: the transitions that fired then fire again.
    Carried {
        output: Value,
        backpack: Arc<Value>,
        fired: Vec<TransitionId>,
        fanned_out: Vec<FannedOut>,
    },
    Failed {
        error: ErrorInfo,
        backpack: Option<Arc<Value>>,
        timed_out: bool,
        /// Carried over as it was (a redrive of another failure group): it is not retried.
        carried: bool,
    },
    Cancelled,
}

impl RunScheduler {
    /// `key_base` is added to invocation ids to form task keys unique across the runs of one runtime.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// A run with `limit` slots of its own (see [`Self::take_ready_in`] for a run that shares them).
    pub fn new(run_id: RunId, plan: Arc<Plan>, program: u64, limit: usize, key_base: u64) -> Self {
        let n = plan.blocks.len();
        let caps = plan.blocks.iter().map(|b| b.cap).collect();
        Self {
            run_id,
            plan,
            program,
            own_room: RunRoom::new(limit, caps),
            key_base,
            next_id: 1,
            next_frame: 0,
            queues: (0..n).map(|_| VecDeque::new()).collect(),
            ready: Ready::new(n),
            running: FxHashMap::default(),
            waiting: Vec::new(),
            frames: FxHashMap::default(),
            merges: HashMap::new(),
            counts: vec![BlockCounts::default(); n],
            fan_ins: vec![FanInCounts::default(); n],
            outbox: Vec::new(),
            results: Vec::new(),
            failures: Vec::new(),
            tolerated: Vec::new(),
            failed: false,
            cancelled: false,
            started_at_ms: now_ms(),
            queued_total: 0,
            max_queued: MAX_QUEUED,
            max_input_bytes: MAX_INPUT_BYTES,
            overflow: None,
            stops: Vec::new(),
            single: false,
            carry: None,
            redrive_of: None,
            now_ms: now_ms(),
            backpack_json: None,
            json: Vec::new(),
            answering: Answering::No,
            answer: None,
        }
    }

    /// The run answers a request: [`Self::take_answer`] gives what answers it, once.
    pub fn set_answering(&mut self) {
        self.answering = Answering::Waiting;
    }

    /// What answers the run's request, once it is known (and only the first time).
    pub fn take_answer(&mut self) -> Option<Answer> {
        self.answer.take()
    }

    /// Whether the run's request has had its answer.
    pub fn answered(&self) -> bool {
        self.answering == Answering::Answered
    }

    fn answer_with(&mut self, answer: impl FnOnce() -> Answer) {
        if self.answering == Answering::Waiting {
            self.answering = Answering::Answered;
            self.answer = Some(answer());
        }
    }

    /// The largest input, as JSON, an invocation may take (see [`MAX_INPUT_BYTES`]).
    pub fn set_max_input_bytes(&mut self, max_input_bytes: usize) {
        self.max_input_bytes = max_input_bytes;
    }

    /// The most invocations the run may have queued at once (see [`MAX_QUEUED`]).
    pub fn set_max_queued(&mut self, max_queued: usize) {
        self.max_queued = max_queued;
    }

    /// Runs only the entry invocations, firing no transitions (to replay one invocation).
    pub fn set_single(&mut self, single: bool) {
        self.single = single;
    }

    pub fn run_id(&self) -> &RunId {
        &self.run_id
    }

    pub fn program(&self) -> u64 {
        self.program
    }

    /// Queues the first invocations: each entry block (or the chosen one) gets the run's input.
    pub fn start(&mut self, entries: &[usize], input: &Value, backpack: &Value) {
        let root = Arc::new(Ctx::default());
        let backpack = Arc::new(backpack.clone());
        self.now_ms = now_ms();
        for &block in entries {
            self.enqueue(
                block,
                input.clone(),
                Arc::clone(&backpack),
                Arc::clone(&root),
                Parents::new(),
                true,
            );
        }
    }

    /// Starts a redrive of an earlier run: its entry invocations queue again with their own inputs,
    /// and what they lead to takes the earlier run's recorded ends where it can (see
    /// [`super::redrive`]). Entries whose block is gone are left out.
    pub fn start_redrive(&mut self, redrive: Redrive) {
        let Redrive {
            of,
            entries,
            carried,
        } = redrive;
        let mut carry = Carry::new();
        for record in carried {
            let Some(&index) = self.plan.by_id.get(&record.block) else {
                continue;
            };
            carry
                .entry(carry_key(index, record.key_path.iter().map(String::as_str)))
                .or_default()
                .push_back(Carried {
                    id: record.id,
                    end: record.end,
                });
        }
        // Each key's ends in id order: the first invocation of an item takes the first end.
        for ends in carry.values_mut() {
            ends.make_contiguous().sort_by_key(|c| c.id);
        }
        self.carry = Some(carry);
        self.redrive_of = Some(of);
        let root = Arc::new(Ctx::default());
        self.now_ms = now_ms();
        for entry in entries {
            if let Some(&block) = self.plan.by_id.get(&entry.block) {
                self.enqueue(
                    block,
                    entry.input,
                    Arc::new(entry.backpack),
                    Arc::clone(&root),
                    Parents::new(),
                    true,
                );
            }
        }
    }

    fn enqueue(
        &mut self,
        block: usize,
        input: Value,
        backpack: Arc<Value>,
        ctx: Arc<Ctx>,
        parents: Parents,
        from_carried: bool,
    ) {
        if self.overflows(block, 1) {
            return;
        }
        for &(frame, index) in &ctx.frames {
            if let Some(frame) = self.frames.get_mut(&frame) {
                frame.alive[index as usize] += 1;
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.push_queued(Pending {
            id,
            block,
            input,
            backpack,
            ctx,
            item: None,
            parents,
            queued_at_ms: self.now_ms,
            attempt: 1,
            retried: 0,
            from_carried,
        });
        self.counts[block].queued += 1;
    }

    /// Puts an invocation (its id fresh) at the back of its block's queue.
    fn push_queued(&mut self, pending: Pending) {
        let block = pending.block;
        if self.queues[block].is_empty() {
            self.ready.insert((pending.id, block));
        }
        self.queues[block].push_back(pending);
        self.queued_total += 1;
    }

    /// Queues a fan-out's items (frame `frame`, its alive counts still 0) in one go: what
    /// [`Self::enqueue`] does per invocation (the open items' counts, the ready list, the block's
    /// counts) is done once for them all, and the queue grows once.
    #[allow(clippy::too_many_arguments)]
    fn enqueue_items(
        &mut self,
        block: usize,
        items: &[Value],
        backpack: &Arc<Value>,
        ctx: &Arc<Ctx>,
        frame: u64,
        parent: InvocationId,
        from_carried: bool,
    ) {
        let n = items.len();
        if n == 0 || self.overflows(block, n) {
            return;
        }
        for &(outer, index) in &ctx.frames {
            if let Some(outer) = self.frames.get_mut(&outer) {
                outer.alive[index as usize] += n as u32;
            }
        }
        if let Some(frame) = self.frames.get_mut(&frame) {
            frame.alive.fill(1);
        }
        let first = self.next_id;
        self.next_id += n as u64;
        if self.queues[block].is_empty() {
            self.ready.insert((first, block));
        }
        let queued_at_ms = self.now_ms;
        self.queues[block].extend(items.iter().zip(0..).map(|(item, index)| Pending {
            id: first + u64::from(index),
            block,
            input: item.clone(),
            backpack: Arc::clone(backpack),
            ctx: Arc::clone(ctx),
            item: Some((frame, index)),
            parents: smallvec::smallvec![parent],
            queued_at_ms,
            attempt: 1,
            retried: 0,
            from_carried,
        }));
        self.counts[block].queued += n as u64;
        self.queued_total += n;
    }

    /// Whether queuing `n` more invocations of `block` would pass the run's bound; if so, the run
    /// fails naming the block, and stops at the end of this step.
    fn overflows(&mut self, block: usize, n: usize) -> bool {
        if self.overflow.is_some() {
            return true;
        }
        if self.queued_total + n <= self.max_queued {
            return false;
        }
        self.overflow = Some(block);
        let name = &self.plan.blocks[block].name;
        self.fail_run(
            block,
            &[],
            "too_many_queued",
            format!(
                "{} more invocations of \"{name}\" would pass the {} a run may have queued at once \
                 ({} are queued; a loop through a fan-out multiplies its invocations each time \
                 round): the run stopped",
                crate::text::count(n as u64),
                crate::text::count(self.max_queued as u64),
                crate::text::count(self.queued_total as u64),
            ),
        );
        true
    }

    /// Keys of running invocations the run stopped by itself (past its bound of queued invocations),
    /// for the invoker to stop.
    pub fn take_stops(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.stops)
    }

    /// How the invocation `pending` of `block` runs.
    fn runs(&self, block: usize, pending: &Pending) -> Runs {
        match &self.plan.blocks[block].behaviour {
            Behaviour::Code => Runs::InSlot,
            // A run that starts at a Queue is one batch of its messages: it passes them on.
            Behaviour::Enqueue if !pending.parents.is_empty() => Runs::Elsewhere,
            _ => Runs::AtOnce,
        }
    }

    /// How an invocation of a block that runs at once ends.
    fn result_at_once(&self, block: usize, pending: &Pending) -> Outcome {
        let returns = |output| Outcome::Returned {
            output,
            backpack: None,
            ifs: Vec::new(),
            items: Vec::new(),
        };
        match &self.plan.blocks[block].behaviour {
            Behaviour::Constant(value) => returns(value.clone()),
            Behaviour::Batches(size) => returns(Value::Array(
                super::plan::messages(pending.input.clone())
                    .chunks(*size as usize)
                    .map(|batch| Value::Array(batch.to_vec()))
                    .collect(),
            )),
            Behaviour::NotRunnable(reason) => Outcome::Raised {
                error: ErrorInfo {
                    kind: "NotRunnable".to_owned(),
                    message: reason.clone(),
                    traceback: String::new(),
                    line: None,
                },
                backpack: None,
            },
            Behaviour::PassThrough | Behaviour::Enqueue | Behaviour::Code => {
                returns(pending.input.clone())
            }
        }
    }

    /// Moves queued invocations into running, up to the run's own limit, and returns them as tasks. In
    /// a redrive, an invocation that can take the earlier run's end does so here, without a task.
    pub fn take_ready(&mut self) -> Vec<Task> {
        let mut room = std::mem::take(&mut self.own_room);
        let tasks = self.take_ready_in(&mut room);
        self.own_room = room;
        tasks
    }

    /// Moves queued invocations into running while `room` has slots for them, oldest first, and
    /// returns them as tasks. An invocation that needs no slot (a block that passes its input on, one
    /// that can't run) ends here at once; a Queue's invocation of a served run is a task for the
    /// service's host and needs no slot either.
    pub fn take_ready_in(&mut self, room: &mut dyn Room) -> Vec<Task> {
        let mut tasks = Vec::new();
        // Blocks with queued invocations that found no slot: listed again once this step is done.
        let mut waiting: SmallVec<[(u64, usize); 4]> = SmallVec::new();
        let mut full = false;
        while let Some((seq, block)) = self.ready.pop_first() {
            let Some(front) = self.queues[block].front() else {
                continue;
            };
            let runs = self.runs(block, front);
            if runs == Runs::InSlot {
                if full {
                    waiting.push((seq, block));
                    continue;
                }
                match room.take(block) {
                    Ok(()) => {}
                    Err(why) => {
                        full = why == Full::All;
                        waiting.push((seq, block));
                        continue;
                    }
                }
            }
            let Some(pending) = self.queues[block].pop_front() else {
                continue;
            };
            if let Some(next) = self.queues[block].front() {
                self.ready.insert((next.id, block));
            }
            self.queued_total -= 1;
            let counts = &mut self.counts[block];
            counts.queued -= 1;
            counts.running += 1;
            let id = pending.id;
            if let Some((carried_id, end)) = self.carried_end(&pending) {
                self.running.insert(id, pending);
                self.now_ms = now_ms();
                self.finish_invocation(id, carried_ending(end), None, Some(carried_id), room);
                continue;
            }
            let timeout_s = self.plan.blocks[block].timeout_s;
            let refused = if runs == Runs::AtOnce {
                Some(self.result_at_once(block, &pending))
            } else {
                self.json.clear();
                let _ = serde_json::to_writer(&mut self.json, &pending.input);
                (self.json.len() > self.max_input_bytes).then(|| Outcome::Raised {
                    error: ErrorInfo {
                        kind: "InputTooLarge".to_owned(),
                        message: format!(
                            "its input is {} bytes of JSON, more than the {} an invocation may \
                             take (a fan-in of many large values: pass on smaller values, or the \
                             paths of files that hold them)",
                            crate::text::count(self.json.len() as u64),
                            crate::text::count(self.max_input_bytes as u64)
                        ),
                        traceback: String::new(),
                        line: None,
                    },
                    backpack: None,
                })
            };
            if let Some(outcome) = refused {
                self.running.insert(id, pending);
                let now = now_ms();
                self.now_ms = now;
                self.complete_invocation(
                    id,
                    TaskResult {
                        worker: None,
                        key: id,
                        attempt: 1,
                        started_at_ms: Some(now),
                        ended_at_ms: Some(now),
                        stdout: String::new(),
                        stderr: String::new(),
                        outcome,
                    },
                    room,
                );
                continue;
            }
            // serde_json writes UTF-8.
            let input_json = std::str::from_utf8(&self.json)
                .map(smol_str::SmolStr::new)
                .unwrap_or_default();
            if self.json.capacity() > SCRATCH_KEPT {
                // A large input's buffer is not kept for the rest of the run.
                self.json = Vec::new();
            }
            tasks.push(Task {
                key: self.key_base + id,
                attempt: pending.attempt,
                program: self.program,
                block: block as u32,
                timeout_s,
                input_json,
                backpack_json: self.backpack_json(&pending.backpack),
            });
            self.running.insert(id, pending);
        }
        for entry in waiting {
            self.ready.insert(entry);
        }
        tasks
    }

    /// In a redrive, the earlier run's end for this invocation (and the invocation it was), when it
    /// takes one: the earlier run has an end for its block and item keys not taken yet, and either
    /// everything it came from was carried over or it is given what the earlier one was.
    fn carried_end(&mut self, pending: &Pending) -> Option<(InvocationId, CarriedEnd)> {
        let carry = self.carry.as_mut()?;
        let names = item_names(&pending.ctx, pending.item, &self.frames);
        let path = pending.path();
        let keys = crate::run::key_path(&path, &names);
        let key = carry_key(pending.block, keys.iter().map(|k| &**k));
        let ends = carry.get_mut(&key)?;
        let same_input = |end: &CarriedEnd| match end {
            CarriedEnd::Succeeded {
                input, backpack_in, ..
            } => {
                *input == pending.input
                    && (Arc::ptr_eq(backpack_in, &pending.backpack)
                        || backpack_in == &pending.backpack)
            }
            CarriedEnd::Failed { .. } => true,
        };
        if !pending.from_carried && !same_input(&ends.front()?.end) {
            return None;
        }
        let carried = ends.pop_front()?;
        if ends.is_empty() {
            carry.remove(&key);
        }
        Some((carried.id, carried.end))
    }

    fn backpack_json(&mut self, backpack: &Arc<Value>) -> Arc<str> {
        if let Some((value, json)) = &self.backpack_json
            && Arc::ptr_eq(value, backpack)
        {
            return Arc::clone(json);
        }
        let json: Arc<str> = serde_json::to_string(&**backpack)
            .unwrap_or_default()
            .into();
        self.backpack_json = Some((Arc::clone(backpack), Arc::clone(&json)));
        json
    }

    /// Feeds one finished task back in. Results of unknown or cancelled invocations are ignored.
    pub fn complete(&mut self, result: TaskResult) {
        self.complete_all([result]);
    }

    /// Feeds a batch of finished tasks of a run with its own limit back in (see
    /// [`Self::complete_all_in`]).
    pub fn complete_all(&mut self, results: impl IntoIterator<Item = TaskResult>) {
        let mut room = std::mem::take(&mut self.own_room);
        self.complete_all_in(results, &mut room);
        self.own_room = room;
    }

    /// Feeds a batch of finished tasks back in; their slots go back to `room`. The invocations they
    /// queue share one time stamp: the clock is read once per batch (read per result, it takes a tenth
    /// of the engine's time).
    pub fn complete_all_in(
        &mut self,
        results: impl IntoIterator<Item = TaskResult>,
        room: &mut dyn Room,
    ) {
        self.now_ms = now_ms();
        for result in results {
            let id = result.key - self.key_base;
            self.complete_invocation(id, result, room);
        }
        if self.overflow.is_some() && !(self.running.is_empty() && self.queued_total == 0) {
            let keys = self.stop(room);
            self.stops.extend(keys);
        }
    }

    fn complete_invocation(&mut self, id: InvocationId, result: TaskResult, room: &mut dyn Room) {
        let Some(inv) = self.running.get(&id) else {
            return;
        };
        let ending = match result.outcome {
            Outcome::Returned {
                output,
                backpack,
                ifs,
                items,
            } => Ending::Returned {
                // Unchanged (the common case): the same shared value, not a copy.
                backpack: backpack.map_or_else(|| Arc::clone(&inv.backpack), Arc::new),
                output,
                ifs,
                items,
            },
            Outcome::Raised { error, backpack } => Ending::Failed {
                error,
                backpack: backpack.map(Arc::new),
                timed_out: false,
                carried: false,
            },
            Outcome::TimedOut { error } => Ending::Failed {
                error,
                backpack: None,
                timed_out: true,
                carried: false,
            },
            Outcome::Crashed { error } => Ending::Failed {
                error,
                backpack: None,
                timed_out: false,
                carried: false,
            },
            Outcome::Cancelled => Ending::Cancelled,
        };
        let ran = Ran {
            attempt: result.attempt,
            started_at_ms: result.started_at_ms,
            ended_at_ms: result.ended_at_ms,
            stdout: result.stdout,
            stderr: result.stderr,
            worker: result.worker,
        };
        self.finish_invocation(id, ending, Some(ran), None, room);
    }

    /// An invocation has ended (run, or carried over from the run redriven): record it, fire its
    /// transitions, retry it or fail it.
    fn finish_invocation(
        &mut self,
        id: InvocationId,
        ending: Ending,
        ran: Option<Ran>,
        carried_from: Option<InvocationId>,
        room: &mut dyn Room,
    ) {
        let Some(mut inv) = self.running.remove(&id) else {
            return;
        };
        let block = inv.block;
        self.counts[block].running -= 1;
        let plan = Arc::clone(&self.plan);
        if plan.blocks[block].behaviour == Behaviour::Code {
            room.give_back(block);
        }
        let plan_block = &plan.blocks[block];
        // A single-invocation run (a replay) fires nothing: its block is its only leaf. Nor does a
        // served Queue a run reached: what it kept goes on in batch runs of its own.
        let kept = plan_block.behaviour == Behaviour::Enqueue && !inv.parents.is_empty();
        let out = if self.single || kept {
            &NO_TRANSITIONS
        } else {
            &plan_block.outgoing
        };
        let ran = ran.unwrap_or_else(|| Ran {
            attempt: inv.attempt,
            started_at_ms: Some(self.now_ms),
            ended_at_ms: Some(self.now_ms),
            stdout: String::new(),
            stderr: String::new(),
            worker: None,
        });
        let mut record = InvocationRecord {
            run_id: self.run_id.clone(),
            id,
            block_id: plan_block.id.clone(),
            block_name: plan_block.name.clone(),
            item_path: inv.path(),
            item_names: item_names(&inv.ctx, inv.item, &self.frames),
            attempt: ran.attempt.max(inv.attempt),
            parents: std::mem::take(&mut inv.parents),
            status: InvocationStatus::Succeeded,
            queued_at_ms: inv.queued_at_ms,
            started_at_ms: ran.started_at_ms,
            ended_at_ms: ran.ended_at_ms,
            input: Value::Null,
            backpack_in: Arc::clone(&inv.backpack),
            output: None,
            backpack_out: None,
            stdout: ran.stdout,
            stderr: ran.stderr,
            error: None,
            fired: Vec::new(),
            worker: ran.worker,
            fanned_out: Vec::new(),
            carried_from,
        };
        let carried = carried_from.is_some();
        let mut fired: Vec<TransitionId> = Vec::new();
        let failure = match ending {
            Ending::Returned {
                output,
                backpack,
                ifs,
                items,
            } => match self.names_of(
                &plan_block.name,
                &plan_block.outgoing.fan_outs,
                &output,
                items,
            ) {
                Ok(named) => {
                    let chosen = Chosen::Evaluated(&ifs);
                    self.succeeded(
                        &mut inv,
                        &mut record,
                        &mut fired,
                        (output, backpack),
                        chosen,
                        &named,
                        false,
                    );
                    None
                }
                Err(error) => {
                    record.output = Some(output);
                    Some((error, Some(backpack), false))
                }
            },
            Ending::Carried {
                output,
                backpack,
                fired: then,
                fanned_out,
            } => {
                let named: Vec<Option<Arc<ItemNames>>> = out
                    .fan_outs
                    .iter()
                    .map(|edge| {
                        fanned_out
                            .iter()
                            .find(|f| f.transition == edge.transition)
                            .map(|f| Arc::clone(&f.names))
                    })
                    .collect();
                self.succeeded(
                    &mut inv,
                    &mut record,
                    &mut fired,
                    (output, backpack),
                    Chosen::Recorded(&then),
                    &named,
                    true,
                );
                None
            }
            Ending::Failed {
                error,
                backpack,
                timed_out,
                carried: carried_failure,
            } => {
                if !carried_failure
                    && !self.cancelled
                    && let Some(retries) = &plan_block.retries
                    && inv.retried < retries.count
                    && retries.retries(&error.kind)
                    && !REFUSALS.contains(&error.kind.as_str())
                {
                    // Another attempt, after its delay: the item stays open meanwhile.
                    let due = self.now_ms + retries.delay_ms(inv.retried + 1);
                    record.status = InvocationStatus::Retried;
                    record.backpack_out =
                        Some(backpack.unwrap_or_else(|| Arc::clone(&inv.backpack)));
                    record.error = Some(error);
                    record.input = inv.input.clone();
                    self.counts[block].retrying += 1;
                    inv.retried += 1;
                    inv.attempt = record.attempt + 1;
                    inv.parents.clone_from(&record.parents);
                    self.outbox.push(record);
                    self.waiting.push((due, inv));
                    return;
                }
                Some((error, backpack, timed_out))
            }
            Ending::Cancelled => {
                record.status = InvocationStatus::Cancelled;
                None
            }
        };
        if let Some((error, backpack, timed_out)) = failure {
            let backpack = backpack.unwrap_or_else(|| Arc::clone(&inv.backpack));
            if out.exceptions.is_empty() {
                record.status = if timed_out {
                    InvocationStatus::TimedOut
                } else {
                    InvocationStatus::Exception
                };
                self.note_reason(
                    inv.innermost(),
                    format!("{} in \"{}\"", error.summary(), plan_block.name),
                );
                let name = record.item_name();
                let failure = RunFailure {
                    block: plan_block.name.to_string(),
                    block_id: plan_block.id.clone(),
                    item_path: inv.path().to_vec(),
                    item_key: name.filter(|n| n.has_key()).map(|n| n.key().into_owned()),
                    item_label: name.and_then(ItemName::label).map(str::to_owned),
                    status: if timed_out { "timed_out" } else { "exception" }.to_owned(),
                    error: error.summary(),
                    traceback: (!error.traceback.is_empty()).then(|| error.traceback.clone()),
                    invocation: Some(id),
                };
                self.run_failure(inv.innermost(), block, failure);
            } else {
                record.status = InvocationStatus::CaughtException;
                let payload = json!({
                    "version": "1.0.0",
                    "exception_text": if error.traceback.is_empty() { error.summary() } else { error.traceback.clone() },
                    "input_data": inv.input,
                });
                for edge in &out.exceptions {
                    fired.push(edge.transition.clone());
                    let ctx = inv.full_ctx(&self.frames);
                    self.enqueue(
                        edge.target,
                        payload.clone(),
                        Arc::clone(&backpack),
                        ctx,
                        smallvec::smallvec![id],
                        carried,
                    );
                }
            }
            record.backpack_out = Some(backpack);
            record.error = Some(error);
        }
        record.fired = fired;
        if self.answering == Answering::Waiting {
            match record.status {
                InvocationStatus::Succeeded if plan_block.responds => {
                    let value = record.output.clone().unwrap_or(Value::Null);
                    self.answer_with(|| Answer::Value(value));
                }
                InvocationStatus::Exception | InvocationStatus::TimedOut => {
                    let error = record.error.as_ref().map(ErrorInfo::summary);
                    self.answer_with(|| Answer::Failed {
                        block: plan_block.name.to_string(),
                        error: error.unwrap_or_default(),
                        invocation: Some(id),
                    });
                }
                _ => {}
            }
        }
        self.counts[block].add_final(record.status);
        self.release(inv.open_items());
        record.input = inv.input;
        self.outbox.push(record);
    }

    /// The names of a returned value's items, one per fan-out of the block (`None`: by index), or the
    /// error that fails the invocation: a names list that does not match the items, or keys given to
    /// more than one item.
    fn names_of(
        &self,
        block_name: &str,
        fan_outs: &[super::plan::FanOutEdge],
        output: &Value,
        items: Vec<ItemNames>,
    ) -> Result<Vec<Option<Arc<ItemNames>>>, ErrorInfo> {
        let error = |kind: &str, message: String| ErrorInfo {
            kind: kind.to_owned(),
            message,
            traceback: String::new(),
            line: None,
        };
        if fan_outs.is_empty() {
            return Ok(Vec::new());
        }
        let Some(values) = output.as_array() else {
            // A replay fires nothing, so its value need not be an array.
            if self.single {
                return Ok(vec![None; fan_outs.len()]);
            }
            return Err(error(
                "TypeError",
                format!("fan-out needs an array, got {}", json_type(output)),
            ));
        };
        if items.is_empty() {
            return Ok(vec![None; fan_outs.len()]);
        }
        if items.len() != fan_outs.len() {
            return Err(error(
                "ValueError",
                format!(
                    "the invoker named the items of {} fan-outs; \"{block_name}\" has {}",
                    items.len(),
                    fan_outs.len()
                ),
            ));
        }
        let mut named = Vec::with_capacity(items.len());
        for (names, edge) in items.into_iter().zip(fan_outs) {
            if !names.has_keys() && !names.has_labels() {
                named.push(None);
                continue;
            }
            let target = &self.plan.blocks[edge.target].name;
            if names.named_items() != Some(values.len()) {
                return Err(error(
                    "ValueError",
                    format!(
                        "the fan-out to \"{target}\" named {} items of {}",
                        names.named_items().unwrap_or(0),
                        values.len()
                    ),
                ));
            }
            let duplicates = names.duplicate_keys();
            if !duplicates.is_empty() {
                const SHOWN: usize = 5;
                let mut listed: Vec<String> = duplicates
                    .iter()
                    .take(SHOWN)
                    .map(|(key, items)| {
                        let items: Vec<usize> = items.iter().map(|&i| i as usize).collect();
                        format!("{key:?} (items {})", list_items(&items))
                    })
                    .collect();
                if duplicates.len() > SHOWN {
                    listed.push(format!("and {} more", duplicates.len() - SHOWN));
                }
                return Err(error(
                    "DuplicateKeyError",
                    format!(
                        "the fan-out to \"{target}\" gives more than one item the same key: {}",
                        listed.join(", ")
                    ),
                ));
            }
            named.push(Some(Arc::new(names)));
        }
        Ok(named)
    }

    /// A successful end (run or carried over): fire its transitions, and keep its result if it is a leaf.
    #[allow(clippy::too_many_arguments)]
    fn succeeded(
        &mut self,
        inv: &mut Pending,
        record: &mut InvocationRecord,
        fired: &mut Vec<TransitionId>,
        (output, backpack): (Value, Arc<Value>),
        chosen: Chosen<'_>,
        named: &[Option<Arc<ItemNames>>],
        carried: bool,
    ) {
        let plan = Arc::clone(&self.plan);
        let plan_block = &plan.blocks[inv.block];
        // A replay's block, and a served Queue a run reached, fire nothing (see finish_invocation).
        let leaf =
            self.single || plan_block.behaviour == Behaviour::Enqueue && !record.parents.is_empty();
        if !leaf {
            self.fire_success(inv, &output, &backpack, chosen, named, fired, carried);
        }
        if leaf || plan_block.outgoing.is_empty() {
            self.results.push((
                inv.block,
                RunResult {
                    block: plan_block.name.to_string(),
                    block_id: plan_block.id.clone(),
                    item_path: inv.path().to_vec(),
                    output: output.clone(),
                },
            ));
        } else if fired.is_empty() {
            self.note_reason(
                inv.innermost(),
                format!("no transition fired after \"{}\"", plan_block.name),
            );
        }
        record.fanned_out = plan_block
            .outgoing
            .fan_outs
            .iter()
            .zip(named)
            .filter_map(|(edge, names)| {
                Some(FannedOut {
                    transition: edge.transition.clone(),
                    names: Arc::clone(names.as_ref()?),
                })
            })
            .collect();
        record.output = Some(output);
        record.backpack_out = Some(backpack);
    }

    /// A failure of the run, or, in a fan-out whose fan-ins all tolerate failures, one that waits for
    /// their verdict.
    fn run_failure(&mut self, innermost: Option<(u64, u32)>, block: usize, failure: RunFailure) {
        if let Some((frame_id, _)) = innermost
            && let Some(frame) = self.frames.get_mut(&frame_id)
            && frame.tolerant
        {
            frame.held_failures.push((block, failure));
            return;
        }
        self.failed = true;
        self.failures.push((block, failure));
    }

    #[allow(clippy::too_many_arguments)]
    fn fire_success(
        &mut self,
        inv: &mut Pending,
        output: &Value,
        backpack: &Arc<Value>,
        chosen: Chosen<'_>,
        named: &[Option<Arc<ItemNames>>],
        fired: &mut Vec<TransitionId>,
        carried: bool,
    ) {
        let plan = Arc::clone(&self.plan);
        let out = &plan.blocks[inv.block].outgoing;
        // `then`, every true `if`, and `else` when the block has `if`s and none was true: each passes
        // the return value and backpack on unchanged. A carried-over invocation fires what fired then.
        let passing: Vec<&super::plan::Edge> = match chosen {
            Chosen::Evaluated(ifs) => {
                let any_if = ifs.iter().any(|&truth| truth);
                out.then
                    .iter()
                    .chain(
                        out.ifs
                            .iter()
                            .zip(ifs)
                            .filter(|(_, truth)| **truth)
                            .map(|(edge, _)| edge),
                    )
                    .chain(out.elses.iter().filter(|_| !out.ifs.is_empty() && !any_if))
                    .collect()
            }
            Chosen::Recorded(then) => out
                .then
                .iter()
                .chain(&out.ifs)
                .chain(&out.elses)
                .filter(|edge| then.contains(&edge.transition))
                .collect(),
        };
        let takes = |transition: &TransitionId| match chosen {
            Chosen::Evaluated(_) => true,
            Chosen::Recorded(then) => then.contains(transition),
        };
        for edge in passing {
            fired.push(edge.transition.clone());
            let ctx = inv.full_ctx(&self.frames);
            self.enqueue(
                edge.target,
                output.clone(),
                Arc::clone(backpack),
                ctx,
                smallvec::smallvec![inv.id],
                carried,
            );
        }
        for (edge, names) in out
            .fan_outs
            .iter()
            .zip(named.iter().map(Some).chain(std::iter::repeat(None)))
        {
            if !takes(&edge.transition) {
                continue;
            }
            fired.push(edge.transition.clone());
            let items = output.as_array().map_or(&[][..], Vec::as_slice);
            let frame_id = self.next_frame;
            self.next_frame += 1;
            let sets: Vec<FanInSet> = edge
                .closing
                .iter()
                .map(|&target| FanInSet::new(target, items.len()))
                .collect();
            for set in &sets {
                self.fan_ins[set.target].expected += items.len() as u64;
            }
            let tolerant = !sets.is_empty()
                && sets
                    .iter()
                    .all(|s| plan.blocks[s.target].tolerance.is_some());
            let parent = inv.full_ctx(&self.frames);
            self.frames.insert(
                frame_id,
                Frame {
                    parent: Arc::clone(&parent),
                    origin: inv.id,
                    base_backpack: Arc::clone(backpack),
                    alive: vec![0; items.len()],
                    unsettled: items.len(),
                    sets,
                    reasons: FxHashMap::default(),
                    names: names
                        .and_then(Option::as_ref)
                        .map_or_else(|| Arc::new(ItemNames::indexed()), Arc::clone),
                    tolerant,
                    held_failures: Vec::new(),
                    carried,
                },
            );
            self.enqueue_items(
                edge.target,
                items,
                backpack,
                &parent,
                frame_id,
                inv.id,
                carried,
            );
            if items.is_empty() {
                self.settle_frame(frame_id);
            }
        }
        for edge in &out.fan_ins {
            if !takes(&edge.transition) {
                continue;
            }
            fired.push(edge.transition.clone());
            self.deliver_fan_in(inv, edge.target, output, backpack, carried);
        }
        for edge in &out.merges {
            if !takes(&edge.transition) {
                continue;
            }
            fired.push(edge.transition.clone());
            self.deliver_merge(inv, edge.target, edge.slot, output, backpack, carried);
        }
    }

    fn deliver_fan_in(
        &mut self,
        inv: &Pending,
        target: usize,
        output: &Value,
        backpack: &Arc<Value>,
        carried: bool,
    ) {
        let Some((frame_id, item)) = inv.innermost() else {
            let name = self.plan.blocks[inv.block].name.clone();
            self.fail_run(
                target,
                &inv.path(),
                "fan_in",
                format!(
                    "fan-in from \"{name}\" to \"{}\" has no fan-out around it",
                    self.plan.blocks[target].name
                ),
            );
            return;
        };
        let Some(frame) = self.frames.get_mut(&frame_id) else {
            return;
        };
        let n = frame.alive.len();
        let index = if let Some(i) = frame.sets.iter().position(|s| s.target == target) {
            i
        } else {
            // A fan-in the static analysis did not foresee (it over-approximates, so rarely): track it too.
            frame.sets.push(FanInSet::new(target, n));
            self.fan_ins[target].expected += n as u64;
            frame.sets.len() - 1
        };
        let set = &mut frame.sets[index];
        let slot = item as usize;
        if set.got[slot].is_some() {
            set.extra[slot] += 1;
        } else {
            set.got[slot] = Some(Delivery {
                value: output.clone(),
                backpack: Arc::clone(backpack),
                from: inv.id,
                carried,
            });
            set.delivered += 1;
            self.fan_ins[target].arrived += 1;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn deliver_merge(
        &mut self,
        inv: &mut Pending,
        target: usize,
        slot: usize,
        output: &Value,
        backpack: &Arc<Value>,
        carried: bool,
    ) {
        let k = self.plan.blocks[target].merge_inputs;
        let ctx = inv.full_ctx(&self.frames);
        let key = (target, ctx.frames.to_vec());
        let state = self
            .merges
            .entry(key.clone())
            .or_insert_with(|| MergeState {
                ctx,
                got: (0..k).map(|_| None).collect(),
                extra: vec![0; k],
            });
        if state.got[slot].is_some() {
            state.extra[slot] += 1;
            return;
        }
        state.got[slot] = Some(Delivery {
            value: output.clone(),
            backpack: Arc::clone(backpack),
            from: inv.id,
            carried,
        });
        if state.got.iter().all(Option::is_some) && state.extra.iter().all(|&e| e == 0) {
            let Some(complete) = self.merges.remove(&key) else {
                return;
            };
            let all_carried = complete.got.iter().flatten().all(|d| d.carried);
            let (values, backpack, parents) = combine(
                &Value::Object(Map::new()),
                complete.got.into_iter().flatten(),
            );
            self.enqueue(
                target,
                values,
                Arc::new(backpack),
                complete.ctx,
                parents.into(),
                all_carried,
            );
        }
    }

    /// Keeps why the branch of `innermost` (the fan-out item it is in) ended without delivering.
    fn note_reason(&mut self, innermost: Option<(u64, u32)>, reason: String) {
        if let Some((frame_id, item)) = innermost
            && let Some(frame) = self.frames.get_mut(&frame_id)
        {
            frame.reasons.entry(item).or_insert(reason);
        }
    }

    fn fail_run(&mut self, block: usize, path: &[u32], status: &str, error: String) {
        self.failed = true;
        let name = self.plan.blocks[block].name.to_string();
        let summary = error.clone();
        self.answer_with(|| Answer::Failed {
            block: name,
            error: summary,
            invocation: None,
        });
        let plan_block = &self.plan.blocks[block];
        self.failures.push((
            block,
            RunFailure {
                block: plan_block.name.to_string(),
                block_id: plan_block.id.clone(),
                item_path: path.to_vec(),
                item_key: None,
                item_label: None,
                status: status.to_owned(),
                error,
                traceback: None,
                invocation: None,
            },
        ));
    }

    /// An invocation is over and its successors are queued: it no longer keeps its fan-out items open.
    fn release(&mut self, open_items: impl Iterator<Item = (u64, u32)>) {
        for (frame_id, item) in open_items {
            let Some(frame) = self.frames.get_mut(&frame_id) else {
                continue;
            };
            let alive = &mut frame.alive[item as usize];
            *alive -= 1;
            if *alive == 0 {
                frame.unsettled -= 1;
                self.count_missing(frame_id, item);
                self.settle_merges(Some((frame_id, item)));
                let Some(frame) = self.frames.get(&frame_id) else {
                    continue;
                };
                if frame.unsettled == 0 {
                    self.settle_frame(frame_id);
                }
            }
        }
    }

    /// An item has settled: each fan-in it did not deliver to counts it missing.
    fn count_missing(&mut self, frame_id: u64, item: u32) {
        let Some(frame) = self.frames.get(&frame_id) else {
            return;
        };
        for set in &frame.sets {
            if set.got[item as usize].is_some() {
                continue;
            }
            let ledger = &mut self.fan_ins[set.target];
            ledger.missing += 1;
            if ledger.missing_items.len() < FanInCounts::LISTED {
                let mut item_path = frame.parent.path.to_vec();
                item_path.push(item);
                ledger.missing_items.push(MissingItem {
                    item_path,
                    key: frame.names.key(item).into_owned(),
                    label: frame.names.label(item).map(str::to_owned),
                    reason: frame
                        .reasons
                        .get(&item)
                        .cloned()
                        .unwrap_or_else(|| "it delivered nothing".to_owned()),
                });
            }
        }
    }

    /// Every item of a fan-out has settled: fire each fan-in (with what arrived, when the missing items
    /// are within its failure budget), or fail it saying what is missing and why.
    fn settle_frame(&mut self, frame_id: u64) {
        let Some(frame) = self.frames.remove(&frame_id) else {
            return;
        };
        let n = frame.alive.len();
        let mut within_budgets = true;
        for set in frame.sets {
            let target_name = self.plan.blocks[set.target].name.clone();
            let tolerance = self.plan.blocks[set.target].tolerance;
            let missing: Vec<usize> = (0..n).filter(|&i| set.got[i].is_none()).collect();
            let twice: Vec<usize> = (0..n).filter(|&i| set.extra[i] > 0).collect();
            let allowed = tolerance.map_or(0, |t| t.allowed(n));
            if twice.is_empty() && missing.len() <= allowed {
                let failed_items: Option<Value> = tolerance.map(|_| {
                    Value::Array(
                        missing
                            .iter()
                            .map(|&i| {
                                let item = i as u32;
                                let mut entry = Map::new();
                                entry.insert("index".into(), json!(i));
                                entry.insert("key".into(), json!(frame.names.key(item)));
                                if let Some(label) = frame.names.label(item) {
                                    entry.insert("label".into(), json!(label));
                                }
                                entry.insert(
                                    "error".into(),
                                    json!(
                                        frame
                                            .reasons
                                            .get(&item)
                                            .map_or("it delivered nothing", String::as_str)
                                    ),
                                );
                                Value::Object(entry)
                            })
                            .collect(),
                    )
                });
                let all_carried = frame.carried && set.got.iter().flatten().all(|d| d.carried);
                let (values, mut backpack, mut parents) =
                    combine(&frame.base_backpack, set.got.into_iter().flatten());
                if let (Some(failed_items), Value::Object(map)) = (failed_items, &mut backpack) {
                    map.insert(FAILED_ITEMS_KEY.to_owned(), failed_items);
                }
                if parents.is_empty() {
                    parents.push(frame.origin);
                }
                self.enqueue(
                    set.target,
                    values,
                    Arc::new(backpack),
                    Arc::clone(&frame.parent),
                    parents.into(),
                    all_carried,
                );
                continue;
            }
            within_budgets = false;
            let mut message = format!(
                "fan-in \"{target_name}\" got {} of {n} results",
                set.delivered
            );
            if !missing.is_empty() {
                if allowed > 0 {
                    let _ = write!(
                        message,
                        ", {} missing where it tolerates {allowed}",
                        missing.len()
                    );
                }
                message.push_str("; missing ");
                message.push_str(if missing.len() == 1 {
                    "item "
                } else {
                    "items "
                });
                message.push_str(&list_named(&missing, &frame.names));
                let explained: Vec<String> = missing
                    .iter()
                    .filter_map(|&i| {
                        frame
                            .reasons
                            .get(&(i as u32))
                            .map(|r| format!("item {}: {r}", item_text(i, &frame.names)))
                    })
                    .take(3)
                    .collect();
                if !explained.is_empty() {
                    let _ = write!(message, " ({})", explained.join("; "));
                }
            }
            if !twice.is_empty() {
                let _ = write!(
                    message,
                    "; {} delivered more than once: {}",
                    if twice.len() == 1 { "item" } else { "items" },
                    list_named(&twice, &frame.names)
                );
            }
            self.fail_run(set.target, &frame.parent.path, "fan_in", message);
            let reason = format!("fan-in \"{target_name}\" failed");
            self.note_reason(frame.parent.frames.last().copied(), reason);
        }
        // The items' failures: tolerated when every fan-in fired, failures of the run otherwise.
        if within_budgets {
            self.tolerated.extend(frame.held_failures);
        } else if !frame.held_failures.is_empty() {
            self.failed = true;
            self.failures.extend(frame.held_failures);
        }
    }

    /// A scope has settled (an item of a fan-out, or with `None` the whole run): its merges that are still
    /// waiting can never complete.
    fn settle_merges(&mut self, scope: Option<(u64, u32)>) {
        let waiting_keys: Vec<(usize, Vec<(u64, u32)>)> = self
            .merges
            .keys()
            .filter(|(_, frames)| frames.last().copied() == scope)
            .cloned()
            .collect();
        for key in waiting_keys {
            let Some(state) = self.merges.remove(&key) else {
                continue;
            };
            let plan_block = &self.plan.blocks[key.0];
            let k = state.got.len();
            let got = state.got.iter().filter(|g| g.is_some()).count();
            let missing: Vec<String> = state
                .got
                .iter()
                .enumerate()
                .filter(|(_, g)| g.is_none())
                .map(|(i, _)| format!("\"{}\"", plan_block.merge_sources[i]))
                .collect();
            let mut message = format!("merge \"{}\" got {got} of {k} inputs", plan_block.name);
            if !state.ctx.path.is_empty() {
                let _ = write!(message, " at item {:?}", state.ctx.path);
            }
            if !missing.is_empty() {
                let _ = write!(message, "; missing the result of {}", missing.join(", "));
            }
            if let Some(&(frame_id, item)) = state.ctx.frames.last()
                && let Some(reason) = self
                    .frames
                    .get(&frame_id)
                    .and_then(|f| f.reasons.get(&item).cloned())
            {
                let _ = write!(message, " ({reason})");
            }
            let dup: Vec<String> = state
                .extra
                .iter()
                .enumerate()
                .filter(|(_, e)| **e > 0)
                .map(|(i, _)| format!("\"{}\"", plan_block.merge_sources[i]))
                .collect();
            if !dup.is_empty() {
                let _ = write!(message, "; more than one result from {}", dup.join(", "));
            }
            let path = state.ctx.path.to_vec();
            let innermost = state.ctx.frames.last().copied();
            self.fail_run(key.0, &path, "merge", message);
            let reason = format!("merge \"{}\" failed", self.plan.blocks[key.0].name);
            self.note_reason(innermost, reason);
        }
    }

    /// When the next retry is due (ms since the epoch), if one waits: the engine wakes the run then.
    pub fn next_wake(&self) -> Option<f64> {
        self.waiting
            .iter()
            .map(|(due, _)| *due)
            .min_by(f64::total_cmp)
    }

    /// Queues the retries due by `now_ms`, in the order they failed; each is a new invocation (a new
    /// id) of the same item, with the next attempt number.
    pub fn wake(&mut self, now_ms: f64) {
        if self.waiting.is_empty() {
            return;
        }
        self.now_ms = crate::run::now_ms();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(at, _)| *at <= now_ms);
        self.waiting = later;
        for (_, mut pending) in due {
            pending.id = self.next_id;
            self.next_id += 1;
            pending.queued_at_ms = self.now_ms;
            let counts = &mut self.counts[pending.block];
            counts.retrying -= 1;
            counts.queued += 1;
            self.push_queued(pending);
        }
    }

    /// Stops a run with its own limit (see [`Self::cancel_in`]).
    pub fn cancel(&mut self) -> Vec<u64> {
        let mut room = std::mem::take(&mut self.own_room);
        let keys = self.cancel_in(&mut room);
        self.own_room = room;
        keys
    }

    /// Stops the run: nothing more starts; queued and running invocations end as cancelled, and the
    /// slots of those running go back to `room`. Returns the task keys the invoker (or the service's
    /// host) should stop.
    pub fn cancel_in(&mut self, room: &mut dyn Room) -> Vec<u64> {
        self.cancelled = true;
        self.stop(room)
    }

    /// Ends every queued and running invocation as cancelled; returns the running ones' task keys.
    fn stop(&mut self, room: &mut dyn Room) -> Vec<u64> {
        let mut keys = Vec::new();
        let now = now_ms();
        let mut stopped: Vec<(Pending, Stopped)> = self
            .running
            .drain()
            .map(|(_, p)| (p, Stopped::Running))
            .collect();
        for queue in &mut self.queues {
            stopped.extend(queue.drain(..).map(|p| (p, Stopped::Queued)));
        }
        stopped.extend(
            std::mem::take(&mut self.waiting)
                .into_iter()
                .map(|(_, p)| (p, Stopped::Retrying)),
        );
        self.ready.clear();
        self.queued_total = 0;
        stopped.sort_by_key(|(p, _)| p.id);
        for (pending, was) in stopped {
            let plan_block = &self.plan.blocks[pending.block];
            let counts = &mut self.counts[pending.block];
            match was {
                Stopped::Running => {
                    keys.push(self.key_base + pending.id);
                    if plan_block.behaviour == Behaviour::Code {
                        room.give_back(pending.block);
                    }
                    counts.running -= 1;
                }
                Stopped::Queued => counts.queued -= 1,
                Stopped::Retrying => counts.retrying -= 1,
            }
            counts.cancelled += 1;
            let item_names = item_names(&pending.ctx, pending.item, &self.frames);
            self.outbox.push(InvocationRecord {
                run_id: self.run_id.clone(),
                // A retry that was waiting had no invocation of its own yet: it gets one, cancelled.
                id: if was == Stopped::Retrying {
                    self.next_id += 1;
                    self.next_id - 1
                } else {
                    pending.id
                },
                block_id: plan_block.id.clone(),
                block_name: plan_block.name.clone(),
                item_path: pending.path(),
                item_names,
                attempt: pending.attempt,
                parents: pending.parents,
                status: InvocationStatus::Cancelled,
                queued_at_ms: pending.queued_at_ms,
                started_at_ms: None,
                ended_at_ms: Some(now),
                input: pending.input,
                backpack_in: pending.backpack,
                output: None,
                backpack_out: None,
                stdout: String::new(),
                stderr: String::new(),
                error: None,
                fired: Vec::new(),
                worker: None,
                fanned_out: Vec::new(),
                carried_from: None,
            });
        }
        // Failures waiting for a fan-in's verdict get none: they are the run's.
        for frame in self.frames.values_mut() {
            self.failures.append(&mut frame.held_failures);
        }
        self.frames.clear();
        self.merges.clear();
        keys
    }

    /// Some invocation waits to start.
    pub fn has_queued(&self) -> bool {
        self.queued_total > 0
    }

    /// Nothing is queued, running or waiting for a retry.
    pub fn is_idle(&self) -> bool {
        self.running.is_empty() && self.queued_total == 0 && self.waiting.is_empty()
    }

    pub fn take_records(&mut self) -> Vec<InvocationRecord> {
        // The next batch is likely as big as this one: room for it up front, rather than growing a
        // vector of large records by doubling (each doubling copies every record so far).
        let room = self.outbox.len();
        std::mem::replace(&mut self.outbox, Vec::with_capacity(room))
    }

    pub fn counts(&self) -> Vec<(crate::model::BlockId, BlockCounts)> {
        self.plan
            .blocks
            .iter()
            .zip(&self.counts)
            .map(|(b, c)| (b.id.clone(), *c))
            .collect()
    }

    /// The fan-in targets' ledgers, in project block order (blocks that are none are left out).
    pub fn fan_in_counts(&self) -> Vec<(crate::model::BlockId, FanInCounts)> {
        self.plan
            .blocks
            .iter()
            .zip(&self.fan_ins)
            .filter(|(_, c)| c.expected > 0)
            .map(|(b, c)| (b.id.clone(), c.clone()))
            .collect()
    }

    pub fn invocations(&self) -> u64 {
        self.next_id - 1
    }

    /// The run this one redrives, if it is a redrive.
    pub fn redrive_of(&self) -> Option<&RunId> {
        self.redrive_of.as_ref()
    }

    /// Ends the run. Merges still waiting at the top level can never complete now.
    pub fn finish(mut self) -> RunSummary {
        if !self.cancelled {
            self.settle_merges(None);
        }
        let status = if self.cancelled {
            RunStatus::Cancelled
        } else if self.failed {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        let by_place = |(a, fa): &(usize, RunFailure), (b, fb): &(usize, RunFailure)| {
            a.cmp(b).then_with(|| fa.item_path.cmp(&fb.item_path))
        };
        self.results
            .sort_by(|(a, ra), (b, rb)| a.cmp(b).then_with(|| ra.item_path.cmp(&rb.item_path)));
        self.failures.sort_by(by_place);
        self.tolerated.sort_by(by_place);
        let ended = now_ms();
        RunSummary {
            run_id: self.run_id,
            status,
            results: self.results.into_iter().map(|(_, r)| r).collect(),
            invocations: self.next_id - 1,
            failures: self.failures.into_iter().map(|(_, f)| f).collect(),
            tolerated: self.tolerated.into_iter().map(|(_, f)| f).collect(),
            redrive_of: self.redrive_of,
            started_at_ms: self.started_at_ms,
            duration_ms: ended - self.started_at_ms,
        }
    }
}

/// What a finished invocation's times and output were (a carried-over one has none of its own).
struct Ran {
    attempt: u32,
    started_at_ms: Option<f64>,
    ended_at_ms: Option<f64>,
    stdout: String,
    stderr: String,
    /// The Dask worker that ran it, on a cluster.
    worker: Option<std::sync::Arc<str>>,
}

/// Which of a block's `then`/`if`/`else` (and other) transitions fire: as its `if`s came out, or, for
/// a carried-over invocation, those that fired when it ran.
#[derive(Clone, Copy)]
enum Chosen<'a> {
    Evaluated(&'a [bool]),
    Recorded(&'a [TransitionId]),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stopped {
    Running,
    Queued,
    Retrying,
}

fn carried_ending(end: CarriedEnd) -> Ending {
    match end {
        CarriedEnd::Succeeded {
            output,
            backpack,
            fired,
            fanned_out,
            ..
        } => Ending::Carried {
            output,
            backpack,
            fired,
            fanned_out,
        },
        CarriedEnd::Failed { status, error } => Ending::Failed {
            error,
            backpack: None,
            timed_out: status == InvocationStatus::TimedOut,
            carried: true,
        },
    }
}

impl FanInSet {
    fn new(target: usize, n: usize) -> Self {
        Self {
            target,
            got: (0..n).map(|_| None).collect(),
            extra: vec![0; n],
            delivered: 0,
        }
    }
}
/// The array of delivered values, the backpacks merged shallowly in order over `base` (a later key
/// wins), and where they came from.
fn combine(
    base: &Value,
    deliveries: impl Iterator<Item = Delivery>,
) -> (Value, Value, Vec<InvocationId>) {
    let mut merged = match base {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    let mut values = Vec::new();
    let mut parents = Vec::new();
    let mut last: Option<Arc<Value>> = None;
    for delivery in deliveries {
        // Merging the backpack just merged again changes nothing: items that left theirs unchanged
        // share one, so a big fan-in merges it once.
        let repeated = last
            .as_ref()
            .is_some_and(|l| Arc::ptr_eq(l, &delivery.backpack));
        if !repeated {
            if let Value::Object(map) = &*delivery.backpack {
                for (k, v) in map {
                    merged.insert(k.clone(), v.clone());
                }
            }
            last = Some(delivery.backpack);
        }
        values.push(delivery.value);
        parents.push(delivery.from);
    }
    (Value::Array(values), Value::Object(merged), parents)
}

fn list_items(items: &[usize]) -> String {
    const SHOWN: usize = 10;
    let mut text = items
        .iter()
        .take(SHOWN)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        let _ = write!(text, " and {} more", items.len() - SHOWN);
    }
    text
}

/// An item as messages name it: its key quoted (its index when it has no key), then its label.
fn item_text(index: usize, names: &ItemNames) -> String {
    let item = index as u32;
    let mut text = if names.has_keys() {
        format!("{:?}", names.key(item))
    } else {
        index.to_string()
    };
    if let Some(label) = names.label(item) {
        let _ = write!(text, " ({label})");
    }
    text
}

/// Items as messages list them: the first ten (see [`item_text`]), then how many more.
fn list_named(items: &[usize], names: &ItemNames) -> String {
    const SHOWN: usize = 10;
    let mut text = items
        .iter()
        .take(SHOWN)
        .map(|&i| item_text(i, names))
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        let _ = write!(text, " and {} more", items.len() - SHOWN);
    }
    text
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Block, BlockId, Position, Project, Transition, TransitionKind};

    fn project(blocks: &[&str], links: &[(&str, &str, TransitionKind)]) -> Project {
        let mut p = Project::default();
        for name in blocks {
            let mut b = Block::new_code(*name, "", Position::default());
            b.id = BlockId((*name).into());
            p.blocks.push(b);
        }
        for (from, to, kind) in links {
            p.transitions.push(Transition::new(
                BlockId((*from).into()),
                BlockId((*to).into()),
                *kind,
            ));
        }
        p
    }

    fn scheduler(p: &Project, limit: usize) -> RunScheduler {
        let mut s = RunScheduler::new(RunId("r".into()), Arc::new(Plan::new(p)), 1, limit, 0);
        s.start(&[0], &Value::Null, &json!({}));
        s
    }

    fn returned(task: &Task, output: Value) -> TaskResult {
        TaskResult {
            worker: None,
            key: task.key,
            attempt: 1,
            started_at_ms: Some(0.0),
            ended_at_ms: Some(1.0),
            stdout: String::new(),
            stderr: String::new(),
            outcome: Outcome::Returned {
                output,
                backpack: Some(json!({})),
                ifs: Vec::new(),
                items: Vec::new(),
            },
        }
    }

    /// `returned`, naming the items of the block's one fan-out by these keys and labels.
    fn named(task: &Task, output: Value, keys: &[&str], labels: &[&str]) -> TaskResult {
        let text = |list: &[&str]| {
            (!list.is_empty()).then(|| list.iter().map(ToString::to_string).collect::<Vec<_>>())
        };
        let mut result = returned(task, output);
        if let Outcome::Returned { items, .. } = &mut result.outcome {
            *items = vec![ItemNames::new(text(keys), text(labels))];
        }
        result
    }

    fn raised_as(task: &Task, kind: &str, message: &str) -> TaskResult {
        let mut result = raised(task);
        if let Outcome::Raised { error, .. } = &mut result.outcome {
            kind.clone_into(&mut error.kind);
            message.clone_into(&mut error.message);
        }
        result
    }

    /// Gen fans out to Work (its items named), which fans in to Collect.
    fn fan_project_named() -> Project {
        use TransitionKind::{FanIn, FanOut};
        let mut p = project(
            &["Gen", "Work", "Collect"],
            &[("Gen", "Work", FanOut), ("Work", "Collect", FanIn)],
        );
        p.transitions[0].item_key = "item['id']".into();
        p.transitions[0].item_label = "item['city']".into();
        p
    }

    fn view(records: &[InvocationRecord]) -> Vec<(String, InvocationStatus, u32, String, String)> {
        records
            .iter()
            .map(|r| {
                (
                    r.block_name.to_string(),
                    r.status,
                    r.attempt,
                    r.item_key_path().join("/"),
                    r.item_label().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    fn raised(task: &Task) -> TaskResult {
        TaskResult {
            worker: None,
            outcome: Outcome::Raised {
                error: ErrorInfo {
                    kind: "ValueError".into(),
                    message: "bad row".into(),
                    traceback: String::new(),
                    line: Some(2),
                },
                backpack: None,
            },
            ..returned(task, Value::Null)
        }
    }

    #[test]
    fn limit_holds_back_the_rest_in_order() {
        use TransitionKind::FanOut;
        let p = project(&["Gen", "Work"], &[("Gen", "Work", FanOut)]);
        let mut s = scheduler(&p, 3);
        let gen_task = s.take_ready().remove(0);
        s.complete(returned(&gen_task, json!([10, 11, 12, 13, 14])));
        let first = s.take_ready();
        assert_eq!(first.len(), 3, "the limit");
        assert!(s.take_ready().is_empty());
        assert_eq!(
            first
                .iter()
                .map(|t| t.input_json.as_str())
                .collect::<Vec<_>>(),
            ["10", "11", "12"],
            "first in, first out"
        );
        s.complete(returned(&first[1], json!(1)));
        let next = s.take_ready();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].input_json, "13");
        assert!(!s.is_idle());
    }

    #[test]
    fn a_batch_stamps_what_it_queues_with_the_time_it_came_in() {
        use TransitionKind::FanOut;
        let p = project(&["Gen", "Work"], &[("Gen", "Work", FanOut)]);
        let mut s = scheduler(&p, 10);
        let gen_task = s.take_ready().remove(0);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let before = now_ms();
        s.complete_all([returned(&gen_task, json!([1, 2, 3]))]);
        let after = now_ms();
        for task in s.take_ready() {
            s.complete_all([returned(&task, json!(0))]);
        }
        let queued: Vec<f64> = s
            .take_records()
            .iter()
            .filter(|r| &*r.block_name == "Work")
            .map(|r| r.queued_at_ms)
            .collect();
        assert_eq!(queued.len(), 3);
        // Read once for the batch (the clock is not read per result), yet not a stale earlier reading.
        assert!(
            queued.iter().all(|t| t.to_bits() == queued[0].to_bits()),
            "{queued:?}"
        );
        assert!((before..=after).contains(&queued[0]), "{queued:?}");
    }

    #[test]
    fn missing_items_are_named_with_their_reason_and_the_run_fails() {
        use TransitionKind::{FanIn, FanOut};
        let p = project(
            &["Gen", "Work", "Collect"],
            &[("Gen", "Work", FanOut), ("Work", "Collect", FanIn)],
        );
        let mut s = scheduler(&p, 10);
        let gen_task = s.take_ready().remove(0);
        s.complete(returned(&gen_task, json!([0, 1, 2])));
        let tasks = s.take_ready();
        s.complete(returned(&tasks[2], json!(2)));
        s.complete(raised(&tasks[1]));
        s.complete(returned(&tasks[0], json!(0)));
        assert!(s.take_ready().is_empty(), "the fan-in never fires");
        assert!(s.is_idle());
        let summary = s.finish();
        assert_eq!(summary.status, RunStatus::Failed);
        assert_eq!(
            summary.failures.last().map(|f| f.error.as_str()),
            Some(
                "fan-in \"Collect\" got 2 of 3 results; missing item 1 (item 1: ValueError: bad row in \"Work\")"
            )
        );
    }

    #[test]
    fn per_block_cap_does_not_block_other_blocks() {
        use TransitionKind::FanOut;
        let mut p = project(
            &["Gen", "Capped", "Free"],
            &[("Gen", "Capped", FanOut), ("Gen", "Free", FanOut)],
        );
        p.blocks[1].code_mut().unwrap().concurrency_cap = Some(1);
        let mut s = scheduler(&p, 100);
        let gen_task = s.take_ready().remove(0);
        s.complete(returned(&gen_task, json!([1, 2, 3])));
        let tasks = s.take_ready();
        let capped = tasks.iter().filter(|t| t.block == 1).count();
        let free = tasks.iter().filter(|t| t.block == 2).count();
        assert_eq!((capped, free), (1, 3));
    }

    #[test]
    fn cancel_ends_everything_as_cancelled() {
        use TransitionKind::FanOut;
        let p = project(&["Gen", "Work"], &[("Gen", "Work", FanOut)]);
        let mut s = scheduler(&p, 2);
        let gen_task = s.take_ready().remove(0);
        s.complete(returned(&gen_task, json!([1, 2, 3, 4])));
        let running = s.take_ready();
        let keys = s.cancel();
        assert_eq!(keys.len(), running.len());
        assert!(s.is_idle());
        // A late answer from a stopped invocation changes nothing.
        s.complete(returned(&running[0], json!(1)));
        let records = s.take_records();
        let cancelled = records
            .iter()
            .filter(|r| r.status == InvocationStatus::Cancelled)
            .count();
        assert_eq!(cancelled, 4);
        assert_eq!(s.finish().status, RunStatus::Cancelled);
    }

    #[test]
    fn nested_fan_out_items_keep_their_ids_paths_parents_and_order() {
        use TransitionKind::{FanOut, Then};
        // Gen goes on to Tail and fans out to Row; each row fans out to Cell.
        let p = project(
            &["Gen", "Row", "Cell", "Tail"],
            &[
                ("Gen", "Row", FanOut),
                ("Row", "Cell", FanOut),
                ("Gen", "Tail", Then),
            ],
        );
        let mut s = scheduler(&p, 2);
        let gen_task = s.take_ready().remove(0);
        s.complete(returned(
            &gen_task,
            json!([[1, 2, 3], [4, 5, 6], [7, 8, 9]]),
        ));
        assert_eq!(s.counts[1].queued, 3);
        let view = |tasks: &[Task]| -> Vec<(u32, u64, String)> {
            tasks
                .iter()
                .map(|t| (t.block, t.key, t.input_json.to_string()))
                .collect()
        };
        // `then` fires before the fan-out: Tail is id 2, the rows 3, 4 and 5.
        let first = s.take_ready();
        let gen_output = "[[1,2,3],[4,5,6],[7,8,9]]";
        assert_eq!(
            view(&first),
            [(3, 2, gen_output.into()), (1, 3, "[1,2,3]".into())]
        );
        // Row 3's cells (ids 6, 7) wait behind rows 4 and 5: first in, first out across blocks.
        s.complete(returned(&first[1], json!([10, 20])));
        let row4 = s.take_ready();
        assert_eq!(view(&row4), [(1, 4, "[4,5,6]".into())]);
        s.complete(returned(&first[0], json!("tail")));
        let row5 = s.take_ready();
        assert_eq!(view(&row5), [(1, 5, "[7,8,9]".into())]);
        s.complete(returned(&row4[0], json!([40])));
        let cell = s.take_ready();
        assert_eq!(view(&cell), [(2, 6, "10".into())]);
        // Stopping now: every invocation not finished ends as cancelled, with its own id, path and parent.
        s.cancel();
        let cancelled: Vec<(u64, Vec<u32>, Vec<u64>)> = s
            .take_records()
            .into_iter()
            .filter(|r| r.status == InvocationStatus::Cancelled)
            .map(|r| (r.id, r.item_path.to_vec(), r.parents.to_vec()))
            .collect();
        assert_eq!(
            cancelled,
            [
                (5, vec![2], vec![1]),
                (6, vec![0, 0], vec![3]),
                (7, vec![0, 1], vec![3]),
                (8, vec![1, 0], vec![4]),
            ]
        );
        assert!(s.is_idle());
    }

    #[test]
    fn an_empty_fan_out_fires_its_fan_in_at_once_coming_from_the_fan_out() {
        use TransitionKind::{FanIn, FanOut};
        let p = project(
            &["Gen", "Work", "Collect"],
            &[("Gen", "Work", FanOut), ("Work", "Collect", FanIn)],
        );
        let mut s = scheduler(&p, 10);
        let gen_task = s.take_ready().remove(0);
        s.complete(returned(&gen_task, json!([])));
        let collect = s.take_ready();
        assert_eq!(
            collect
                .iter()
                .map(|t| (t.block, t.input_json.as_str()))
                .collect::<Vec<_>>(),
            [(2, "[]")]
        );
        s.complete(returned(&collect[0], json!("done")));
        let records = s.take_records();
        assert_eq!(records[1].parents[..], [gen_task.key]);
        assert_eq!(s.finish().status, RunStatus::Succeeded);
    }

    #[test]
    fn counts_follow_invocations_from_queued_to_their_end() {
        use TransitionKind::FanOut;
        let p = project(&["Gen", "Work"], &[("Gen", "Work", FanOut)]);
        let mut s = scheduler(&p, 2);
        let counts = |s: &RunScheduler| -> Vec<(u64, u64, u64, u64)> {
            s.counts()
                .iter()
                .map(|(_, c)| (c.queued, c.running, c.succeeded, c.failed))
                .collect()
        };
        assert_eq!(counts(&s), [(1, 0, 0, 0), (0, 0, 0, 0)]);
        let gen_task = s.take_ready().remove(0);
        assert_eq!(counts(&s), [(0, 1, 0, 0), (0, 0, 0, 0)]);
        s.complete(returned(&gen_task, json!([1, 2, 3])));
        assert_eq!(counts(&s), [(0, 0, 1, 0), (3, 0, 0, 0)]);
        let work = s.take_ready();
        assert_eq!(counts(&s), [(0, 0, 1, 0), (1, 2, 0, 0)]);
        s.complete(raised(&work[0]));
        s.complete(returned(&work[1], json!(2)));
        assert_eq!(counts(&s), [(0, 0, 1, 0), (1, 0, 1, 1)]);
        assert_eq!(s.invocations(), 4);
    }

    #[test]
    fn a_result_that_comes_twice_or_for_no_invocation_changes_nothing() {
        use TransitionKind::Then;
        let p = project(&["A", "B"], &[("A", "B", Then)]);
        let mut s = scheduler(&p, 10);
        let a = s.take_ready().remove(0);
        s.complete(returned(&a, json!(1)));
        s.complete(returned(&a, json!(2)));
        let stranger = Task {
            key: 99,
            ..a.clone()
        };
        s.complete(returned(&stranger, json!(3)));
        let b = s.take_ready();
        assert_eq!(b.len(), 1, "B runs once");
        assert_eq!(b[0].input_json, "1");
        assert_eq!(s.take_records().len(), 1);
    }

    #[test]
    fn a_single_run_fires_nothing_and_its_block_is_the_result() {
        use TransitionKind::{FanOut, Then};
        let p = project(&["A", "B", "C"], &[("A", "B", Then), ("A", "C", FanOut)]);
        let mut s = RunScheduler::new(RunId("r".into()), Arc::new(Plan::new(&p)), 1, 10, 0);
        s.set_single(true);
        s.start(&[0], &json!([1, 2]), &json!({}));
        let a = s.take_ready().remove(0);
        s.complete(returned(&a, json!([1, 2])));
        assert!(s.take_ready().is_empty());
        assert!(s.is_idle());
        let records = s.take_records();
        assert!(records[0].fired.is_empty());
        let summary = s.finish();
        assert_eq!(summary.status, RunStatus::Succeeded);
        assert_eq!(summary.results.len(), 1);
        assert_eq!(summary.results[0].output, json!([1, 2]));
    }

    #[test]
    fn a_block_braid_cannot_run_fails_without_reaching_the_invoker() {
        use TransitionKind::Then;
        let mut p = project(&["A", "Node"], &[("A", "Node", Then)]);
        if let Some(code) = p.blocks[1].code_mut() {
            code.language = crate::model::Language::Other("nodejs".into());
        }
        let mut s = scheduler(&p, 10);
        let a = s.take_ready().remove(0);
        s.complete(returned(&a, json!(1)));
        assert!(s.take_ready().is_empty(), "no task for it");
        assert!(s.is_idle());
        let records = s.take_records();
        let node = &records[1];
        assert_eq!(node.status, InvocationStatus::Exception);
        let error = node.error.as_ref().expect("why");
        assert_eq!(error.kind, "NotRunnable");
        assert!(error.message.contains("block \"Node\""), "{error:?}");
        let summary = s.finish();
        assert_eq!(summary.status, RunStatus::Failed);
        assert_eq!(summary.failures[0].block, "Node");
    }

    /// A loop through a fan-out multiplies its invocations each time round: past its bound of queued
    /// invocations the run stops, failed, naming the block, with every queued and running
    /// invocation recorded as cancelled and the running ones handed to the invoker to stop.
    #[test]
    fn a_loop_through_a_fan_out_stops_at_the_bound_of_queued_invocations_naming_its_block() {
        use TransitionKind::{FanOut, Then};
        let p = project(
            &["Split", "Back"],
            &[("Split", "Back", FanOut), ("Back", "Split", Then)],
        );
        let mut s = scheduler(&p, 4);
        s.set_max_queued(100);
        let (mut most_queued, mut running) = (0, VecDeque::new());
        let (mut stopped, mut still_running) = (Vec::new(), Vec::new());
        for _ in 0..10_000 {
            running.extend(s.take_ready());
            // One at a time: the others are still running when the bound is reached.
            let Some(task) = running.pop_front() else {
                break;
            };
            // Every Split returns three items; every Back goes round again.
            let output = if task.block == 0 {
                json!([1, 2, 3])
            } else {
                json!(0)
            };
            s.complete(returned(&task, output));
            most_queued = most_queued.max(s.queued_total);
            let stops = s.take_stops();
            if !stops.is_empty() {
                stopped = stops;
                still_running = running.iter().map(|t: &Task| t.key).collect();
            }
        }
        assert!(s.is_idle(), "the run stopped");
        assert!(most_queued <= 100, "{most_queued}");
        assert_eq!(stopped, still_running, "the invoker stops what was running");
        assert_eq!(stopped.len(), 3);
        let records = s.take_records();
        let cancelled = records
            .iter()
            .filter(|r| r.status == InvocationStatus::Cancelled)
            .count();
        assert!(cancelled >= 97 + 3, "{cancelled}");
        let summary = s.finish();
        assert_eq!(summary.status, RunStatus::Failed);
        assert_eq!(summary.invocations, records.len() as u64);
        let failure = summary.failures.last().expect("a failure");
        assert_eq!(
            (failure.block.as_str(), failure.status.as_str()),
            ("Back", "too_many_queued")
        );
        assert!(
            failure.error.starts_with(
                "3 more invocations of \"Back\" would pass the 100 a run may have queued at once ("
            ),
            "{}",
            failure.error
        );
        assert!(
            failure.error.ends_with(" are queued; a loop through a fan-out multiplies its invocations each time round): the run stopped"),
            "{}",
            failure.error
        );
    }

    /// A fan-in whose input would pass the bound on an invocation's input fails naming its block
    /// and the sizes, without reaching the invoker; smaller inputs still run.
    #[test]
    fn an_input_past_the_bound_fails_its_invocation_naming_block_and_size() {
        use TransitionKind::{FanIn, FanOut};
        let p = project(
            &["Gen", "Work", "Collect"],
            &[("Gen", "Work", FanOut), ("Work", "Collect", FanIn)],
        );
        let mut s = scheduler(&p, 100);
        s.set_max_input_bytes(40);
        let gen_task = s.take_ready().remove(0);
        s.complete(returned(&gen_task, json!(["a", "b", "c"])));
        let work = s.take_ready();
        assert_eq!(work.len(), 3, "small inputs run");
        for task in &work {
            s.complete(returned(task, json!("x".repeat(12))));
        }
        assert!(
            s.take_ready().is_empty(),
            "the fan-in never reaches the invoker"
        );
        assert!(s.is_idle());
        let records = s.take_records();
        let collect = records.last().expect("its record");
        assert_eq!(&*collect.block_name, "Collect");
        assert_eq!(collect.status, InvocationStatus::Exception);
        let error = collect.error.as_ref().expect("why");
        assert_eq!(
            error.summary(),
            "InputTooLarge: its input is 46 bytes of JSON, more than the 40 an invocation may take (a fan-in of many large values: pass on smaller values, or the paths of files that hold them)"
        );
        let summary = s.finish();
        assert_eq!(summary.status, RunStatus::Failed);
        assert_eq!(summary.failures[0].block, "Collect");
    }

    #[test]
    fn combine_merges_a_shared_backpack_once_and_keeps_later_wins() {
        let a = Arc::new(json!({"k": "a", "only_a": 1}));
        let b = Arc::new(json!({"k": "b"}));
        let delivery = |backpack: &Arc<Value>, from| Delivery {
            value: json!(from),
            backpack: Arc::clone(backpack),
            from,
            carried: false,
        };
        // a, a (skipped: the same value again), b, then a again: a's key wins, as it came last.
        let deliveries = [
            delivery(&a, 1),
            delivery(&a, 2),
            delivery(&b, 3),
            delivery(&a, 4),
        ];
        let (values, backpack, parents) = combine(&json!({"base": true}), deliveries.into_iter());
        assert_eq!(values, json!([1, 2, 3, 4]));
        assert_eq!(backpack, json!({"base": true, "k": "a", "only_a": 1}));
        assert_eq!(parents, vec![1, 2, 3, 4]);
    }
    #[test]
    fn items_carry_their_keys_and_labels_while_queued_running_and_after_failing() {
        let p = fan_project_named();
        let mut s = scheduler(&p, 1);
        let gen_task = s.take_ready().remove(0);
        s.complete(named(
            &gen_task,
            json!([{"id": "p"}, {"id": "o"}, {"id": "r"}]),
            &["p", "o", "r"],
            &["Paris", "Oslo", "Rome"],
        ));
        let first = s.take_ready();
        assert_eq!(first.len(), 1, "the limit holds the other two back");
        s.complete(raised(&first[0]));
        // One has failed, one runs, one is queued: stopping now records the last two as cancelled.
        let running = s.take_ready();
        assert_eq!(running.len(), 1);
        s.cancel();
        let records = s.take_records();
        assert_eq!(
            view(&records),
            [
                (
                    "Gen".into(),
                    InvocationStatus::Succeeded,
                    1,
                    String::new(),
                    String::new()
                ),
                (
                    "Work".into(),
                    InvocationStatus::Exception,
                    1,
                    "p".into(),
                    "Paris".into()
                ),
                (
                    "Work".into(),
                    InvocationStatus::Cancelled,
                    1,
                    "o".into(),
                    "Oslo".into()
                ),
                (
                    "Work".into(),
                    InvocationStatus::Cancelled,
                    1,
                    "r".into(),
                    "Rome".into()
                ),
            ]
        );
        // The fan-out's source keeps the names it gave, for a redrive and a replay's diff.
        let fanned = &records[0].fanned_out;
        assert_eq!(fanned.len(), 1);
        assert_eq!(fanned[0].names.key(2), "r");
    }

    #[test]
    fn what_follows_an_item_inherits_its_names_and_the_fan_in_has_none() {
        use TransitionKind::{FanIn, FanOut, Then};
        let mut p = project(
            &["Gen", "Work", "Next", "Collect"],
            &[
                ("Gen", "Work", FanOut),
                ("Work", "Next", Then),
                ("Next", "Collect", FanIn),
            ],
        );
        p.transitions[0].item_label = "item".into();
        let mut s = scheduler(&p, 10);
        let gen_task = s.take_ready().remove(0);
        s.complete(named(&gen_task, json!(["x", "y"]), &[], &["X", "Y"]));
        for task in s.take_ready() {
            s.complete(returned(&task, json!(1)));
        }
        for task in s.take_ready() {
            s.complete(returned(&task, json!(2)));
        }
        for task in s.take_ready() {
            s.complete(returned(&task, json!(3)));
        }
        let seen: Vec<(String, String, String)> = view(&s.take_records())
            .into_iter()
            .map(|(block, _, _, key, label)| (block, key, label))
            .collect();
        assert_eq!(
            seen,
            [
                ("Gen".into(), String::new(), String::new()),
                ("Work".into(), "0".into(), "X".into()),
                ("Work".into(), "1".into(), "Y".into()),
                ("Next".into(), "0".into(), "X".into()),
                ("Next".into(), "1".into(), "Y".into()),
                ("Collect".into(), String::new(), String::new()),
            ]
        );
    }

    #[test]
    fn keys_given_to_two_items_fail_the_fan_out_naming_them() {
        let p = fan_project_named();
        let mut s = scheduler(&p, 10);
        let gen_task = s.take_ready().remove(0);
        s.complete(named(
            &gen_task,
            json!([1, 2, 3, 4, 5]),
            &["a", "b", "a", "c", "b"],
            &[],
        ));
        assert!(s.take_ready().is_empty(), "no item runs");
        let records = s.take_records();
        let error = records[0].error.as_ref().expect("the fan-out failed");
        assert_eq!(error.kind, "DuplicateKeyError");
        assert_eq!(
            error.message,
            "the fan-out to \"Work\" gives more than one item the same key: \"a\" (items 0, 2), \"b\" (items 1, 4)"
        );
        assert_eq!(s.finish().status, RunStatus::Failed);
    }

    /// Gen fans out these items to Work, which retries `count` times on errors of the types `on`:
    /// the scheduler (at `limit`) with Gen done and the items queued.
    fn retrying(count: u32, on: &[&str], items: Value, limit: usize) -> RunScheduler {
        use TransitionKind::FanOut;
        let mut p = project(&["Gen", "Work"], &[("Gen", "Work", FanOut)]);
        p.blocks[1].code_mut().unwrap().retries = Some(crate::model::Retries {
            count,
            delay_s: 1.0,
            factor: 3.0,
            on: on.iter().map(ToString::to_string).collect(),
        });
        let mut s = scheduler(&p, limit);
        let gen_task = s.take_ready().remove(0);
        s.complete(returned(&gen_task, items));
        s
    }

    #[test]
    fn a_failed_attempt_waits_its_backoff_and_runs_again_as_the_next_attempt() {
        let mut s = retrying(2, &[], json!([7]), 10);
        let first = s.take_ready().remove(0);
        s.complete(raised(&first));
        let failed_at = s.now_ms;
        assert_eq!(s.next_wake(), Some(failed_at + 1000.0), "delay_s");
        assert_eq!(s.counts[1].retrying, 1);
        assert!(!s.is_idle(), "a retry waits");
        s.wake(failed_at + 999.0);
        assert!(s.take_ready().is_empty(), "not due yet");
        s.wake(failed_at + 1000.0);
        let second = s.take_ready().remove(0);
        assert_eq!((second.attempt, second.input_json.as_str()), (2, "7"));
        assert_ne!(
            second.key, first.key,
            "each attempt is an invocation of its own"
        );
        s.complete(raised(&second));
        assert_eq!(s.next_wake(), Some(s.now_ms + 3000.0), "delay_s × factor");
        s.wake(f64::INFINITY);
        let third = s.take_ready().remove(0);
        assert_eq!(third.attempt, 3);
        s.complete(returned(&third, json!(70)));
        assert!(s.is_idle());
        let records = s.take_records();
        let work: Vec<(InvocationStatus, u32, Vec<u64>)> = records
            .iter()
            .filter(|r| &*r.block_name == "Work")
            .map(|r| (r.status, r.attempt, r.parents.to_vec()))
            .collect();
        assert_eq!(
            work,
            [
                (InvocationStatus::Retried, 1, vec![1]),
                (InvocationStatus::Retried, 2, vec![1]),
                (InvocationStatus::Succeeded, 3, vec![1]),
            ]
        );
        assert_eq!(
            records[1].error.as_ref().map(ErrorInfo::summary).as_deref(),
            Some("ValueError: bad row")
        );
        let counts = s.counts[1];
        assert_eq!(
            (counts.succeeded, counts.retrying, counts.total()),
            (1, 0, 1)
        );
        assert_eq!(s.finish().status, RunStatus::Succeeded);
    }

    #[test]
    fn an_input_braid_refuses_is_not_retried_whatever_the_retries_say() {
        let mut s = retrying(3, &[], json!(["short", "x".repeat(50)]), 10);
        s.set_max_input_bytes(40);
        let tasks = s.take_ready();
        assert_eq!(tasks.len(), 1, "only the short input reaches the invoker");
        s.complete(returned(&tasks[0], json!(1)));
        assert_eq!(s.next_wake(), None, "no retry waits");
        assert!(s.is_idle());
        let work: Vec<(InvocationStatus, u32, String)> = s
            .take_records()
            .iter()
            .filter(|r| &*r.block_name == "Work")
            .map(|r| {
                let kind = r.error.as_ref().map(|e| e.kind.clone()).unwrap_or_default();
                (r.status, r.attempt, kind)
            })
            .collect();
        assert_eq!(
            work,
            [
                (InvocationStatus::Exception, 1, "InputTooLarge".to_owned()),
                (InvocationStatus::Succeeded, 1, String::new()),
            ]
        );
    }

    #[test]
    fn only_the_listed_error_types_retry_and_the_last_attempt_fails_the_item() {
        let mut s = retrying(1, &["ConnectionError"], json!([1, 2]), 10);
        let tasks = s.take_ready();
        s.complete(raised_as(&tasks[0], "KeyError", "'city'"));
        s.complete(raised_as(&tasks[1], "ConnectionError", "reset"));
        s.wake(f64::INFINITY);
        let again = s.take_ready();
        assert_eq!(again.len(), 1, "only the ConnectionError retries");
        s.complete(raised_as(&again[0], "ConnectionError", "reset"));
        assert!(s.is_idle(), "one retry only");
        let statuses: Vec<(InvocationStatus, u32)> = s
            .take_records()
            .iter()
            .skip(1)
            .map(|r| (r.status, r.attempt))
            .collect();
        assert_eq!(
            statuses,
            [
                (InvocationStatus::Exception, 1),
                (InvocationStatus::Retried, 1),
                (InvocationStatus::Exception, 2),
            ]
        );
        assert_eq!(s.counts[1].failed, 2);
        assert_eq!(s.finish().failures.len(), 2);
    }

    #[test]
    fn stopping_cancels_a_retry_that_waits_and_the_counts_still_add_up() {
        let mut s = retrying(3, &[], json!([1, 2, 3, 4]), 2);
        let tasks = s.take_ready();
        s.complete(raised(&tasks[0]));
        s.complete(returned(&tasks[1], json!(2)));
        let counts = s.counts[1];
        assert_eq!(
            (
                counts.queued,
                counts.running,
                counts.retrying,
                counts.succeeded
            ),
            (2, 0, 1, 1)
        );
        assert_eq!(counts.total(), 4);
        s.take_ready();
        s.cancel();
        assert!(s.is_idle());
        let counts = s.counts[1];
        assert_eq!(
            (
                counts.open(),
                counts.succeeded,
                counts.cancelled,
                counts.total()
            ),
            (0, 1, 3, 4)
        );
        let records = s.take_records();
        let ids: std::collections::BTreeSet<u64> = records.iter().map(|r| r.id).collect();
        assert_eq!(
            ids.len(),
            records.len(),
            "every record has an id of its own"
        );
    }

    fn tolerating(mut p: Project, budget: crate::model::Tolerance) -> Project {
        let fan_in = p
            .transitions
            .iter_mut()
            .find(|t| t.kind == TransitionKind::FanIn)
            .unwrap();
        fan_in.tolerated_failures = Some(budget);
        p
    }

    /// Four named items fanned out to a fan-in with this budget: the scheduler, and Work's tasks.
    fn four_items_tolerating(budget: crate::model::Tolerance) -> (RunScheduler, Vec<Task>) {
        let p = tolerating(fan_project_named(), budget);
        let mut s = scheduler(&p, 10);
        let gen_task = s.take_ready().remove(0);
        s.complete(named(
            &gen_task,
            json!([10, 11, 12, 13]),
            &["a", "b", "c", "d"],
            &["A", "B", "C", "D"],
        ));
        let work = s.take_ready();
        (s, work)
    }

    #[test]
    fn a_fan_in_within_its_budget_fires_with_what_arrived_in_item_order_and_the_failed_items() {
        let (mut s, work) = four_items_tolerating(crate::model::Tolerance::Count(1));
        s.complete(returned(&work[3], json!(13)));
        s.complete(raised(&work[1]));
        s.complete(returned(&work[0], json!(10)));
        s.complete(returned(&work[2], json!(12)));
        let collect = s.take_ready();
        assert_eq!(collect.len(), 1);
        assert_eq!(collect[0].input_json, "[10,12,13]");
        let backpack: Value = serde_json::from_str(&collect[0].backpack_json).unwrap();
        assert_eq!(
            backpack[FAILED_ITEMS_KEY],
            json!([{"index": 1, "key": "b", "label": "B", "error": "ValueError: bad row in \"Work\""}])
        );
        s.complete(returned(&collect[0], json!("done")));
        let summary = s.finish();
        assert_eq!(
            summary.status,
            RunStatus::Succeeded,
            "{:?}",
            summary.failures
        );
        assert_eq!(summary.tolerated.len(), 1);
        assert_eq!(summary.tolerated[0].item_path, [1]);
        assert!(summary.failures.is_empty());
    }

    #[test]
    fn past_its_budget_a_fan_in_fails_naming_the_missing_items_and_the_budget() {
        let (mut s, work) = four_items_tolerating(crate::model::Tolerance::Percent(25.0));
        s.complete(raised(&work[1]));
        s.complete(raised(&work[2]));
        s.complete(returned(&work[0], json!(10)));
        s.complete(returned(&work[3], json!(13)));
        assert!(s.take_ready().is_empty(), "the fan-in does not fire");
        let summary = s.finish();
        assert_eq!(summary.status, RunStatus::Failed);
        assert!(summary.tolerated.is_empty());
        let messages: Vec<&str> = summary.failures.iter().map(|f| f.error.as_str()).collect();
        assert_eq!(
            messages,
            [
                "ValueError: bad row",
                "ValueError: bad row",
                "fan-in \"Collect\" got 2 of 4 results, 2 missing where it tolerates 1; missing items \"b\" (B), \"c\" (C) (item \"b\" (B): ValueError: bad row in \"Work\"; item \"c\" (C): ValueError: bad row in \"Work\")",
            ]
        );
    }

    #[test]
    fn the_fan_in_ledger_counts_expected_arrived_and_missing_with_their_labels() {
        let p = fan_project_named();
        let mut s = scheduler(&p, 10);
        let gen_task = s.take_ready().remove(0);
        s.complete(named(
            &gen_task,
            json!([1, 2, 3]),
            &["a", "b", "c"],
            &["A", "B", "C"],
        ));
        let work = s.take_ready();
        s.complete(returned(&work[0], json!(1)));
        s.complete(raised(&work[2]));
        let ledger = &s.fan_in_counts()[0].1;
        assert_eq!(
            (
                ledger.expected,
                ledger.arrived,
                ledger.missing,
                ledger.pending()
            ),
            (3, 1, 1, 1)
        );
        assert_eq!(
            ledger.missing_items,
            [MissingItem {
                item_path: vec![2],
                key: "c".into(),
                label: Some("C".into()),
                reason: "ValueError: bad row in \"Work\"".into(),
            }]
        );
    }

    fn succeeded_end(input: Value, output: Value, fired: &[&TransitionId]) -> CarriedEnd {
        CarriedEnd::Succeeded {
            input,
            backpack_in: Arc::new(json!({})),
            output,
            backpack: Arc::new(json!({})),
            fired: fired.iter().map(|t| (*t).clone()).collect(),
            fanned_out: Vec::new(),
        }
    }

    fn carried(
        id: u64,
        block: &str,
        keys: &[&str],
        end: CarriedEnd,
    ) -> super::super::redrive::CarriedRecord {
        super::super::redrive::CarriedRecord {
            id,
            block: BlockId(block.into()),
            key_path: keys.iter().map(ToString::to_string).collect(),
            end,
        }
    }

    /// A redrive of a run that started at Gen with `null`, carrying these ends over.
    fn redrive_from_gen(carried: Vec<super::super::redrive::CarriedRecord>) -> Redrive {
        Redrive {
            of: RunId("earlier".into()),
            entries: vec![super::super::redrive::RedriveEntry {
                block: BlockId("Gen".into()),
                input: Value::Null,
                backpack: json!({}),
            }],
            carried,
        }
    }

    #[test]
    fn a_redrive_runs_only_the_failed_items_and_completes_the_fan_in_in_item_order() {
        use TransitionKind::{FanIn, FanOut};
        let p = project(
            &["Gen", "Work", "Collect"],
            &[("Gen", "Work", FanOut), ("Work", "Collect", FanIn)],
        );
        let (fan_out, fan_in) = (&p.transitions[0].id, &p.transitions[1].id);
        let redrive = redrive_from_gen(vec![
            carried(
                1,
                "Gen",
                &[],
                succeeded_end(Value::Null, json!([10, 11, 12]), &[fan_out]),
            ),
            carried(
                2,
                "Work",
                &["0"],
                succeeded_end(json!(10), json!(100), &[fan_in]),
            ),
            carried(
                4,
                "Work",
                &["2"],
                succeeded_end(json!(12), json!(120), &[fan_in]),
            ),
        ]);
        let mut s = RunScheduler::new(RunId("r".into()), Arc::new(Plan::new(&p)), 1, 10, 0);
        s.start_redrive(redrive);
        let tasks = s.take_ready();
        assert_eq!(
            tasks
                .iter()
                .map(|t| (t.block, t.input_json.as_str()))
                .collect::<Vec<_>>(),
            [(1, "11")],
            "only the failed item runs"
        );
        s.complete(returned(&tasks[0], json!(111)));
        let collect = s.take_ready();
        assert_eq!(collect[0].input_json, "[100,111,120]", "in item order");
        s.complete(returned(&collect[0], json!("done")));
        let records = s.take_records();
        let carried_from: Vec<(String, Option<u64>)> = records
            .iter()
            .map(|r| (r.block_name.to_string(), r.carried_from))
            .collect();
        assert_eq!(
            carried_from,
            [
                ("Gen".into(), Some(1)),
                ("Work".into(), Some(2)),
                ("Work".into(), Some(4)),
                ("Work".into(), None),
                ("Collect".into(), None),
            ]
        );
        let summary = s.finish();
        assert_eq!(summary.status, RunStatus::Succeeded);
        assert_eq!(summary.redrive_of, Some(RunId("earlier".into())));
    }

    #[test]
    fn a_redrive_pairs_items_by_key_whatever_their_position() {
        let p = fan_project_named();
        let fan_in = &p.transitions[1].id;
        // The earlier run's source is not carried (it runs again and orders its items otherwise);
        // the items that succeeded are found by their keys, and keep their ends where they are given
        // what they were given then ("a" here; "b" is given something else now, so it runs).
        let redrive = redrive_from_gen(vec![
            carried(
                2,
                "Work",
                &["a"],
                succeeded_end(json!("a"), json!("A done"), &[fan_in]),
            ),
            carried(
                3,
                "Work",
                &["b"],
                succeeded_end(json!("b1"), json!("B done"), &[fan_in]),
            ),
        ]);
        let mut s = RunScheduler::new(RunId("r".into()), Arc::new(Plan::new(&p)), 1, 10, 0);
        s.start_redrive(redrive);
        let gen_task = s.take_ready().remove(0);
        s.complete(named(
            &gen_task,
            json!(["c", "b2", "a"]),
            &["c", "b", "a"],
            &[],
        ));
        let tasks = s.take_ready();
        assert_eq!(
            tasks
                .iter()
                .map(|t| t.input_json.as_str())
                .collect::<Vec<_>>(),
            ["\"c\"", "\"b2\""],
            "a was carried over, found by its key at another position"
        );
        s.complete(returned(&tasks[0], json!("C done")));
        s.complete(returned(&tasks[1], json!("B2 done")));
        let collect = s.take_ready();
        assert_eq!(collect[0].input_json, r#"["C done","B2 done","A done"]"#);
    }
}
