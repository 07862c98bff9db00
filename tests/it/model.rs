//! Model integration tests: the real Refinery exports in `tests/fixtures/refinery-examples`, the Braid
//! file format, round trips and atomic saving.

use std::path::{Path, PathBuf};

use braid::model::format::{self, LoadError, Origin};
use braid::model::validate::{self, Severity};
use braid::model::{BlockKind, Language, Project, TransitionKind};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/refinery-examples")
}

fn fixture_paths() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("the fixtures directory exists")
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
}

fn load_fixture(name: &str) -> Project {
    let loaded = format::load_project(&fixtures_dir().join(name)).expect("the fixture loads");
    assert_eq!(loaded.origin, Origin::Refinery);
    loaded.project
}

fn block_named<'a>(project: &'a Project, name: &str) -> &'a braid::model::Block {
    project
        .blocks
        .iter()
        .find(|b| b.name == name)
        .unwrap_or_else(|| panic!("no block named {name:?}"))
}

fn unsupported_type(block: &braid::model::Block) -> Option<&str> {
    match &block.kind {
        BlockKind::Unsupported { refinery_type, .. } => Some(refinery_type),
        _ => None,
    }
}

#[test]
fn every_fixture_loads_is_laid_out_and_has_no_errors() {
    let paths = fixture_paths();
    assert_eq!(paths.len(), 5, "{paths:?}");
    for path in paths {
        let loaded = format::load_project(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded.origin, Origin::Refinery, "{}", path.display());
        let project = loaded.project;
        assert!(!project.blocks.is_empty(), "{}", path.display());

        let mut positions: Vec<(u32, u32)> = project
            .blocks
            .iter()
            .map(|b| (b.position.x.to_bits(), b.position.y.to_bits()))
            .collect();
        positions.sort_unstable();
        positions.dedup();
        assert_eq!(
            positions.len(),
            project.blocks.len(),
            "overlapping blocks in {}",
            path.display()
        );

        let errors: Vec<_> = validate::validate(&project)
            .into_iter()
            .filter(|p| p.severity == Severity::Error)
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
    }
}

#[test]
fn hello_world_fanout_maps_blocks_and_transitions() {
    let project = load_fixture("hello-world-fanout.json");
    assert_eq!(
        project.name,
        "Refinery Example Project: API Endpoint With Fan-out/Fan-in"
    );
    assert_eq!(project.blocks.len(), 5);
    let kinds: Vec<TransitionKind> = project.transitions.iter().map(|t| t.kind).collect();
    assert_eq!(
        kinds,
        [
            TransitionKind::Then,
            TransitionKind::FanOut,
            TransitionKind::FanIn,
            TransitionKind::Then
        ]
    );
    // Ids are kept exactly, so transitions still point at the right blocks.
    let fan_out = &project.transitions[1];
    assert_eq!(&*fan_out.id.0, "690be531-3c08-45cc-a80e-bec46cc34c7b");
    assert_eq!(
        project.block_name(&fan_out.from),
        "Create Array of Data for Fan Out"
    );
    assert_eq!(project.block_name(&fan_out.to), "Process Individual Item");

    assert_eq!(
        block_named(&project, "API Endpoint Block").kind,
        BlockKind::ApiEndpoint {
            api_path: "/fanout".into(),
            http_method: "GET".into(),
            timeout_s: 29
        }
    );
    assert_eq!(
        block_named(&project, "API Endpoint Response Block").kind,
        BlockKind::ApiResponse
    );
    let code = block_named(&project, "Create Array of Data for Fan Out")
        .code()
        .expect("a code block");
    assert_eq!(code.language, Language::Python);
    assert_eq!(
        code.code,
        "\ndef main(block_input, backpack):\n    return [1,2,3]\n"
    );
    assert_eq!(code.timeout_s, 900);
    assert_eq!(code.concurrency_cap, None);

    // Columns follow the flow: endpoint, then the fan-out source, then the item block, ...
    let x = |name| block_named(&project, name).position.x;
    assert!(x("API Endpoint Block") < x("Create Array of Data for Fan Out"));
    assert!(x("Create Array of Data for Fan Out") < x("Process Individual Item"));
    assert!(x("Process Individual Item") < x("Collect Data (Fan In)"));
    assert!(x("Collect Data (Fan In)") < x("API Endpoint Response Block"));
}

