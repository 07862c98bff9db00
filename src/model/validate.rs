//! Validation: every problem at once, each naming its block or transition.
//!
//! Only what the graph and the settings show is checked here; Python syntax is the runtime's job (it
//! compiles every Code Block before a run starts).

use std::collections::{HashMap, HashSet};

use super::graph::FanAnalysis;
use super::project::{
    Block, BlockId, BlockKind, HTTP_METHODS, Language, MAX_BATCH_SIZE, MAX_TIMEOUT_S, Project,
    Tolerance, Transition, TransitionId, TransitionKind,
};
use super::schedule::Schedule;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    Project,
    Block(BlockId),
    Transition(TransitionId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The project can still run (for example a Node.js block on a path that is never taken).
    Warning,
    /// The project cannot run as it is.
    Error,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    pub subject: Subject,
    /// A full sentence naming the block or transition by name, e.g. `"else" from "Check" has no "if" beside it`.
    pub message: String,
}

/// `error: …` / `warning: …`, as the command line prints it.
impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.severity, self.message)
    }
}

/// Whether any problem stops the project from running.
pub fn has_errors(problems: &[Problem]) -> bool {
    problems.iter().any(|p| p.severity == Severity::Error)
}

/// The messages of the problems that stop `project` from running, in [`validate`]'s order.
pub fn error_messages(project: &Project) -> Vec<String> {
    validate(project)
        .into_iter()
        .filter(|p| p.severity == Severity::Error)
        .map(|p| p.message)
        .collect()
}

/// Every problem of `project`: project-wide ones first, then those of blocks in project order, then
/// those of transitions in project order; a subject's own problems keep the order of the rules below.
pub fn validate(project: &Project) -> Vec<Problem> {
    let index = Index::new(project);
    let mut found = Found::default();
    check_settings(project, &index, &mut found);
    for (at, block) in project.blocks.iter().enumerate() {
        check_block(&index, at, block, &mut found);
    }
    check_transitions(project, &index, &mut found);
    found.into_sorted()
}

/// The project looked up once, so that each rule is a lookup rather than a scan of the project: a
/// project of tens of thousands of blocks validates in a moment, not in minutes.
struct Index<'a> {
    /// Each block id, with the first block that has it and where that block is.
    blocks: HashMap<&'a BlockId, (usize, &'a Block)>,
    /// Each transition id, with where the first transition that has it is.
    transitions: HashMap<&'a TransitionId, usize>,
    /// Blocks a transition from an existing block leads to.
    reached: HashSet<&'a BlockId>,
    /// Blocks a transition leaves.
    leaving: HashSet<&'a BlockId>,
    /// The API Endpoints answering each path, with where they are.
    endpoints: HashMap<&'a str, Vec<(usize, &'a Block)>>,
    /// Blocks with an `if` transition going out.
    with_if: HashSet<&'a BlockId>,
    /// Blocks a fan-in transition leads to.
    fan_in_targets: HashSet<&'a BlockId>,
    /// How many merge transitions lead into each block.
    incoming_merges: HashMap<&'a BlockId, usize>,
    /// Each block's strongly connected component (by its place in `blocks`): two blocks share one
    /// when each leads to the other.
    components: Vec<usize>,
    /// The blocks that share each name given to more than one, in project order.
    same_name: HashMap<&'a str, Vec<&'a Block>>,
}

impl<'a> Index<'a> {
    fn new(project: &'a Project) -> Self {
        let mut blocks = HashMap::with_capacity(project.blocks.len());
        for (at, block) in project.blocks.iter().enumerate() {
            blocks.entry(&block.id).or_insert((at, block));
        }
        let mut same_name: HashMap<&str, Vec<&Block>> = HashMap::new();
        for block in &project.blocks {
            same_name
                .entry(block.name.as_str())
                .or_default()
                .push(block);
        }
        same_name.retain(|_, blocks| blocks.len() > 1);
        let mut endpoints: HashMap<&str, Vec<(usize, &Block)>> = HashMap::new();
        for (at, block) in project.blocks.iter().enumerate() {
            if let BlockKind::ApiEndpoint { api_path, .. } = &block.kind {
                endpoints
                    .entry(api_path.as_str())
                    .or_default()
                    .push((at, block));
            }
        }
        let mut leaving = HashSet::new();
        let mut transitions = HashMap::with_capacity(project.transitions.len());
        let (mut reached, mut with_if, mut fan_in_targets) =
            (HashSet::new(), HashSet::new(), HashSet::new());
        let mut incoming_merges: HashMap<&BlockId, usize> = HashMap::new();
        let mut graph = petgraph::Graph::<(), ()>::with_capacity(
            project.blocks.len(),
            project.transitions.len(),
        );
        let nodes: Vec<_> = project.blocks.iter().map(|_| graph.add_node(())).collect();
        for (at, t) in project.transitions.iter().enumerate() {
            transitions.entry(&t.id).or_insert(at);
            leaving.insert(&t.from);
            match t.kind {
                TransitionKind::If => {
                    with_if.insert(&t.from);
                }
                TransitionKind::FanIn => {
                    fan_in_targets.insert(&t.to);
                }
                TransitionKind::Merge => *incoming_merges.entry(&t.to).or_default() += 1,
                _ => {}
            }
            if let (Some(&(from, _)), Some(&(to, _))) = (blocks.get(&t.from), blocks.get(&t.to)) {
                reached.insert(&t.to);
                graph.add_edge(nodes[from], nodes[to], ());
            }
        }
        let mut components = vec![0; project.blocks.len()];
        for (component, members) in petgraph::algo::kosaraju_scc(&graph).into_iter().enumerate() {
            for node in members {
                components[node.index()] = component;
            }
        }
        Self {
            blocks,
            transitions,
            reached,
            leaving,
            endpoints,
            with_if,
            fan_in_targets,
            incoming_merges,
            components,
            same_name,
        }
    }

