//! Automatic layout for projects that carry no positions (Refinery exports).
//!
//! Each group of connected blocks is laid out in layers: columns by the longest path from an entry
//! block, left to right; within a column, blocks ordered by where their predecessors sit, so that edges
//! mostly run straight. Cycles are broken by ignoring the edges that close them (found by a depth-first
//! search from the entry blocks), so the layering always terminates. Blocks joined to nothing share one
//! grid, a few columns wide, rather than one tall column that fits only at an unreadable zoom. The
//! groups are then packed in rows about as wide as a canvas is. Everything is decided by project order:
//! the same project always gets the same layout.

use std::collections::HashMap;

use super::project::{BlockId, Position, Project};

/// Horizontal distance between columns, in canvas points.
pub const COLUMN_SPACING: f32 = 260.0;
/// Vertical distance between blocks in one column, in canvas points.
pub const ROW_SPACING: f32 = 140.0;
/// The room a block takes on the canvas (about: its text decides), to keep groups apart.
const BLOCK_SIZE: (f32, f32) = (220.0, 110.0);
/// Space between two groups of blocks.
const GROUP_GAP: f32 = 60.0;
/// The shape the packed groups aim for: a canvas beside the inspector is about this much wider than
/// it is tall.
const ASPECT: f32 = 1.6;

pub fn auto_layout(project: &mut Project) {
    let count = project.blocks.len();
    if count == 0 {
        return;
    }
    // With duplicate ids (an invalid project, but it must still show) transitions attach to the first.
    let mut index_of: HashMap<&BlockId, usize> = HashMap::new();
    for (i, block) in project.blocks.iter().enumerate() {
        index_of.entry(&block.id).or_insert(i);
    }
    let mut edges = Vec::new();
    for t in &project.transitions {
        if let (Some(&from), Some(&to)) = (index_of.get(&t.from), index_of.get(&t.to))
            && from != to
        {
            edges.push((from, to));
        }
    }

    let mut groups: Vec<Group> = Vec::new();
    let mut loners = Vec::new();
    for members in components(count, &edges) {
        if members.len() == 1 {
            loners.push(members[0]);
        } else {
            groups.push(layered(&members, &edges));
        }
    }
    if !loners.is_empty() {
        groups.push(grid(&loners));
    }

    for (group, (x, y)) in groups.iter().zip(pack(&groups)) {
        for &(i, (dx, dy)) in &group.places {
            project.blocks[i].position = Position {
                x: x + dx,
                y: y + dy,
            };
        }
    }
}

/// Blocks placed relative to the group's top-left corner, and the room the group takes.
struct Group {
    places: Vec<(usize, (f32, f32))>,
    size: (f32, f32),
}

impl Group {
    fn new(places: Vec<(usize, (f32, f32))>) -> Self {
        let right = places.iter().map(|(_, p)| p.0).fold(0.0, f32::max);
        let bottom = places.iter().map(|(_, p)| p.1).fold(0.0, f32::max);
        Self {
            places,
            size: (right + BLOCK_SIZE.0, bottom + BLOCK_SIZE.1),
        }
    }
}