#[test]
fn dev_workflow_intro_keeps_the_nodejs_block_and_readme() {
    let project = load_fixture("dev-workflow-intro.json");
    let node = block_named(&project, "Hello World Code Block");
    let code = node.code().expect("a code block");
    assert_eq!(code.language, Language::Other("nodejs8.10".into()));
    assert!(
        code.code
            .contains("async function main(blockInput, backpack)")
    );
    assert!(project.readme.starts_with("# Untitled Project README"));

    let problems = validate::validate(&project);
    let warning = problems
        .iter()
        .find(|p| {
            p.message
                .starts_with("Node.js block \"Hello World Code Block\" can't run yet")
        })
        .unwrap_or_else(|| panic!("no Node.js warning in {problems:#?}"));
    assert_eq!(warning.severity, Severity::Warning);
}

#[test]
fn deployment_request_unwraps_diagram_data() {
    let project = load_fixture("all-block-types.deployment-request.json");
    assert_eq!(project.name, "test");
    assert_eq!(project.blocks.len(), 9);
    assert_eq!(project.transitions.len(), 2);

    // Every block type of Refinery's is one of Braid's.
    assert_eq!(
        project.blocks.iter().filter_map(unsupported_type).count(),
        0
    );
    assert_eq!(
        block_named(&project, "Untitled Queue Block").kind,
        BlockKind::Queue { batch_size: 1 }
    );
    assert_eq!(
        block_named(&project, "Untitled Timer Block").kind,
        BlockKind::Timer {
            schedule_expression: "rate(2 minutes)".into(),
            input_string: String::new(),
            description: "Deployed by Refinery".into()
        }
    );
    assert_eq!(
        block_named(&project, "Untitled Topic Block").kind,
        BlockKind::Topic
    );

    let clone = block_named(&project, "Clone Repository and Find Secrets")
        .code()
        .expect("a code block");
    assert_eq!(clone.language, Language::Python);
    assert_eq!(clone.libraries, ["gitpython"]);
    let node_blocks = project
        .blocks
        .iter()
        .filter(|b| {
            b.code()
                .is_some_and(|c| c.language == Language::Other("nodejs8.10".into()))
        })
        .count();
    assert_eq!(node_blocks, 2);
}

#[test]
fn timer_example_and_api_endpoint_examples() {
    let timer = load_fixture("timer-example.json");
    assert_eq!(timer.blocks.len(), 3);
    assert!(matches!(
        &block_named(&timer, "Every Day").kind,
        BlockKind::Timer { schedule_expression, .. } if schedule_expression == "rate(1 day)"
    ));
    // A fan-out without a fan-in (map without reduce) is valid.
    assert_eq!(timer.transitions[1].kind, TransitionKind::FanOut);

    let api = load_fixture("api-endpoint-hello-world.json");
    assert_eq!((api.blocks.len(), api.transitions.len()), (4, 3));
    let say_hello = block_named(&api, "Say Hello").code().expect("a code block");
    assert_eq!(say_hello.language, Language::Python);
    assert!(
        say_hello
            .code
            .contains("return \"Hello \" + block_input + \"!\"")
    );
    assert_eq!(api.entry_blocks().len(), 1);
    assert_eq!(api.entry_blocks()[0].name, "API Endpoint Block");
}