    fn block(&self, id: &BlockId) -> Option<&'a Block> {
        self.blocks.get(id).map(|&(_, block)| block)
    }

    /// A block's name in quotes, numbered as the editor numbers blocks that share one (`"Work (2)"`),
    /// or its id when it has no name.
    fn label(&self, block: &Block) -> String {
        if block.name.trim().is_empty() {
            return format!("with id \"{}\"", block.id);
        }
        let place = self
            .same_name
            .get(block.name.as_str())
            .and_then(|same| same.iter().position(|b| std::ptr::eq(*b, block)));
        match place {
            Some(place) => quoted(&format!("{} ({})", block.name, place + 1)),
            None => quoted(&block.name),
        }
    }

    /// Whether the transition's target leads back to where it starts (both ends exist).
    fn on_cycle(&self, t: &Transition) -> bool {
        match (self.blocks.get(&t.from), self.blocks.get(&t.to)) {
            (Some(&(from, _)), Some(&(to, _))) => self.components[from] == self.components[to],
            _ => false,
        }
    }
}

/// Problems with the place of their subject in the project, which is what they are sorted by.
#[derive(Default)]
struct Found(Vec<((u8, usize), Problem)>);

impl Found {
    fn project(&mut self, severity: Severity, message: String) {
        self.0.push((
            (0, 0),
            Problem {
                severity,
                subject: Subject::Project,
                message,
            },
        ));
    }

    fn block(&mut self, index: usize, block: &Block, severity: Severity, message: String) {
        self.0.push((
            (1, index),
            Problem {
                severity,
                subject: Subject::Block(block.id.clone()),
                message,
            },
        ));
    }

    fn transition(&mut self, index: usize, t: &Transition, severity: Severity, message: String) {
        self.0.push((
            (2, index),
            Problem {
                severity,
                subject: Subject::Transition(t.id.clone()),
                message,
            },
        ));
    }

    fn into_sorted(mut self) -> Vec<Problem> {
        // Stable: problems of one subject stay in the order the rules found them.
        self.0.sort_by_key(|(key, _)| *key);
        self.0.into_iter().map(|(_, p)| p).collect()
    }
}

/// The message of the problem an empty project has (the editor shows it as a hint rather than an error).
pub const NO_BLOCKS: &str = "The project has no blocks: add a Code Block to run it";

fn check_settings(project: &Project, index: &Index, found: &mut Found) {
    if project.blocks.is_empty() {
        found.project(Severity::Error, NO_BLOCKS.to_owned());
    } else if project
        .blocks
        .iter()
        // Transitions from blocks that don't exist are problems of their own.
        .all(|b| index.reached.contains(&b.id))
    {
        // It still runs from a chosen block, so only a warning.
        found.project(
            Severity::Warning,
            "Every block has an incoming transition, so no block starts a run: choose one to start \
             from (Run…, or braid run --from)"
                .to_owned(),
        );
    }
    if project.settings.concurrency_limit == 0 {
        found.project(
            Severity::Error,
            "The project's concurrency limit is 0, so nothing could ever run; set it to at least 1"
                .to_owned(),
        );
    }
}

