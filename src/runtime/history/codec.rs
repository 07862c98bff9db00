//! Format 1's item paths (read by the migration from format 1).

/// An item path as format 1 wrote it: every index followed by `.` (`[3, 7]` → `3.7.`, `[]` → the empty
/// text).
pub(super) fn parse_item_path(text: &str) -> Option<Vec<u32>> {
    text.split_terminator('.').map(|i| i.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_1_item_paths_parse() {
        assert_eq!(parse_item_path(""), Some(vec![]));
        assert_eq!(parse_item_path("3."), Some(vec![3]));
        assert_eq!(
            parse_item_path("0.31.4000000."),
            Some(vec![0, 31, 4_000_000])
        );
        assert_eq!(parse_item_path("x."), None);
    }
}