#[test]
fn import_save_load_round_trips_and_saves_identically() {
    let dir = tempfile::tempdir().expect("a temp dir");
    for path in fixture_paths() {
        let imported = format::load_project(&path).expect("loads").project;
        let saved = dir.path().join("project.braid.json");
        format::save_project(&saved, &imported).expect("saves");
        let first = std::fs::read(&saved).expect("readable");

        let reloaded = format::load_project(&saved).expect("reloads");
        assert_eq!(reloaded.origin, Origin::Braid, "{}", path.display());
        assert_eq!(reloaded.project, imported, "{}", path.display());

        format::save_project(&saved, &reloaded.project).expect("saves again");
        let second = std::fs::read(&saved).expect("readable");
        assert!(
            first == second,
            "saving twice changed the bytes for {}",
            path.display()
        );
        assert_eq!(format::to_json_string(&reloaded.project).as_bytes(), first);
    }
}

/// A Braid file as Braid writes it: this pins the field order and the layout of the format.
const CANONICAL: &str = r#"{
  "format_version": 1,
  "name": "Squares",
  "settings": {
    "concurrency_limit": 50
  },
  "blocks": [
    {
      "id": "split",
      "name": "Split",
      "position": {
        "x": 0.0,
        "y": 0.0
      },
      "kind": "code",
      "language": "python",
      "code": "def main(block_input, backpack):\n    return list(range(block_input))\n",
      "timeout_s": 900
    },
    {
      "id": "square",
      "name": "Square",
      "position": {
        "x": 260.0,
        "y": 0.0
      },
      "kind": "code",
      "language": "python",
      "code": "import os\n\ndef main(block_input, backpack):\n    return block_input ** 2\n",
      "timeout_s": 30,
      "concurrency_cap": 8,
      "libraries": [
        "numpy==2.1.*"
      ],
      "env_vars": [
        "API_TOKEN"
      ]
    },
    {
      "id": "hook",
      "name": "Hook",
      "position": {
        "x": 520.0,
        "y": 140.0
      },
      "kind": "unsupported",
      "refinery_type": "sns_topic",
      "original": {
        "type": "sns_topic",
        "id": "hook",
        "name": "Hook"
      }
    },
    {
      "id": "collect",
      "name": "Collect",
      "position": {
        "x": 520.0,
        "y": 0.0
      },
      "kind": "code",
      "language": {
        "other": "nodejs8.10"
      },
      "code": "",
      "timeout_s": 900
    }
  ],
  "transitions": [
    {
      "id": "t1",
      "from": "split",
      "to": "square",
      "type": "fan-out"
    },
    {
      "id": "t2",
      "from": "square",
      "to": "collect",
      "type": "fan-in"
    },
    {
      "id": "t3",
      "from": "square",
      "to": "hook",
      "type": "if",
      "expression": "return_data > 10"
    }
  ],
  "readme": "Squares numbers."
}
"#;

#[test]
fn a_braid_file_round_trips_byte_identically() {
    let loaded = format::parse_project(CANONICAL, Path::new("squares.json")).expect("loads");
    assert_eq!(loaded.origin, Origin::Braid);
    let project = &loaded.project;
    assert_eq!(project.settings.concurrency_limit, 50);
    let square = project.blocks[1].code().expect("a code block");
    assert_eq!((square.timeout_s, square.concurrency_cap), (30, Some(8)));
    assert_eq!(square.env_vars, ["API_TOKEN"]);
    assert_eq!(project.transitions[2].expression, "return_data > 10");
    assert_eq!(format::to_json_string(project), CANONICAL);
}

