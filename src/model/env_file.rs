//! Environment variable values live outside the project file, so a shared project never carries
//! secrets. They sit in `.braid/<project file name>.env` beside the project (the `.braid/` folder is
//! meant to stay out of version control), in dotenv form: `NAME=value` lines, `#` comments, optional
//! `export ` and quotes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::text_file::{self, Links, ReadError};

/// Where a project's values file is.
pub fn path_for_project(project_file: &Path) -> PathBuf {
    super::local_folder::file_for_project(project_file, ".env")
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
        if !is_name(name) {
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

/// A name a variable can have: letters, digits and `_`, not starting with a digit.
pub fn is_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The values a run gets: the process environment, overridden by the project's values file (if the
/// project has a file and the values file exists). Problems in the file come back as messages.
pub fn values_for(project_file: Option<&Path>) -> (BTreeMap<String, String>, Vec<String>) {
    let mut values: BTreeMap<String, String> = std::env::vars().collect();
    let (file_values, problems) = project_file.map(file_values).unwrap_or_default();
    values.extend(file_values);
    (values, problems)
}

/// The values in the project's values file alone (none when it does not exist), and its problems as
/// messages.
pub fn file_values(project_file: &Path) -> (BTreeMap<String, String>, Vec<String>) {
    let path = path_for_project(project_file);
    match read(&path) {
        Ok(text) => {
            let (values, problems) = parse(&text);
            let problems = problems
                .into_iter()
                .map(|(line, message)| format!("{}:{line}: {message}", path.display()))
                .collect();
            (values, problems)
        }
        Err(e) if is_not_found(&e) => (BTreeMap::new(), Vec::new()),
        Err(e) => (BTreeMap::new(), vec![read_problem(&path, &e)]),
    }
}

/// The values file's text: a regular file in Braid's folder, never through a link (a shared project
/// whose `.braid` links to another project's would hand its blocks that project's secrets).
fn read(path: &Path) -> Result<String, ReadError> {
    super::local_folder::check_folder_of(path)?;
    text_file::read(path, Links::Refuse)
}

fn is_not_found(error: &ReadError) -> bool {
    matches!(error, ReadError::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
}

/// `path[:line:column]: what is wrong`.
fn read_problem(path: &Path, error: &ReadError) -> String {
    match error.position() {
        Some((line, column)) => format!("{}:{line}:{column}: {error}", path.display()),
        None => format!("{}: {error}", path.display()),
    }
}

/// The variables that blocks declare but that have no value in `values`, as messages naming the block
/// (its code would not find them in `os.environ`).
pub fn missing_values(project: &super::Project, values: &BTreeMap<String, String>) -> Vec<String> {
    project
        .blocks
        .iter()
        .filter_map(|block| Some((block, block.code()?)))
        .flat_map(|(block, code)| {
            code.env_vars
                .iter()
                .filter(|name| !values.contains_key(*name))
                .map(move |name| {
                    format!(
                        "block \"{}\" declares {name}, which has no value",
                        block.name
                    )
                })
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum SetValueError {
    #[error("{0:?} is not a variable name (letters, digits and _, not starting with a digit)")]
    BadName(String),
    #[error("the value of {0} has a line break; a values file holds one line per variable")]
    LineBreak(String),
    #[error("could not write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not read {}", read_problem(path, source))]
    Read { path: PathBuf, source: ReadError },
}

/// Sets (or, with `None`, removes) one variable's value in the project's values file, creating the file
/// and its folder when needed. Other lines, comments included, stay as they are. The file is replaced
/// atomically and, when new, readable by its owner only: it holds secrets.
pub fn save_value(
    project_file: &Path,
    name: &str,
    value: Option<&str>,
) -> Result<(), SetValueError> {
    let path = path_for_project(project_file);
    let text = match read(&path) {
        Ok(text) => text,
        Err(e) if is_not_found(&e) => String::new(),
        Err(source) => return Err(SetValueError::Read { path, source }),
    };
    let text = set_in_text(&text, name, value)?;
    write_values_file(&path, text.as_bytes())
}

/// After Save As: gives the project's new file name the values of its old one, so that its blocks
/// still find their variables. Nothing happens when the old name had no values file, or the new name
/// has one already (the values kept for that name win). Returns whether values were copied.
pub fn carry_over(from_project: &Path, to_project: &Path) -> Result<bool, SetValueError> {
    let from = path_for_project(from_project);
    let to = path_for_project(to_project);
    if from == to || to.exists() {
        return Ok(false);
    }
    let text = match super::local_folder::check_folder_of(&from)
        .map_err(ReadError::from)
        .and_then(|()| text_file::read_bytes(&from, Links::Refuse))
    {
        Ok(text) => text,
        Err(e) if is_not_found(&e) => return Ok(false),
        Err(source) => return Err(SetValueError::Read { path: from, source }),
    };
    write_values_file(&to, &text)?;
    Ok(true)
}

/// Writes a values file, making its folder when needed: atomically, and readable by its owner only
/// (it holds secrets); never through a link (see `local_folder`).
fn write_values_file(path: &Path, bytes: &[u8]) -> Result<(), SetValueError> {
    let io = |source| SetValueError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        super::local_folder::ensure(dir).map_err(io)?;
    }
    super::local_folder::check_private_file(path).map_err(io)?;
    super::format::write_atomically(path, bytes, 0o600).map_err(io)
}

/// `text` (a values file) with `name` set to `value`: its line replaced where it was (later lines for
/// the same name, which would win, are dropped), or added at the end; `None` removes it.
pub fn set_in_text(text: &str, name: &str, value: Option<&str>) -> Result<String, SetValueError> {
    if !is_name(name) {
        return Err(SetValueError::BadName(name.to_owned()));
    }
    let line = match value {
        Some(value) if value.contains(['\n', '\r']) => {
            return Err(SetValueError::LineBreak(name.to_owned()));
        }
        Some(value) => Some(format!("{name}={}", quoted(value))),
        None => None,
    };
    let mut out = String::with_capacity(text.len() + 64);
    let mut pending = line;
    let mut found = false;
    for raw in text.lines() {
        let trimmed = raw.trim();
        let defines = !trimmed.starts_with('#')
            && trimmed
                .strip_prefix("export ")
                .unwrap_or(trimmed)
                .split_once('=')
                .is_some_and(|(n, _)| n.trim() == name);
        if defines {
            found = true;
            if let Some(line) = pending.take() {
                out.push_str(&line);
                out.push('\n');
            }
            continue;
        }
        out.push_str(raw);
        out.push('\n');
    }
    if let (false, Some(line)) = (found, pending) {
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

/// A value as [`parse`] reads it back: double quotes around it when it has spaces at either end or is
/// itself wrapped in quotes (which would otherwise be taken off).
fn quoted(value: &str) -> String {
    let wrapped = |q: char| value.len() >= 2 && value.starts_with(q) && value.ends_with(q);
    if value != value.trim() || wrapped('"') || wrapped('\'') {
        format!("\"{value}\"")
    } else {
        value.to_owned()
    }
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
    fn setting_a_value_keeps_the_rest_of_the_file_and_reads_back() {
        let text = "# secrets\nAPI_KEY=old\nexport REGION=eu\nAPI_KEY=shadowed\n";
        let set = set_in_text(text, "API_KEY", Some("new")).unwrap();
        assert_eq!(set, "# secrets\nAPI_KEY=new\nexport REGION=eu\n");
        let added = set_in_text(&set, "TOKEN", Some("t")).unwrap();
        assert_eq!(added, "# secrets\nAPI_KEY=new\nexport REGION=eu\nTOKEN=t\n");
        let removed = set_in_text(&added, "REGION", None).unwrap();
        assert_eq!(removed, "# secrets\nAPI_KEY=new\nTOKEN=t\n");
        // A file without a final line break still gets its own line.
        assert_eq!(set_in_text("A=1", "B", Some("2")).unwrap(), "A=1\nB=2\n");

        for value in [
            "plain",
            " padded ",
            "\"quoted\"",
            "'single'",
            "a \"b\" c",
            "",
            "x=y#z",
        ] {
            let text = set_in_text("", "V", Some(value)).unwrap();
            assert_eq!(parse(&text).0["V"], value, "{text}");
        }
        assert!(matches!(
            set_in_text("", "V", Some("two\nlines")),
            Err(SetValueError::LineBreak(_))
        ));
        assert!(matches!(
            set_in_text("", "1BAD", Some("x")),
            Err(SetValueError::BadName(_))
        ));
    }

    /// The project's values file can be read by its owner alone.
    fn assert_owner_only(project: &Path) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(path_for_project(project))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
    }

    #[test]
    fn saved_values_are_private_to_their_owner_and_kept_out_of_git() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("p.braid.json");
        save_value(&project, "API_KEY", Some("s3cret")).unwrap();
        let (values, problems) = file_values(&project);
        assert_eq!(values["API_KEY"], "s3cret");
        assert!(problems.is_empty());
        assert!(dir.path().join(".braid/.gitignore").exists());
        assert_owner_only(&project);
        save_value(&project, "API_KEY", None).unwrap();
        assert!(file_values(&project).0.is_empty());
    }

    #[test]
    fn save_as_carries_the_values_to_the_new_name_without_overwriting() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("p.braid.json");
        let elsewhere = dir.path().join("copies").join("q.braid.json");
        save_value(&old, "API_KEY", Some("s3cret")).unwrap();
        assert!(carry_over(&old, &elsewhere).unwrap());
        assert_eq!(file_values(&elsewhere).0["API_KEY"], "s3cret");
        assert!(dir.path().join("copies/.braid/.gitignore").exists());
        assert_owner_only(&elsewhere);
        // The new name's own values win; a name with no values file carries nothing.
        save_value(&old, "API_KEY", Some("changed")).unwrap();
        assert!(!carry_over(&old, &elsewhere).unwrap());
        assert_eq!(file_values(&elsewhere).0["API_KEY"], "s3cret");
        assert!(!carry_over(&dir.path().join("none.braid.json"), &old).unwrap());
        assert_eq!(file_values(&old).0["API_KEY"], "changed");
    }

    #[test]
    fn declared_variables_without_a_value_are_named_with_their_block() {
        let mut project = super::super::Project::default();
        let mut block =
            super::super::Block::new_code("Call API", "", super::super::Position::default());
        block.code_mut().unwrap().env_vars = vec!["API_KEY".into(), "REGION".into()];
        project.blocks.push(block);
        let values = BTreeMap::from([("REGION".to_owned(), "eu".to_owned())]);
        assert_eq!(
            missing_values(&project, &values),
            ["block \"Call API\" declares API_KEY, which has no value"]
        );
    }

    #[test]
    fn values_file_sits_in_the_braid_folder() {
        assert_eq!(
            path_for_project(Path::new("/p/pipeline.braid.json")),
            PathBuf::from("/p/.braid/pipeline.braid.json.env")
        );
    }
}
