//! Automatic layout for projects that carry no positions (Refinery exports).
//!
//! Blocks go into columns by the longest path from an entry block, left to right; within a column they
//! are ordered by where their predecessors sit, so that edges mostly run straight. Cycles are broken by
//! ignoring the edges that close them (found by a depth-first search from the entry blocks), so the
//! layering always terminates. Everything is decided by project order: the same project always gets the
//! same layout.

use std::collections::HashMap;

use super::project::{BlockId, Position, Project};

/// Horizontal distance between columns, in canvas points.
pub const COLUMN_SPACING: f32 = 260.0;
/// Vertical distance between blocks in one column, in canvas points.
pub const ROW_SPACING: f32 = 140.0;

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
    let mut successors = vec![Vec::new(); count];
    let mut has_incoming = vec![false; count];
    for t in &project.transitions {
        if let (Some(&from), Some(&to)) = (index_of.get(&t.from), index_of.get(&t.to))
            && from != to
        {
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
    for members in &mut column_members {
        let mut keyed: Vec<(f64, usize)> = members
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
        *members = keyed.into_iter().map(|(_, i)| i).collect();
    }

    let tallest = column_members.iter().map(Vec::len).max().unwrap_or(0);
    for members in &column_members {
        // Shorter columns are centred against the tallest one.
        let offset = (tallest - members.len()) as f32 * ROW_SPACING / 2.0;
        for &i in members {
            project.blocks[i].position = Position {
                x: layer[i] as f32 * COLUMN_SPACING,
                y: offset + row[i] as f32 * ROW_SPACING,
            };
        }
    }
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
    fn long_chains_do_not_overflow_the_stack() {
        let names: Vec<String> = (0..50_000).map(|i| format!("b{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let edges: Vec<(&str, &str)> = refs.windows(2).map(|w| (w[0], w[1])).collect();
        let mut p = project(&refs, &edges);
        auto_layout(&mut p);
        assert_eq!(p.blocks[49_999].position.x, 49_999.0 * COLUMN_SPACING);
    }
}