#[test]
fn corrupt_json_reports_line_and_column() {
    let path = fixtures_dir().join("hello-world-fanout.json");
    let text = std::fs::read_to_string(&path).expect("readable");
    // Drop the comma after the first transition's `"version": "1.0.0"` line.
    let needle = "\"version\": \"1.0.0\",";
    let at = text.find(needle).expect("the fixture has a version line") + needle.len() - 1;
    let corrupt = format!("{}{}", &text[..at], &text[at + 1..]);
    // serde_json stops at the next key, on the following line, after its indentation.
    let next_line = text[..at].lines().count() + 1;
    let next_line_text = text.lines().nth(next_line - 1).expect("a next line");
    let column = next_line_text.len() - next_line_text.trim_start().len() + 1;

    match format::parse_project(&corrupt, &path) {
        Err(LoadError::Syntax {
            line,
            column: got_column,
            ref message,
            ..
        }) => {
            assert_eq!((line, got_column), (next_line, column), "{message}");
            assert_eq!(message, "expected `,` or `}`");
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
    let shown = format::parse_project(&corrupt, &path)
        .expect_err("corrupt")
        .to_string();
    assert!(
        shown.ends_with(&format!(
            "hello-world-fanout.json:{next_line}:{column}: expected `,` or `}}`"
        )),
        "{shown}"
    );
}

#[test]
fn an_empty_or_truncated_file_is_a_syntax_error() {
    for text in ["", "{\"format_version\": 1, \"name\": \"x\""] {
        let err = format::parse_project(text, Path::new("t.json")).expect_err("invalid");
        assert!(matches!(err, LoadError::Syntax { line: 1, .. }), "{err:?}");
    }
}

#[test]
fn a_missing_file_is_an_io_error() {
    let err =
        format::load_project(Path::new("/nonexistent/braid/project.json")).expect_err("missing");
    assert!(matches!(err, LoadError::Io { .. }), "{err:?}");
}

#[test]
fn atomic_save_replaces_content_and_leaves_no_temp_files() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let target = dir.path().join("pipeline.json");
    std::fs::write(
        &target,
        "old content that is much longer than nothing at all",
    )
    .expect("writes");

    let project = Project {
        name: "Replaced".into(),
        ..Project::default()
    };
    format::save_project(&target, &project).expect("saves");

    assert_eq!(
        std::fs::read_to_string(&target).expect("readable"),
        format::to_json_string(&project)
    );
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("listable")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["pipeline.json"]);
}

#[cfg(unix)]
#[test]
fn atomic_save_keeps_the_file_mode() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("a temp dir");
    let target = dir.path().join("shared.json");
    std::fs::write(&target, "{}").expect("writes");
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    format::save_project(&target, &Project::default()).expect("saves");
    let mode = std::fs::metadata(&target)
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
}

#[test]
fn a_failed_save_leaves_the_old_file_intact() {
    let dir = tempfile::tempdir().expect("a temp dir");
    // A name just short of the usual 255-byte limit: the target can exist, but the temporary file's
    // longer name can't be created, so the save fails before anything is written.
    let target = dir.path().join(format!("{}.json", "p".repeat(245)));
    std::fs::write(&target, "old").expect("writes");

    let err = format::save_project(&target, &Project::default()).expect_err("the save fails");
    assert!(err.to_string().starts_with("could not save"), "{err}");
    assert_eq!(std::fs::read_to_string(&target).expect("readable"), "old");
    assert_eq!(std::fs::read_dir(dir.path()).expect("listable").count(), 1);
}

#[test]
fn env_var_values_never_reach_the_file() {
    let export = r#"{"name": "Secrets", "version": 1, "workflow_relationships": [], "workflow_states": [
        {"id": "a", "name": "A", "type": "lambda", "language": "python3.6", "code": "",
         "environment_variables": {"k1": {"name": "DB_PASSWORD", "value": "hunter2", "required": true}}}
    ]}"#;
    let project = format::parse_project(export, Path::new("secrets.json"))
        .expect("loads")
        .project;
    assert_eq!(
        project.blocks[0].code().expect("a code block").env_vars,
        ["DB_PASSWORD"]
    );
    let text = format::to_json_string(&project);
    assert!(
        text.contains("DB_PASSWORD") && !text.contains("hunter2"),
        "{text}"
    );
}