/// The connected groups of blocks (edges in either direction), each in project order, ordered by
/// their first block.
fn components(count: usize, edges: &[(usize, usize)]) -> Vec<Vec<usize>> {
    /// Union-find's root of `i`, halving the path on the way.
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut parent: Vec<usize> = (0..count).collect();
    for &(a, b) in edges {
        let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
        if ra != rb {
            parent[ra.max(rb)] = ra.min(rb);
        }
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut group_of_root: HashMap<usize, usize> = HashMap::new();
    for i in 0..count {
        let r = root(&mut parent, i);
        let g = *group_of_root.entry(r).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    groups
}

/// Blocks joined to nothing, in a grid about as wide as [`ASPECT`] asks.
fn grid(blocks: &[usize]) -> Group {
    let n = blocks.len() as f32;
    let columns = (n * ASPECT * ROW_SPACING / COLUMN_SPACING)
        .sqrt()
        .ceil()
        .max(1.0) as usize;
    Group::new(
        blocks
            .iter()
            .enumerate()
            .map(|(k, &i)| {
                let (column, row) = (k % columns, k / columns);
                (
                    i,
                    (column as f32 * COLUMN_SPACING, row as f32 * ROW_SPACING),
                )
            })
            .collect(),
    )
}

/// Each group's top-left corner: groups in order, left to right in rows no wider than the widest group
/// or a canvas-shaped share of their total area, whichever is wider.
fn pack(groups: &[Group]) -> Vec<(f32, f32)> {
    let area: f32 = groups
        .iter()
        .map(|g| (g.size.0 + GROUP_GAP) * (g.size.1 + GROUP_GAP))
        .sum();
    let widest = groups.iter().map(|g| g.size.0).fold(0.0, f32::max);
    let row_width = widest.max((area * ASPECT).sqrt());
    let (mut x, mut y, mut row_height) = (0.0_f32, 0.0_f32, 0.0_f32);
    groups
        .iter()
        .map(|g| {
            if x > 0.0 && x + g.size.0 > row_width {
                x = 0.0;
                y += row_height + GROUP_GAP;
                row_height = 0.0;
            }
            let corner = (x, y);
            x += g.size.0 + GROUP_GAP;
            row_height = row_height.max(g.size.1);
            corner
        })
        .collect()
}

/// One connected group in layers (see the module's doc). `members` are project indices.
fn layered(members: &[usize], edges: &[(usize, usize)]) -> Group {
    let count = members.len();
    let local: HashMap<usize, usize> = members.iter().enumerate().map(|(l, &i)| (i, l)).collect();
    let mut successors = vec![Vec::new(); count];
    let mut has_incoming = vec![false; count];
    for (from, to) in edges {
        if let (Some(&from), Some(&to)) = (local.get(from), local.get(to)) {
            successors[from].push(to);
            has_incoming[to] = true;
        }
    }

    let forward = remove_back_edges(&successors, &has_incoming);
    let layer = longest_path_layers(&forward);

    let columns = layer.iter().max().map_or(0, |&l| l + 1);
    let mut predecessors = vec![Vec::new(); count];
    for (from, targets) in forward.iter().enumerate() {
        for &to in targets {
            predecessors[to].push(from);
        }
    }
    let mut column_members: Vec<Vec<usize>> = vec![Vec::new(); columns];
    for (i, &column) in layer.iter().enumerate() {
        column_members[column].push(i);
    }
    let mut row = vec![0_usize; count];
    for column in &mut column_members {
        let mut keyed: Vec<(f64, usize)> = column
            .iter()
            .map(|&i| {
                // Predecessors all sit in earlier columns, so their rows are already known.
                let preds = &predecessors[i];
                let barycenter = if preds.is_empty() {
                    f64::MAX
                } else {
                    preds.iter().map(|&p| row[p] as f64).sum::<f64>() / preds.len() as f64
                };
                (barycenter, i)
            })
            .collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (r, &(_, i)) in keyed.iter().enumerate() {
            row[i] = r;
        }
        *column = keyed.into_iter().map(|(_, i)| i).collect();
    }

    let tallest = column_members.iter().map(Vec::len).max().unwrap_or(0);
    let mut places = Vec::with_capacity(count);
    for column in &column_members {
        // Shorter columns are centred against the tallest one.
        let offset = (tallest - column.len()) as f32 * ROW_SPACING / 2.0;
        for &i in column {
            places.push((
                members[i],
                (
                    layer[i] as f32 * COLUMN_SPACING,
                    offset + row[i] as f32 * ROW_SPACING,
                ),
            ));
        }
    }
    Group::new(places)
}

/// The graph without the edges that close a cycle. The search starts at the entry blocks (project
/// order), then at any block a cycle left unreached, so that the edges kept point "forward".
fn remove_back_edges(successors: &[Vec<usize>], has_incoming: &[bool]) -> Vec<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        New,
        OnStack,
        Done,
    }
    let count = successors.len();
    let mut state = vec![State::New; count];
    let mut forward = vec![Vec::new(); count];
    let roots = (0..count)
        .filter(|&i| !has_incoming[i])
        .chain(0..count)
        .collect::<Vec<_>>();
    for root in roots {
        if state[root] != State::New {
            continue;
        }
        // An explicit stack: a long chain of blocks must not overflow the thread's stack.
        let mut stack = vec![(root, 0_usize)];
        state[root] = State::OnStack;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&to) = successors[node].get(*next) {
                *next += 1;
                match state[to] {
                    State::OnStack => {} // closes a cycle: dropped
                    State::Done => forward[node].push(to),
                    State::New => {
                        forward[node].push(to);
                        state[to] = State::OnStack;
                        stack.push((to, 0));
                    }
                }
            } else {
                state[node] = State::Done;
                stack.pop();
            }
        }
    }
    forward
}