fn check_block(lookup: &Index, index: usize, block: &Block, found: &mut Found) {
    let name = lookup.label(block);
    if let Some(&(at, first)) = lookup.blocks.get(&block.id)
        && at < index
    {
        found.block(
            index,
            block,
            Severity::Error,
            format!(
                "Block {name} has the same id \"{}\" as block {}",
                block.id,
                lookup.label(first)
            ),
        );
    }
    if block.name.trim().is_empty() {
        found.block(
            index,
            block,
            Severity::Warning,
            format!("Block {name} has no name"),
        );
    }
    match &block.kind {
        BlockKind::Code(code) => {
            if code.timeout_s == 0 {
                found.block(
                    index,
                    block,
                    Severity::Error,
                    format!("Block {name} has a timeout of 0 seconds, so every run of it would time out"),
                );
            }
            if code.timeout_s > MAX_TIMEOUT_S {
                found.block(
                    index,
                    block,
                    Severity::Error,
                    format!(
                        "Block {name} has a timeout of {} seconds; the most a block may have is {} (a day)",
                        crate::text::count(code.timeout_s),
                        crate::text::count(MAX_TIMEOUT_S)
                    ),
                );
            }
            if let Some(retries) = &code.retries {
                if !(retries.delay_s.is_finite() && retries.delay_s >= 0.0) {
                    found.block(
                        index,
                        block,
                        Severity::Error,
                        format!(
                            "Block {name} waits {} seconds before a retry; the delay must be a number of seconds, 0 or more",
                            retries.delay_s
                        ),
                    );
                }
                if !(retries.factor.is_finite() && retries.factor >= 1.0) {
                    found.block(
                        index,
                        block,
                        Severity::Error,
                        format!(
                            "Block {name} multiplies its retry delay by {}; the factor must be 1 or more",
                            retries.factor
                        ),
                    );
                }
            }
            if code.concurrency_cap == Some(0) {
                found.block(
                    index,
                    block,
                    Severity::Error,
                    format!("Block {name} has a concurrency cap of 0, so it could never run"),
                );
            }
            for variable in code
                .env_vars
                .iter()
                .filter(|v| !super::env_file::is_name(v))
            {
                found.block(
                    index,
                    block,
                    Severity::Warning,
                    format!(
                        "Block {name} declares {variable:?}, which is not a variable name (letters, digits and _, not starting with a digit): its value can't be set in Braid, only in the environment Braid starts in"
                    ),
                );
            }
            if let Language::Other(language) = &code.language {
                found.block(
                    index,
                    block,
                    Severity::Warning,
                    format!(
                        "{} block {name} can't run yet (language \"{language}\"); a run that reaches it fails",
                        language_family(language)
                    ),
                );
            }
        }
        BlockKind::Unsupported { refinery_type, .. } => found.block(
            index,
            block,
            Severity::Warning,
            format!(
                "Block {name} is a Refinery \"{refinery_type}\" block, which Braid can't run yet; a run that reaches it fails"
            ),
        ),
        BlockKind::ApiEndpoint {
            api_path,
            http_method,
            timeout_s,
        } => check_endpoint(lookup, index, block, (api_path, http_method, *timeout_s), found),
        BlockKind::Timer {
            schedule_expression,
            ..
        } => {
            if let Err(why) = Schedule::parse(schedule_expression) {
                found.block(index, block, Severity::Error, format!("Timer {name} {why}"));
            }
            if leads_nowhere(lookup, block) {
                found.block(
                    index,
                    block,
                    Severity::Warning,
                    format!("Timer {name} leads to no block, so its firings do nothing"),
                );
            }
        }
        BlockKind::Queue { batch_size } => {
            if !(1..=MAX_BATCH_SIZE).contains(batch_size) {
                found.block(
                    index,
                    block,
                    Severity::Error,
                    format!(
                        "Queue {name} has a batch size of {batch_size}; a batch holds 1 to {MAX_BATCH_SIZE} messages"
                    ),
                );
            }
            if leads_nowhere(lookup, block) {
                found.block(
                    index,
                    block,
                    Severity::Warning,
                    format!("Queue {name} leads to no block, so its messages are never taken"),
                );
            }
        }
        BlockKind::Topic => {
            if leads_nowhere(lookup, block) {
                found.block(
                    index,
                    block,
                    Severity::Warning,
                    format!("Topic {name} has no subscribers, so its messages go nowhere"),
                );
            }
        }
        BlockKind::ApiResponse => {}
    }
}

/// Whether no transition leaves `block` (for a block that only passes things on).
fn leads_nowhere(lookup: &Index, block: &Block) -> bool {
    !lookup.leaving.contains(&block.id)
}

/// Whether `path` is a path an endpoint can answer: Refinery's `^/[a-zA-Z0-9/]*$`, and the other
/// characters a URL path takes as they are (`-`, `_`, `.`, `~`).
pub fn is_endpoint_path(path: &str) -> bool {
    path.starts_with('/')
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.' | '~'))
}

/// The method an endpoint answers, as requests are matched against it (upper case).
pub fn endpoint_method(http_method: &str) -> String {
    http_method.trim().to_ascii_uppercase()
}

fn check_endpoint(
    lookup: &Index,
    index: usize,
    block: &Block,
    (api_path, http_method, timeout_s): (&str, &str, u64),
    found: &mut Found,
) {
    let name = lookup.label(block);
    let mut error = |message| found.block(index, block, Severity::Error, message);
    if !is_endpoint_path(api_path) {
        error(format!(
            "API Endpoint {name} has the path {api_path:?}, which is not one: it starts with / and \
             holds letters, digits, /, -, _, . and ~ only"
        ));
    }
    let method = endpoint_method(http_method);
    if !HTTP_METHODS.contains(&method.as_str()) {
        error(format!(
            "API Endpoint {name} has the method {http_method:?}; it answers one of {}",
            HTTP_METHODS.join(", ")
        ));
    }
    if timeout_s == 0 {
        error(format!(
            "API Endpoint {name} has a timeout of 0 seconds, so every request would time out"
        ));
    }
    let same_path = lookup
        .endpoints
        .get(api_path)
        .map_or(&[][..], Vec::as_slice);
    let clash = same_path.iter().find_map(|&(at, other)| match &other.kind {
        BlockKind::ApiEndpoint { http_method: m, .. } if at < index => {
            let m = endpoint_method(m);
            (m == method || m == "ANY" || method == "ANY").then_some(other)
        }
        _ => None,
    });
    if let Some(other) = clash {
        error(format!(
            "API Endpoint {name} answers {method} {api_path}, as API Endpoint {} does already: a \
             request can go to one only",
            lookup.label(other)
        ));
    }
    if leads_nowhere(lookup, block) {
        found.block(
            index,
            block,
            Severity::Warning,
            format!(
                "API Endpoint {name} leads to no block, so its requests are answered with an error"
            ),
        );
    }
}

