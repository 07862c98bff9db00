//! Environment variable values live outside the project file, so a shared project never carries
//! secrets. They sit in `.braid/<project file name>.env` beside the project (the `.braid/` folder is
//! meant to stay out of version control), in dotenv form: `NAME=value` lines, `#` comments, optional
//! `export ` and quotes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where a project's values file is.
pub fn path_for_project(project_file: &Path) -> PathBuf {
    let dir = project_file.parent().unwrap_or_else(|| Path::new("."));
    let name = project_file
        .file_name()
        .map_or_else(|| "project".into(), |n| n.to_string_lossy().into_owned());
    dir.join(".braid").join(format!("{name}.env"))
}

/// Parses dotenv text. Malformed lines are returned as problems (1-based line numbers), not errors:
/// one typo must not hide every other value.
pub fn parse(text: &str) -> (BTreeMap<String, String>, Vec<(usize, String)>) {
    let mut values = BTreeMap::new();
    let mut problems = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((name, value)) = line.split_once('=') else {
            problems.push((n + 1, format!("expected NAME=value, got {raw:?}")));
            continue;
        };
        let name = name.trim();
        if name.is_empty()
            || name.starts_with(|c: char| c.is_ascii_digit())
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            problems.push((n + 1, format!("{name:?} is not a variable name")));
            continue;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        values.insert(name.to_owned(), value.to_owned());
    }
    (values, problems)
}

/// The values a run gets: the process environment, overridden by the project's values file (if the
/// project has a file and the values file exists). Problems in the file come back as messages.
pub fn values_for(project_file: Option<&Path>) -> (BTreeMap<String, String>, Vec<String>) {
    let mut values: BTreeMap<String, String> = std::env::vars().collect();
    let mut problems = Vec::new();
    if let Some(project_file) = project_file {
        let path = path_for_project(project_file);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let (file_values, file_problems) = parse(&text);
                values.extend(file_values);
                problems.extend(
                    file_problems
                        .into_iter()
                        .map(|(line, message)| format!("{}:{line}: {message}", path.display())),
                );
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => problems.push(format!("{}: {e}", path.display())),
        }
    }
    (values, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dotenv_lines() {
        let (values, problems) = parse(
            "# secrets\nAPI_KEY=abc123\nexport REGION = \"eu-west-1\"\nQUOTED='a b'\nbad line\n1X=2\n",
        );
        assert_eq!(values["API_KEY"], "abc123");
        assert_eq!(values["REGION"], "eu-west-1");
        assert_eq!(values["QUOTED"], "a b");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(problems[0].0, 5);
        assert!(!values.contains_key("1X"));
    }

    #[test]
    fn values_file_sits_in_the_braid_folder() {
        assert_eq!(
            path_for_project(Path::new("/p/pipeline.braid.json")),
            PathBuf::from("/p/.braid/pipeline.braid.json.env")
        );
    }
}
