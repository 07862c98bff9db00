//! The project model: pure data and serde, no GUI, no runtime, no Python.

pub mod env_file;
pub mod format;
pub mod graph;
pub mod layout;
pub mod local_folder;
pub mod project;
pub mod refinery;
pub mod validate;

pub use project::*;

/// "1 invocation", "100,002 invocations": a count with its noun, for every message and label that
/// counts things in a project or a run.
pub fn plural(n: impl Into<u64>, noun: &str) -> String {
    match n.into() {
        1 => format!("1 {noun}"),
        n => format!("{} {noun}s", count(n)),
    }
}

/// "100,002": a count grouped by thousands, as people read the size of a fan-out (`100002` is easily
/// misread by a factor of ten). Only for text meant to be read; JSON output keeps plain numbers.
pub fn count(n: impl Into<u64>) -> String {
    let digits = n.into().to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// "1 block · 3 transitions": a project's size, as the inspector and the status bar show it.
pub fn graph_size(project: &Project) -> String {
    format!(
        "{} · {}",
        plural(project.blocks.len() as u64, "block"),
        plural(project.transitions.len() as u64, "transition")
    )
}

/// A duration for people: "< 1 µs", "5 µs", "61 ms", "2.10 s", "3 min 5 s". Workers time invocations
/// to the microsecond, so a trivial one reads "< 1 µs", not "0.00 ms".
pub fn format_ms(ms: f64) -> String {
    if ms < 0.001 {
        "< 1 µs".to_owned()
    } else if ms < 1.0 {
        format!("{:.0} µs", ms * 1000.0)
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 60_000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        let secs = (ms / 1000.0).round() as u64;
        format!("{} min {} s", secs / 60, secs % 60)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_is_singular() {
        assert_eq!(super::plural(1u64, "invocation"), "1 invocation");
        assert_eq!(super::plural(0u64, "invocation"), "0 invocations");
        assert_eq!(super::plural(12u32, "item"), "12 items");
        assert_eq!(super::plural(100_002u64, "item"), "100,002 items");
        assert_eq!(super::count(0u64), "0");
        assert_eq!(super::count(999u64), "999");
        assert_eq!(super::count(1000u64), "1,000");
        assert_eq!(super::count(1_234_567u64), "1,234,567");
        assert_eq!(super::count(u64::MAX), "18,446,744,073,709,551,615");
        let mut project = super::Project::default();
        project
            .blocks
            .push(super::Block::new_code("b", "", super::Position::default()));
        assert_eq!(super::graph_size(&project), "1 block · 0 transitions");
    }

    #[test]
    fn durations_read_in_the_unit_that_fits() {
        assert_eq!(super::format_ms(0.0004), "< 1 µs");
        assert_eq!(super::format_ms(0.005), "5 µs");
        assert_eq!(super::format_ms(61.2), "61 ms");
        assert_eq!(super::format_ms(2003.3), "2.00 s");
        assert_eq!(super::format_ms(185_000.0), "3 min 5 s");
    }
}