fn check_transitions(project: &Project, lookup: &Index, found: &mut Found) {
    let unmatched_fan_ins: HashSet<TransitionId> = FanAnalysis::new(project)
        .unmatched_fan_ins
        .into_iter()
        .collect();
    // The first transition of each (from, to, kind, and for an `if` its condition).
    let mut links: HashMap<(&BlockId, &BlockId, TransitionKind, &str), usize> = HashMap::new();

    for (index, t) in project.transitions.iter().enumerate() {
        let name = transition_label(lookup, t);
        let mut report = |severity, message| found.transition(index, t, severity, message);

        if let Some(&first) = lookup.transitions.get(&t.id)
            && first < index
        {
            report(
                Severity::Error,
                format!(
                    "Transition {name} has the same id \"{}\" as transition {}",
                    t.id,
                    transition_label(lookup, &project.transitions[first])
                ),
            );
        }
        for (end, id) in [("starts", &t.from), ("ends", &t.to)] {
            if lookup.block(id).is_none() {
                report(
                    Severity::Error,
                    format!("Transition {name} {end} at a block that doesn't exist (id \"{id}\")"),
                );
            }
        }
        let condition = if t.kind == TransitionKind::If {
            t.expression.trim()
        } else {
            ""
        };
        let first_link = *links
            .entry((&t.from, &t.to, t.kind, condition))
            .or_insert(index);
        if first_link < index {
            // A doubled fan-out or fan-in delivers every item twice, so its fan-in can never
            // complete; a doubled `then` only runs its target twice, which a run survives.
            let (severity, consequence) = match t.kind {
                TransitionKind::FanOut | TransitionKind::FanIn => {
                    (Severity::Error, "every item would reach its fan-in twice")
                }
                _ => (
                    Severity::Warning,
                    "its target would run twice on the same data",
                ),
            };
            report(
                severity,
                format!("Transition {name} duplicates another, so {consequence}"),
            );
        }
        if starts_runs(lookup, &t.to) {
            report(
                Severity::Error,
                format!(
                    "Transition {name} leads into {}, which starts runs of its own: nothing can lead into it",
                    block_ref(lookup, &t.to)
                ),
            );
        }
        if matches!(
            lookup.block(&t.from).map(|b| &b.kind),
            Some(BlockKind::ApiResponse)
        ) {
            report(
                Severity::Error,
                format!(
                    "Transition {name} leaves the API Response {}, which ends its path: what reaches it answers the request",
                    block_ref(lookup, &t.from)
                ),
            );
        }
        if t.kind != TransitionKind::FanOut && t.names_items() {
            report(
                Severity::Error,
                format!(
                    "Transition {name} has an item key or label, which only a fan-out gives its items"
                ),
            );
        }
        match t.tolerated_failures {
            Some(_) if t.kind != TransitionKind::FanIn => report(
                Severity::Error,
                format!(
                    "Transition {name} tolerates failed items, which only a fan-in can (it is the one that waits for them)"
                ),
            ),
            Some(Tolerance::Percent(p)) if !(0.0..=100.0).contains(&p) => report(
                Severity::Error,
                format!("Transition {name} tolerates {p}% failed items; a share is 0% to 100%"),
            ),
            _ => {}
        }
        match t.kind {
            TransitionKind::If if t.expression.trim().is_empty() => report(
                Severity::Error,
                format!("Transition {name} has no condition"),
            ),
            TransitionKind::Else if !lookup.with_if.contains(&t.from) => report(
                Severity::Error,
                format!("Transition {name} has no \"if\" beside it, so it could never fire"),
            ),
            TransitionKind::FanIn if unmatched_fan_ins.contains(&t.id) => report(
                Severity::Error,
                format!("Transition {name} has no fan-out upstream for it to close"),
            ),
            TransitionKind::FanOut if lookup.on_cycle(t) => report(
                Severity::Warning,
                format!(
                    "Transition {name} is on a cycle ({} leads back to {}): each time round, every \
                     item fans out again, so unless a condition ends the loop the run multiplies its \
                     invocations until Braid stops it",
                    block_ref(lookup, &t.to),
                    block_ref(lookup, &t.from)
                ),
            ),
            TransitionKind::Merge => {
                if lookup.incoming_merges.get(&t.to).copied().unwrap_or(0) < 2 {
                    report(
                        Severity::Error,
                        format!(
                            "Transition {name} is the only one into its block: a merge needs at least two incoming merge transitions"
                        ),
                    );
                }
                // A block fires once per fan-in or once per complete merge; it can't wait for both.
                if lookup.fan_in_targets.contains(&t.to) {
                    report(
                        Severity::Error,
                        format!(
                            "Transition {name} ends at a block that also receives a fan-in; a block can wait for a merge or a fan-in, not both"
                        ),
                    );
                }
            }
            TransitionKind::Then if t.from == t.to => report(
                Severity::Warning,
                format!("Transition {name} leads back to its own block, so it loops forever"),
            ),
            _ => {}
        }
    }
}

