//! Reading and writing project files (Braid's own format and Refinery exports).
//!
//! The format is told by the content, not the file name: a Braid project has `format_version`; a
//! Refinery export has `workflow_states`/`workflow_relationships` or a `diagram_data` wrapper. Loading
//! only parses: it never runs any of the project's code. The file format is described in
//! `docs/project-format.md`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::project::{FORMAT_VERSION, Project};
use super::{layout, refinery, text_file};

/// Where a loaded project came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Braid,
    Refinery,
}

#[derive(Clone, Debug)]
pub struct LoadedProject {
    pub project: Project,
    pub origin: Origin,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file can't be read as text (see [`text_file::read`]).
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: text_file::ReadError,
    },
    /// Invalid JSON (or bytes that are not UTF-8), with 1-based line and column.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// Valid JSON that is neither a Braid project nor a Refinery export, or one with bad fields.
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
}

#[derive(Debug, thiserror::Error)]
#[error("could not save {path}: {source}")]
pub struct SaveError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Loads the project file at `path`: a regular file of at most [`text_file::MAX_BYTES`], in UTF-8.
pub fn load_project(path: &Path) -> Result<LoadedProject, LoadError> {
    let text = text_file::read(path, text_file::Links::Follow).map_err(|source| {
        match source.position() {
            // Where the first bad byte is, as a JSON error says where it went wrong.
            Some((line, column)) => LoadError::Syntax {
                path: path.to_owned(),
                line,
                column,
                message: source.to_string(),
            },
            None => LoadError::Io {
                path: path.to_owned(),
                source,
            },
        }
    })?;
    parse_project(&text, path)
}

/// Parses a project file's text; `path` is only used in error messages.
pub fn parse_project(text: &str, path: &Path) -> Result<LoadedProject, LoadError> {
    let format_error = |message: String| LoadError::Format {
        path: path.to_owned(),
        message,
    };
    // Some Windows editors start UTF-8 files with a byte order mark, which JSON doesn't allow.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let value: Value = serde_json::from_str(text).map_err(|e| LoadError::Syntax {
        path: path.to_owned(),
        line: e.line(),
        column: e.column(),
        message: without_position(&e),
    })?;
    let Some(object) = value.as_object() else {
        return Err(format_error(
            "not a project file: expected a JSON object at the top".to_owned(),
        ));
    };

    if let Some(version) = object.get("format_version") {
        check_format_version(version).map_err(format_error)?;
        // Deserialise from the text (not the value) so that serde's messages carry line and column.
        let mut project: Project = serde_json::from_str(text)
            .map_err(|e| format_error(format!("not a valid Braid project: {e}")))?;
        // Older versions would be migrated here; what is in memory is always the current format.
        project.format_version = FORMAT_VERSION;
        place_unplaced_blocks(&mut project, &value);
        return Ok(LoadedProject {
            project,
            origin: Origin::Braid,
        });
    }

    if refinery::looks_like_refinery(&value) {
        let mut project = refinery::import(&value)
            .map_err(|e| format_error(format!("not a valid Refinery export: {e}")))?;
        // Refinery exports carry no positions.
        layout::auto_layout(&mut project);
        return Ok(LoadedProject {
            project,
            origin: Origin::Refinery,
        });
    }

    Err(format_error(
        "neither a Braid project (it has no \"format_version\") nor a Refinery export (it has \
         no \"workflow_states\")"
            .to_owned(),
    ))
}

/// Blocks written without a `"position"` (a project made by a script or by hand) would all sit on top of
/// each other at the origin. They get the automatic layout's places instead: all of it when no block
/// has a position, else below the blocks that have one.
fn place_unplaced_blocks(project: &mut Project, value: &Value) {
    let unplaced: Vec<bool> = (0..project.blocks.len())
        .map(|i| value["blocks"][i].get("position").is_none())
        .collect();
    if !unplaced.contains(&true) {
        return;
    }
    let mut laid_out = project.clone();
    layout::auto_layout(&mut laid_out);
    let below = project
        .blocks
        .iter()
        .zip(&unplaced)
        .filter(|(_, unplaced)| !**unplaced)
        .map(|(block, _)| block.position.y + layout::ROW_SPACING)
        .reduce(f32::max);
    for ((block, placed), &unplaced) in project
        .blocks
        .iter_mut()
        .zip(&laid_out.blocks)
        .zip(&unplaced)
    {
        if unplaced {
            block.position = placed.position;
            block.position.y += below.unwrap_or(0.0);
        }
    }
}