/// Each block's column: the length of the longest path reaching it in the acyclic `forward` graph.
fn longest_path_layers(forward: &[Vec<usize>]) -> Vec<usize> {
    let count = forward.len();
    let mut in_degree = vec![0_usize; count];
    for targets in forward {
        for &to in targets {
            in_degree[to] += 1;
        }
    }
    let mut layer = vec![0_usize; count];
    let mut ready: Vec<usize> = (0..count).filter(|&i| in_degree[i] == 0).rev().collect();
    while let Some(node) = ready.pop() {
        for &to in &forward[node] {
            layer[to] = layer[to].max(layer[node] + 1);
            in_degree[to] -= 1;
            if in_degree[to] == 0 {
                ready.push(to);
            }
        }
    }
    layer
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // positions are small multiples of the spacings: exact in f32
mod tests {
    use super::*;
    use crate::model::project::{Block, Transition, TransitionKind};

    fn project(blocks: &[&str], edges: &[(&str, &str)]) -> Project {
        let mut project = Project::default();
        for name in blocks {
            let mut block = Block::new_code(*name, "", Position::default());
            block.id = BlockId((*name).into());
            project.blocks.push(block);
        }
        for (from, to) in edges {
            project.transitions.push(Transition::new(
                BlockId((*from).into()),
                BlockId((*to).into()),
                TransitionKind::Then,
            ));
        }
        project
    }

    fn position(project: &Project, name: &str) -> (f32, f32) {
        let block = project.find_block(name).expect("block exists");
        (block.position.x, block.position.y)
    }

    #[test]
    fn columns_follow_the_longest_path() {
        // a → b → c and a → c: c sits after b, not beside it.
        let mut p = project(&["c", "b", "a"], &[("a", "b"), ("b", "c"), ("a", "c")]);
        auto_layout(&mut p);
        assert_eq!(position(&p, "a").0, 0.0);
        assert_eq!(position(&p, "b").0, COLUMN_SPACING);
        assert_eq!(position(&p, "c").0, 2.0 * COLUMN_SPACING);
    }

    #[test]
    fn siblings_stack_vertically_and_short_columns_are_centred() {
        let mut p = project(&["root", "x", "y"], &[("root", "x"), ("root", "y")]);
        auto_layout(&mut p);
        assert_eq!(position(&p, "x"), (COLUMN_SPACING, 0.0));
        assert_eq!(position(&p, "y"), (COLUMN_SPACING, ROW_SPACING));
        assert_eq!(position(&p, "root"), (0.0, ROW_SPACING / 2.0));
    }

    #[test]
    fn cycles_terminate_and_keep_entry_first() {
        let mut p = project(
            &["a", "b", "c"],
            &[("a", "b"), ("b", "c"), ("c", "b"), ("c", "c")],
        );
        auto_layout(&mut p);
        assert_eq!(position(&p, "a").0, 0.0);
        assert_eq!(position(&p, "b").0, COLUMN_SPACING);
        assert_eq!(position(&p, "c").0, 2.0 * COLUMN_SPACING);

        // A cycle with no entry block at all still gets laid out.
        let mut ring = project(&["p", "q"], &[("p", "q"), ("q", "p")]);
        auto_layout(&mut ring);
        assert_eq!(position(&ring, "p").0, 0.0);
        assert_eq!(position(&ring, "q").0, COLUMN_SPACING);
    }

    #[test]
    fn every_block_gets_a_distinct_position_deterministically() {
        let edges = [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("e", "d")];
        let mut p = project(&["a", "b", "c", "d", "e", "lonely"], &edges);
        p.transitions.push(Transition::new(
            BlockId("a".into()),
            BlockId("missing".into()),
            TransitionKind::Then,
        ));
        auto_layout(&mut p);
        let mut again = p.clone();
        auto_layout(&mut again);
        assert_eq!(p, again);
        let mut seen: Vec<(f32, f32)> = p
            .blocks
            .iter()
            .map(|b| (b.position.x, b.position.y))
            .collect();
        seen.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        seen.dedup();
        assert_eq!(seen.len(), p.blocks.len());
    }

    #[test]
    fn blocks_joined_to_nothing_share_a_grid_not_one_column() {
        let names = ["a", "b", "c", "d", "e", "f", "g"];
        let mut p = project(&names, &[]);
        auto_layout(&mut p);
        let columns: std::collections::BTreeSet<u32> =
            p.blocks.iter().map(|b| b.position.x as u32).collect();
        let rows: std::collections::BTreeSet<u32> =
            p.blocks.iter().map(|b| b.position.y as u32).collect();
        // Seven blocks: three columns of at most three, read left to right, top to bottom.
        assert_eq!(columns.len(), 3);
        assert_eq!(rows.len(), 3);
        assert_eq!(position(&p, "a"), (0.0, 0.0));
        assert_eq!(position(&p, "c"), (2.0 * COLUMN_SPACING, 0.0));
        assert_eq!(position(&p, "d"), (0.0, ROW_SPACING));
    }

    #[test]
    fn separate_groups_keep_their_shape_and_never_overlap() {
        let mut p = project(
            &["a1", "a2", "b1", "b2", "lone"],
            &[("a1", "a2"), ("b1", "b2")],
        );
        auto_layout(&mut p);
        assert_eq!(position(&p, "a1"), (0.0, 0.0));
        assert_eq!(position(&p, "a2"), (COLUMN_SPACING, 0.0));
        // Two short chains stack (one long row would fit only at a small zoom), the lone block below.
        let gap = BLOCK_SIZE.1 + GROUP_GAP;
        assert_eq!(position(&p, "b1"), (0.0, gap));
        assert_eq!(position(&p, "b2"), (COLUMN_SPACING, gap));
        let rect = |name| {
            let (x, y) = position(&p, name);
            (x, y, x + BLOCK_SIZE.0, y + BLOCK_SIZE.1)
        };
        let names = ["a1", "a2", "b1", "b2", "lone"];
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                let (ra, rb) = (rect(a), rect(b));
                let apart = ra.2 <= rb.0 || rb.2 <= ra.0 || ra.3 <= rb.1 || rb.3 <= ra.1;
                assert!(apart, "{a} {ra:?} overlaps {b} {rb:?}");
            }
        }
    }

    #[test]
    fn long_chains_do_not_overflow_the_stack() {
        let names: Vec<String> = (0..50_000).map(|i| format!("b{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let edges: Vec<(&str, &str)> = refs.windows(2).map(|w| (w[0], w[1])).collect();
        let mut p = project(&refs, &edges);
        auto_layout(&mut p);
        assert_eq!(p.blocks[49_999].position.x, 49_999.0 * COLUMN_SPACING);
    }
}