/// Whether `id` is an API Endpoint or a Timer: blocks that start runs.
fn starts_runs(lookup: &Index, id: &BlockId) -> bool {
    lookup.block(id).is_some_and(|b| {
        matches!(
            b.kind,
            BlockKind::ApiEndpoint { .. } | BlockKind::Timer { .. }
        )
    })
}

/// `"fan-in" from "Process" to "Collect"`.
fn transition_label(lookup: &Index, t: &Transition) -> String {
    format!(
        "\"{}\" from {} to {}",
        t.kind,
        block_ref(lookup, &t.from),
        block_ref(lookup, &t.to)
    )
}

fn block_ref(lookup: &Index, id: &BlockId) -> String {
    match lookup.block(id) {
        Some(block) if !block.name.trim().is_empty() => lookup.label(block),
        Some(_) => format!("the unnamed block \"{id}\""),
        None => format!("the missing block \"{id}\""),
    }
}

/// A name in quotes, its control characters (a line break, say) escaped as Rust writes them: a
/// problem's message stays one line, however the name is made (messages are listed a line each, and
/// a refused run's message lists them in one text).
pub fn quoted(name: &str) -> String {
    format!("{name:?}")
}

/// A readable family name for a Refinery language id (`nodejs8.10` → `Node.js`).
fn language_family(language: &str) -> &str {
    const FAMILIES: [(&str, &str); 5] = [
        ("nodejs", "Node.js"),
        ("go", "Go"),
        ("php", "PHP"),
        ("ruby", "Ruby"),
        ("java", "Java"),
    ];
    FAMILIES
        .iter()
        .find(|(prefix, _)| language.starts_with(prefix))
        .map_or(language, |(_, family)| family)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::project::{CodeBlock, Position};

    /// Blocks named and identified by the given names, all Python Code Blocks.
    fn project(blocks: &[&str]) -> Project {
        let mut project = Project::default();
        for name in blocks {
            let mut block = Block::new_code(*name, "", Position::default());
            block.id = BlockId((*name).into());
            project.blocks.push(block);
        }
        project
    }

    fn link(project: &mut Project, from: &str, to: &str, kind: TransitionKind) -> TransitionId {
        let mut t = Transition::new(BlockId(from.into()), BlockId(to.into()), kind);
        if kind == TransitionKind::If {
            t.expression = "return_data > 1".into();
        }
        let id = t.id.clone();
        project.transitions.push(t);
        id
    }

    fn messages(project: &Project) -> Vec<String> {
        validate(project)
            .into_iter()
            .map(|p| p.to_string())
            .collect()
    }

    /// The single problem of `project`, which must have exactly one.
    fn only(project: &Project) -> Problem {
        let problems = validate(project);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        problems.into_iter().next().expect("one problem")
    }

    /// A chain of `n` blocks `b0 … b{n-1}` whose transitions cycle through fan-out, then, fan-in, then.
    fn long_chain(n: usize) -> Project {
        use TransitionKind::{FanIn, FanOut, Then};
        let names: Vec<String> = (0..n).map(|i| format!("b{i}")).collect();
        let mut project = self::project(&names.iter().map(String::as_str).collect::<Vec<_>>());
        for i in 1..n {
            let kind = [FanOut, Then, FanIn, Then][(i - 1) % 4];
            link(&mut project, &names[i - 1], &names[i], kind);
        }
        project
    }

    /// 68,000 blocks validate at once (each rule looks blocks and transitions up in an index; scans
    /// of the project per block or transition took minutes at this size), and every problem is
    /// still found: a fan-out on a loop near the end, and an `else` without an `if`.
    #[test]
    fn a_project_of_68000_blocks_validates_and_every_problem_is_found() {
        let n = 68_000;
        let mut project = long_chain(n);
        // b67996 fans out to b67997, whose items come back from b67999 to b67996.
        let fan_out = project.transitions[67_996].id.clone();
        link(&mut project, "b67999", "b67996", TransitionKind::Then);
        let late_else = link(&mut project, "b67990", "b67999", TransitionKind::Else);
        let problems = validate(&project);
        let subjects: Vec<(&Subject, Severity)> = problems
            .iter()
            .take(3)
            .map(|p| (&p.subject, p.severity))
            .collect();
        assert_eq!(
            subjects,
            [
                (&Subject::Transition(fan_out), Severity::Warning),
                (&Subject::Transition(late_else), Severity::Error),
            ]
        );
        assert_eq!(
            problems[0].message,
            "Transition \"fan-out\" from \"b67996\" to \"b67997\" is on a cycle (\"b67997\" leads back to \"b67996\"): each time round, every item fans out again, so unless a condition ends the loop the run multiplies its invocations until Braid stops it"
        );
        assert_eq!(project.entry_blocks().len(), 1);
        let analysis = FanAnalysis::new(&project);
        assert_eq!(analysis.closing_targets.len(), n / 4);
    }

    #[test]
    fn a_fan_out_on_a_loop_is_warned_about_and_a_loop_without_one_is_not() {
        use TransitionKind::{FanIn, FanOut, If, Then};
        let mut p = project(&["Start", "Gen", "Work", "Collect"]);
        link(&mut p, "Start", "Gen", Then);
        let fan_out = link(&mut p, "Gen", "Work", FanOut);
        link(&mut p, "Work", "Gen", If);
        link(&mut p, "Work", "Collect", FanIn);
        let problem = only(&p);
        assert_eq!(problem.subject, Subject::Transition(fan_out));
        assert_eq!(problem.severity, Severity::Warning);
        assert!(
            problem
                .message
                .contains("is on a cycle (\"Work\" leads back to \"Gen\")"),
            "{problem:?}"
        );

        let mut p = project(&["Start", "Ask", "Check"]);
        link(&mut p, "Start", "Ask", Then);
        link(&mut p, "Ask", "Check", Then);
        link(&mut p, "Check", "Ask", If);
        assert!(validate(&p).is_empty(), "{:#?}", validate(&p));
    }

    fn code_mut<'a>(project: &'a mut Project, name: &str) -> &'a mut CodeBlock {
        project
            .block_mut(&BlockId(name.into()))
            .and_then(Block::code_mut)
            .expect("a code block")
    }

    #[test]
    fn a_clean_map_reduce_has_no_problems() {
        use TransitionKind::{FanIn, FanOut, If, Then};
        let mut p = project(&["Split", "Process", "Check", "Collect", "Done"]);
        link(&mut p, "Split", "Process", FanOut);
        link(&mut p, "Process", "Check", Then);
        link(&mut p, "Check", "Collect", FanIn);
        link(&mut p, "Collect", "Done", If);
        link(&mut p, "Collect", "Done", TransitionKind::Else);
        assert_eq!(validate(&p), []);
    }

    #[test]
    fn map_without_reduce_is_fine() {
        let mut p = project(&["Split", "Process"]);
        link(&mut p, "Split", "Process", TransitionKind::FanOut);
        assert_eq!(validate(&p), []);
    }

    #[test]
    fn zero_concurrency_limit() {
        let mut p = project(&["A"]);
        p.settings.concurrency_limit = 0;
        let problem = only(&p);
        assert_eq!(
            (problem.severity, problem.subject),
            (Severity::Error, Subject::Project)
        );
    }

    #[test]
    fn an_empty_project_cannot_run_and_a_cycle_needs_a_start() {
        let problem = only(&project(&[]));
        assert_eq!(
            (problem.severity, problem.subject, problem.message.as_str()),
            (Severity::Error, Subject::Project, NO_BLOCKS)
        );
        let mut p = project(&["A", "B"]);
        link(&mut p, "A", "B", TransitionKind::Then);
        link(&mut p, "B", "A", TransitionKind::Then);
        let problem = only(&p);
        assert_eq!(problem.severity, Severity::Warning);
        assert!(problem.message.contains("--from"), "{}", problem.message);
    }

    #[test]
    fn duplicate_block_ids() {
        let mut p = project(&["A", "B"]);
        p.blocks[1].id = BlockId("A".into());
        let problem = only(&p);
        assert_eq!(problem.severity, Severity::Error);
        assert!(
            problem.message.contains("\"B\"") && problem.message.contains("\"A\""),
            "{}",
            problem.message
        );
    }

    #[test]
    fn duplicate_transition_ids() {
        let mut p = project(&["A", "B", "C"]);
        let first = link(&mut p, "A", "B", TransitionKind::Then);
        link(&mut p, "B", "C", TransitionKind::Then);
        p.transitions[1].id = first;
        let problem = only(&p);
        assert_eq!(problem.severity, Severity::Error);
        assert!(problem.message.contains("same id"), "{}", problem.message);
    }

    #[test]
    fn transition_to_or_from_a_missing_block() {
        let mut p = project(&["A"]);
        link(&mut p, "A", "ghost", TransitionKind::Then);
        link(&mut p, "phantom", "A", TransitionKind::Then);
        let problems = messages(&p);
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(
            problems[0].contains("\"ghost\"") && problems[1].contains("\"phantom\""),
            "{problems:#?}"
        );
    }

    #[test]
    fn else_needs_an_if_from_the_same_block() {
        let mut p = project(&["Check", "Yes", "No", "Other"]);
        link(&mut p, "Other", "Yes", TransitionKind::If);
        let lonely = link(&mut p, "Check", "No", TransitionKind::Else);
        let problem = only(&p);
        assert_eq!(problem.subject, Subject::Transition(lonely));
        assert_eq!(
            problem.message,
            "Transition \"else\" from \"Check\" to \"No\" has no \"if\" beside it, so it could never fire"
        );
    }

    #[test]
    fn if_needs_an_expression() {
        let mut p = project(&["A", "B"]);
        link(&mut p, "A", "B", TransitionKind::If);
        p.transitions[0].expression = "  ".into();
        assert_eq!(only(&p).severity, Severity::Error);
    }

    #[test]
    fn fan_in_without_fan_out() {
        let mut p = project(&["Process", "Collect"]);
        link(&mut p, "Process", "Collect", TransitionKind::FanIn);
        let problem = only(&p);
        assert!(
            problem
                .message
                .starts_with("Transition \"fan-in\" from \"Process\" to \"Collect\""),
            "{}",
            problem.message
        );
    }

    #[test]
    fn merge_needs_two_sources() {
        let mut p = project(&["A", "B", "M"]);
        link(&mut p, "A", "M", TransitionKind::Merge);
        let problem = only(&p);
        assert!(
            problem
                .message
                .contains("merge needs at least two incoming merge transitions"),
            "{}",
            problem.message
        );
        link(&mut p, "B", "M", TransitionKind::Merge);
        assert_eq!(validate(&p), []);
    }

    #[test]
    fn merge_and_fan_in_into_one_block() {
        use TransitionKind::{FanIn, FanOut, Merge};
        let mut p = project(&["Split", "Work", "A", "B", "Join"]);
        link(&mut p, "Split", "Work", FanOut);
        link(&mut p, "Work", "Join", FanIn);
        link(&mut p, "A", "Join", Merge);
        link(&mut p, "B", "Join", Merge);
        let problems = messages(&p);
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(
            problems.iter().all(|m| m.contains("not both")),
            "{problems:#?}"
        );
    }

    #[test]
    fn duplicate_transitions() {
        let mut p = project(&["A", "B"]);
        link(&mut p, "A", "B", TransitionKind::Then);
        let second = link(&mut p, "A", "B", TransitionKind::Then);
        let problem = only(&p);
        assert_eq!(problem.subject, Subject::Transition(second));
        assert_eq!(problem.severity, Severity::Warning);

        // A doubled fan-in can never complete.
        let mut p = project(&["Split", "Work", "Join"]);
        link(&mut p, "Split", "Work", TransitionKind::FanOut);
        link(&mut p, "Work", "Join", TransitionKind::FanIn);
        link(&mut p, "Work", "Join", TransitionKind::FanIn);
        assert_eq!(only(&p).severity, Severity::Error);

        // Two `if`s with different conditions are two different rules, not a duplicate.
        let mut p = project(&["A", "B"]);
        link(&mut p, "A", "B", TransitionKind::If);
        link(&mut p, "A", "B", TransitionKind::If);
        p.transitions[1].expression = "backpack.get('x')".into();
        assert_eq!(validate(&p), []);
        p.transitions[1].expression = p.transitions[0].expression.clone();
        assert!(only(&p).message.contains("duplicates another"));
    }

    #[test]
    fn then_self_loop_is_a_warning() {
        let mut p = project(&["Start", "Loop"]);
        link(&mut p, "Start", "Loop", TransitionKind::Then);
        link(&mut p, "Loop", "Loop", TransitionKind::Then);
        assert_eq!(only(&p).severity, Severity::Warning);
    }

    #[test]
    fn a_variable_name_that_cant_be_set_is_a_warning() {
        let mut p = project(&["Call"]);
        code_mut(&mut p, "Call").env_vars = vec!["API_KEY".into(), "API-KEY".into()];
        let problem = only(&p);
        assert_eq!(problem.severity, Severity::Warning);
        assert!(
            problem
                .message
                .starts_with("Block \"Call\" declares \"API-KEY\", which is not a variable name"),
            "{}",
            problem.message
        );
    }

    #[test]
    fn blocks_that_share_a_name_are_numbered_as_the_editor_numbers_them() {
        let mut p = project(&["Start", "Call", "Other"]);
        "Call".clone_into(&mut p.blocks[2].name);
        for (block, variable) in [("Call", "API-KEY"), ("Other", "NO-KEY")] {
            code_mut(&mut p, block).env_vars = vec![variable.into()];
        }
        link(&mut p, "Start", "Call", TransitionKind::Then);
        link(&mut p, "Start", "Other", TransitionKind::Then);
        let problems = messages(&p);
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(
            problems[0].contains("Block \"Call (1)\" declares \"API-KEY\""),
            "{problems:#?}"
        );
        assert!(
            problems[1].contains("Block \"Call (2)\" declares \"NO-KEY\""),
            "{problems:#?}"
        );
        let id = p.blocks[2].id.clone();
        assert_eq!(p.distinct_name(&id), "Call (2)");
    }

    #[test]
    fn non_python_block_is_a_warning() {
        let mut p = project(&["Hello"]);
        code_mut(&mut p, "Hello").language = Language::Other("nodejs8.10".into());
        let problem = only(&p);
        assert_eq!(problem.severity, Severity::Warning);
        assert!(
            problem
                .message
                .starts_with("Node.js block \"Hello\" can't run yet"),
            "{}",
            problem.message
        );
    }

    #[test]
    fn unsupported_block_is_a_warning() {
        let mut p = project(&["Timer"]);
        p.blocks[0].kind = BlockKind::Unsupported {
            refinery_type: "schedule_trigger".into(),
            original: serde_json::Value::Null,
        };
        let problem = only(&p);
        assert_eq!(problem.severity, Severity::Warning);
        assert!(
            problem.message.contains("schedule_trigger"),
            "{}",
            problem.message
        );
    }

    #[test]
    fn empty_name_is_a_warning_and_names_the_id() {
        let mut p = project(&["x"]);
        p.blocks[0].name = String::new();
        let problem = only(&p);
        assert_eq!(problem.severity, Severity::Warning);
        assert!(problem.message.contains("\"x\""), "{}", problem.message);
    }

    /// A run refused for its problems lists them a line each: a name can't add a line of its own.
    #[test]
    fn a_name_with_a_line_break_stays_on_its_problems_line() {
        let mut p = project(&["A\nok: valid"]);
        code_mut(&mut p, "A\nok: valid").timeout_s = 0;
        assert_eq!(
            only(&p).message,
            r#"Block "A\nok: valid" has a timeout of 0 seconds, so every run of it would time out"#
        );
    }

    /// A timeout past a day is refused, saying what the most is: larger ones passed validation and hung
    /// the worker that ran them (nanoseconds past 64 bits).
    #[test]
    fn a_timeout_past_the_maximum_is_an_error_that_says_the_maximum() {
        let mut p = project(&["A", "B"]);
        code_mut(&mut p, "A").timeout_s = 10_000_000_000;
        code_mut(&mut p, "B").timeout_s = MAX_TIMEOUT_S;
        let problems = validate(&p);
        let errors: Vec<&str> = problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .map(|p| p.message.as_str())
            .collect();
        assert_eq!(
            errors,
            [
                "Block \"A\" has a timeout of 10,000,000,000 seconds; the most a block may have is 86,400 (a day)"
            ]
        );
    }

    #[test]
    fn zero_timeout_and_zero_cap() {
        let mut p = project(&["A"]);
        code_mut(&mut p, "A").timeout_s = 0;
        code_mut(&mut p, "A").concurrency_cap = Some(0);
        let problems = validate(&p);
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(problems.iter().all(|p| p.severity == Severity::Error));
        assert!(has_errors(&problems));
    }

    #[test]
    fn item_names_belong_to_fan_outs_and_budgets_to_fan_ins() {
        use TransitionKind::{FanIn, FanOut, Then};
        let mut p = project(&["Gen", "Work", "Collect", "Next"]);
        link(&mut p, "Gen", "Work", FanOut);
        link(&mut p, "Work", "Collect", FanIn);
        link(&mut p, "Collect", "Next", Then);
        p.transitions[0].item_key = "item['id']".into();
        p.transitions[1].tolerated_failures = Some(Tolerance::Percent(5.0));
        assert_eq!(messages(&p), Vec::<String>::new());
        p.transitions[2].item_label = "item".into();
        p.transitions[2].tolerated_failures = Some(Tolerance::Count(1));
        p.transitions[1].tolerated_failures = Some(Tolerance::Percent(150.0));
        assert_eq!(
            messages(&p),
            [
                "error: Transition \"fan-in\" from \"Work\" to \"Collect\" tolerates 150% failed items; a share is 0% to 100%",
                "error: Transition \"then\" from \"Collect\" to \"Next\" has an item key or label, which only a fan-out gives its items",
                "error: Transition \"then\" from \"Collect\" to \"Next\" tolerates failed items, which only a fan-in can (it is the one that waits for them)",
            ]
        );
    }

    #[test]
    fn retry_delays_must_be_seconds_and_grow() {
        let mut p = project(&["A"]);
        code_mut(&mut p, "A").retries = Some(crate::model::Retries {
            count: 3,
            delay_s: -1.0,
            factor: 0.5,
            on: Vec::new(),
        });
        assert_eq!(
            messages(&p),
            [
                "error: Block \"A\" waits -1 seconds before a retry; the delay must be a number of seconds, 0 or more",
                "error: Block \"A\" multiplies its retry delay by 0.5; the factor must be 1 or more",
            ]
        );
    }

    #[test]
    fn reports_everything_in_project_order() {
        let mut p = project(&["A", "B", "C"]);
        link(&mut p, "C", "ghost", TransitionKind::Then);
        link(&mut p, "A", "B", TransitionKind::Else);
        code_mut(&mut p, "B").timeout_s = 0;
        code_mut(&mut p, "A").language = Language::Other("go1.12".into());
        p.settings.concurrency_limit = 0;
        let subjects: Vec<Subject> = validate(&p).into_iter().map(|p| p.subject).collect();
        assert_eq!(
            subjects,
            [
                Subject::Project,
                Subject::Block(BlockId("A".into())),
                Subject::Block(BlockId("B".into())),
                Subject::Transition(p.transitions[0].id.clone()),
                Subject::Transition(p.transitions[1].id.clone()),
            ]
        );
    }
}