fn check_format_version(version: &Value) -> Result<(), String> {
    match version.as_u64() {
        Some(v) if v > u64::from(FORMAT_VERSION) => Err(format!(
            "this project was saved by a newer Braid (format version {v}; this build reads up to \
             version {FORMAT_VERSION}); update Braid to open it"
        )),
        Some(0) | None => Err(format!(
            "\"format_version\" must be a whole number from 1 to {FORMAT_VERSION}, not {version}"
        )),
        Some(_) => Ok(()),
    }
}

/// `serde_json`'s message without its " at line L column C" tail, which `LoadError::Syntax` carries apart.
fn without_position(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let tail = format!(" at line {} column {}", error.line(), error.column());
    message
        .strip_suffix(&tail)
        .map_or_else(|| message.clone(), str::to_owned)
}

/// The project as Braid writes it: pretty JSON (2-space indent) in struct field order and vectors in
/// stored order, ending in a newline. The same project always gives the same bytes.
pub fn to_json_string(project: &Project) -> String {
    // JSON has no NaN or infinity (serde_json would write `null`, which then can't be read back as a
    // position), so a broken position is written as 0 rather than making the file unloadable.
    let sanitised;
    let project = if project
        .blocks
        .iter()
        .any(|b| !b.position.x.is_finite() || !b.position.y.is_finite())
    {
        let mut copy = project.clone();
        for block in &mut copy.blocks {
            for coordinate in [&mut block.position.x, &mut block.position.y] {
                if !coordinate.is_finite() {
                    *coordinate = 0.0;
                }
            }
        }
        sanitised = copy;
        &sanitised
    } else {
        project
    };
    let mut text = serde_json::to_string_pretty(project)
        .expect("a Project always serialises: all its maps have string keys");
    text.push('\n');
    text
}

/// Saves atomically: the text goes to a temporary file beside the target, is flushed to disk, and then
/// replaces the target in one rename. On any failure the old file is left as it was.
pub fn save_project(path: &Path, project: &Project) -> Result<(), SaveError> {
    write_atomically(path, to_json_string(project).as_bytes(), 0o666).map_err(|source| SaveError {
        path: path.to_owned(),
        source,
    })
}

/// Replaces the file at `path` with `bytes` in one rename, after flushing them to disk: on any failure
/// the old file is left as it was. A new file gets `new_mode` (subject to the umask); an existing one
/// keeps its permissions. Writing through a symlink updates the file it points to.
pub fn write_atomically(path: &Path, bytes: &[u8], new_mode: u32) -> std::io::Result<()> {
    let target = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => std::fs::canonicalize(path)?,
        _ => path.to_owned(),
    };
    let dir = match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let file_name = target
        .file_name()
        .map_or_else(|| "project".into(), |n| n.to_string_lossy().into_owned());

    let mut builder = tempfile::Builder::new();
    // A name that tells what a leftover is, should the machine crash between write and rename.
    let prefix = format!(".{file_name}.");
    builder.prefix(&prefix).suffix(".tmp");
    let existing_permissions = std::fs::metadata(&target).ok().map(|m| m.permissions());
    #[cfg(unix)]
    if existing_permissions.is_none() {
        use std::os::unix::fs::PermissionsExt as _;
        // Not tempfile's private 0600 unless asked for: like any newly created file.
        builder.permissions(std::fs::Permissions::from_mode(new_mode));
    }
    #[cfg(not(unix))]
    let _ = new_mode;
    let mut temp = builder.tempfile_in(&dir)?;
    if let Some(permissions) = existing_permissions {
        temp.as_file().set_permissions(permissions)?;
    }
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(&target).map_err(|e| e.error)?;
    // Make the rename itself durable; not every platform or file system can sync a directory, and the
    // new content is already safely in place, so a failure here is not reported.
    #[cfg(unix)]
    if let Ok(dir) = std::fs::File::open(&dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::project::{Block, Position};

    fn parse(text: &str) -> Result<LoadedProject, LoadError> {
        parse_project(text, Path::new("p.json"))
    }

    fn format_message(text: &str) -> String {
        match parse(text) {
            Err(LoadError::Format { message, .. }) => message,
            other => panic!("expected a format error, got {other:?}"),
        }
    }

    /// A project written without positions is laid out rather than stacked at the origin; one that
    /// has them keeps them, and blocks added without one go below the others.
    #[test]
    fn blocks_without_a_position_are_laid_out() {
        let text = |positions: [Option<(f32, f32)>; 3]| {
            let blocks: Vec<Value> = ["a", "b", "c"]
                .iter()
                .zip(positions)
                .map(|(id, at)| {
                    let mut block =
                        serde_json::json!({"id": id, "name": id, "kind": "code", "code": ""});
                    if let Some((x, y)) = at {
                        block["position"] = serde_json::json!({"x": x, "y": y});
                    }
                    block
                })
                .collect();
            serde_json::json!({"format_version": 1, "name": "p", "blocks": blocks, "transitions": [
                {"id": "t1", "from": "a", "to": "b", "type": "then"},
                {"id": "t2", "from": "b", "to": "c", "type": "then"}]})
            .to_string()
        };
        let at = |text: String| -> Vec<(f32, f32)> {
            parse(&text)
                .unwrap()
                .project
                .blocks
                .iter()
                .map(|b| (b.position.x, b.position.y))
                .collect()
        };
        let none = at(text([None, None, None]));
        assert!(none[0].0 < none[1].0 && none[1].0 < none[2].0, "{none:?}");
        let all = [Some((5.0, 6.0)), Some((7.0, 8.0)), Some((9.0, 10.0))];
        assert_eq!(at(text(all)), [(5.0, 6.0), (7.0, 8.0), (9.0, 10.0)]);
        let some = at(text([Some((0.0, 500.0)), Some((300.0, 500.0)), None]));
        assert_eq!(&some[..2], [(0.0, 500.0), (300.0, 500.0)]);
        assert!(some[2].1 >= 500.0 + layout::ROW_SPACING, "{some:?}");
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let Err(LoadError::Syntax {
            line,
            column,
            message,
            ..
        }) = parse("{\n  \"format_version\": 1,\n  \"name\": oops\n}")
        else {
            panic!("expected a syntax error");
        };
        assert_eq!((line, column), (3, 11));
        assert_eq!(message, "expected value");
    }

    #[test]
    fn detects_braid_and_refinery() {
        let braid = parse("{\"format_version\": 1, \"name\": \"B\"}").expect("loads");
        assert_eq!(braid.origin, Origin::Braid);
        assert_eq!(braid.project.name, "B");
        let refinery =
            parse("{\"name\": \"R\", \"workflow_states\": [], \"version\": 1}").expect("loads");
        assert_eq!(refinery.origin, Origin::Refinery);
        assert!(format_message("{\"name\": \"x\", \"version\": \"1.0.0\"}").contains("neither"));
        assert!(format_message("[1, 2]").contains("JSON object"));
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let loaded = parse("\u{feff}{\"format_version\": 1, \"name\": \"B\"}").expect("loads");
        assert_eq!(loaded.project.name, "B");
    }

    #[test]
    fn newer_format_version_is_refused() {
        let message = format_message("{\"format_version\": 2, \"name\": \"B\"}");
        assert!(message.contains("newer Braid"), "{message}");
        let message = format_message("{\"format_version\": \"one\", \"name\": \"B\"}");
        assert!(message.contains("whole number"), "{message}");
    }

    #[test]
    fn unknown_fields_are_format_errors() {
        let message = format_message("{\"format_version\": 1, \"name\": \"B\", \"colour\": 1}");
        assert!(message.contains("unknown field `colour`"), "{message}");
        let block = r#"{"format_version": 1, "name": "B", "blocks": [
            {"id": "a", "name": "A", "kind": "code", "timeout": 5}]}"#;
        let message = format_message(block);
        assert!(message.contains("unknown field `timeout`"), "{message}");
        let message = format_message(
            r#"{"format_version": 1, "name": "B", "settings": {"concurrency_limit": -1}}"#,
        );
        assert!(message.contains("invalid value"), "{message}");
    }

    #[test]
    fn output_is_pretty_with_a_trailing_newline() {
        let mut project = Project::default();
        project
            .blocks
            .push(Block::new_code("A", "x", Position { x: 1.5, y: 2.0 }));
        let text = to_json_string(&project);
        assert!(
            text.starts_with("{\n  \"format_version\": 1,\n  \"name\": "),
            "{text}"
        );
        assert!(text.ends_with("}\n"));
        let back = parse(&text).expect("loads").project;
        assert_eq!(back, project);
        assert_eq!(to_json_string(&back), text);
    }

    #[test]
    fn non_finite_positions_still_save_loadably() {
        let mut project = Project::default();
        project.blocks.push(Block::new_code(
            "A",
            "x",
            Position {
                x: f32::NAN,
                y: f32::INFINITY,
            },
        ));
        let back = parse(&to_json_string(&project)).expect("loads").project;
        assert_eq!(back.blocks[0].position, Position::default());
    }
}
