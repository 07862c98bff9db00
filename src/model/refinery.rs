//! Import of Refinery exports.
//!
//! A Refinery export is a JSON object with `workflow_states` (the blocks) and `workflow_relationships`
//! (the transitions). A deployment request keeps that object under `diagram_data`, either nested or as
//! a JSON string. The mapping is documented in `docs/project-format.md`.

use serde_json::{Map, Value};

use super::project::{
    Block, BlockId, BlockKind, CodeBlock, DEFAULT_BATCH_SIZE, DEFAULT_ENDPOINT_TIMEOUT_S,
    DEFAULT_TIMEOUT_S, Language, MAX_TIMEOUT_S, Position, Project, Settings, Transition,
    TransitionId, TransitionKind,
};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ImportError(pub String);

/// The name an import gets when the export has none.
pub const UNNAMED_PROJECT: &str = "Imported Refinery project";

/// Whether `value` is shaped like a Refinery export. A lone `version` or `name` key is not enough:
/// plenty of unrelated JSON files (`package.json`) have those.
pub fn looks_like_refinery(value: &Value) -> bool {
    let Some(object) = value.as_object() else {
        return false;
    };
    object.contains_key("workflow_states")
        || object.contains_key("workflow_relationships")
        || matches!(
            object.get("diagram_data"),
            Some(Value::String(_) | Value::Object(_))
        )
}

pub fn import(value: &Value) -> Result<Project, ImportError> {
    let outer = value
        .as_object()
        .ok_or_else(|| ImportError("a Refinery export is a JSON object".to_owned()))?;
    // A deployment request wraps the project; its diagram is usually a JSON string inside the JSON.
    let parsed_diagram;
    let diagram = match outer.get("diagram_data") {
        Some(Value::String(text)) => {
            parsed_diagram = serde_json::from_str::<Value>(text)
                .map_err(|e| ImportError(format!("\"diagram_data\" is not valid JSON: {e}")))?;
            parsed_diagram
                .as_object()
                .ok_or_else(|| ImportError("\"diagram_data\" is not a JSON object".to_owned()))?
        }
        Some(Value::Object(inner)) => inner,
        _ => outer,
    };

    let name = [diagram, outer]
        .iter()
        .flat_map(|o| [o.get("name"), o.get("project_name")])
        .find_map(|v| v.and_then(Value::as_str).filter(|s| !s.trim().is_empty()))
        .unwrap_or(UNNAMED_PROJECT)
        .to_owned();
    let readme = diagram
        .get("readme")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();

    let blocks = array_field(diagram, "workflow_states")?
        .iter()
        .enumerate()
        .map(|(index, state)| import_block(index, state))
        .collect::<Result<Vec<_>, _>>()?;
    let transitions = array_field(diagram, "workflow_relationships")?
        .iter()
        .enumerate()
        .map(|(index, relationship)| import_transition(index, relationship))
        .collect::<Result<Vec<_>, _>>()?;

    Ok(Project {
        name,
        settings: Settings::default(),
        blocks,
        transitions,
        readme,
        ..Project::default()
    })
}

/// An array under `key`; missing or `null` counts as empty.
fn array_field<'a>(object: &'a Map<String, Value>, key: &str) -> Result<&'a [Value], ImportError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(ImportError(format!(
            "\"{key}\" should be a list, but it is {}",
            json_kind(other)
        ))),
    }
}

fn import_block(index: usize, state: &Value) -> Result<Block, ImportError> {
    let fields = as_entry(state, "block", "workflow_states", index)?;
    // Transitions refer to blocks by id, so a block without one can't be wired up.
    let id = fields
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ImportError(format!(
                "block {} in \"workflow_states\" has no \"id\"",
                index + 1
            ))
        })?
        .to_owned();
    let name = str_field(fields, "name").to_owned();
    let refinery_type = str_field(fields, "type");
    let kind = match refinery_type {
        "lambda" => BlockKind::Code(import_code(fields)),
        "api_endpoint" => BlockKind::ApiEndpoint {
            api_path: str_field(fields, "api_path").to_owned(),
            http_method: str_field(fields, "http_method").to_owned(),
            timeout_s: DEFAULT_ENDPOINT_TIMEOUT_S,
        },
        "api_gateway_response" => BlockKind::ApiResponse,
        "schedule_trigger" => BlockKind::Timer {
            schedule_expression: str_field(fields, "schedule_expression").to_owned(),
            input_string: str_field(fields, "input_string").to_owned(),
            description: str_field(fields, "description").to_owned(),
        },
        "sqs_queue" => BlockKind::Queue {
            batch_size: fields
                .get("batch_size")
                .and_then(whole_number)
                .map_or(DEFAULT_BATCH_SIZE, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        },
        "sns_topic" => BlockKind::Topic,
        other => BlockKind::Unsupported {
            refinery_type: other.to_owned(),
            original: state.clone(),
        },
    };
    Ok(Block {
        id: BlockId(id.into()),
        name,
        position: Position::default(),
        kind,
    })
}

fn import_code(fields: &Map<String, Value>) -> CodeBlock {
    // Refinery's first exports predate the language field, and they were all Python.
    let language = match fields.get("language").and_then(Value::as_str) {
        None => Language::Python,
        Some(lang) if lang.starts_with("python") => Language::Python,
        Some(lang) => Language::Other(lang.to_owned()),
    };
    // Past Braid's maximum (Lambda's own is 900 s, so such a number is no real setting; 1e308 has
    // been seen): the longest Braid allows, which is what it asked for.
    let timeout_s = fields
        .get("max_execution_time")
        .and_then(whole_number)
        .map_or(DEFAULT_TIMEOUT_S, |t| t.min(MAX_TIMEOUT_S));
    // Refinery writes `false` for "no reserved concurrency"; some front-end versions call it `amount`.
    let concurrency_cap = fields
        .get("reserved_concurrency_count")
        .or_else(|| fields.get("reserved_concurrency_amount"))
        .and_then(whole_number)
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    CodeBlock {
        language,
        code: str_field(fields, "code").to_owned(),
        timeout_s,
        concurrency_cap,
        libraries: fields.get("libraries").map(libraries).unwrap_or_default(),
        env_vars: fields
            .get("environment_variables")
            .map(env_var_names)
            .unwrap_or_default(),
        retries: None,
    }
}

/// Refinery stores libraries as a list of requirement strings; some exports use a map of
/// name → version instead (`"latest"` or an empty version means unpinned).
fn libraries(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Value::Object(map) => map
            .iter()
            .map(|(name, version)| match version.as_str().map(str::trim) {
                None | Some("" | "latest" | "*") => name.clone(),
                Some(v) if v.starts_with(['=', '<', '>', '~', '!']) => format!("{name}{v}"),
                Some(v) => format!("{name}=={v}"),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The names of a block's environment variables. Refinery keys them by a generated id, with the name
/// inside; the values live in the project config, and are deliberately not imported: secrets must not
/// end up in a project file.
fn env_var_names(value: &Value) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut add = |name: &str| {
        let name = name.trim();
        if !name.is_empty() && !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    };
    match value {
        Value::Object(map) => {
            for (key, variable) in map {
                add(variable.get("name").and_then(Value::as_str).unwrap_or(key));
            }
        }
        Value::Array(items) => {
            for item in items {
                if let Some(name) = item
                    .as_str()
                    .or_else(|| item.get("name").and_then(Value::as_str))
                {
                    add(name);
                }
            }
        }
        _ => {}
    }
    names
}

fn import_transition(index: usize, relationship: &Value) -> Result<Transition, ImportError> {
    let fields = as_entry(relationship, "transition", "workflow_relationships", index)?;
    // Nothing refers to a transition's id, so a missing one gets a stable stand-in rather than an error.
    let id = fields.get("id").and_then(Value::as_str).map_or_else(
        || format!("refinery-transition-{}", index + 1),
        str::to_owned,
    );
    let label = str_field(fields, "type");
    let kind = TransitionKind::from_label(label).ok_or_else(|| {
        ImportError(format!(
            "transition \"{id}\" has the unknown type \"{label}\" (known: {})",
            TransitionKind::ALL.map(TransitionKind::label).join(", ")
        ))
    })?;
    let endpoint = |key: &str| {
        fields
            .get(key)
            .and_then(Value::as_str)
            .map(|s| BlockId(s.into()))
            .ok_or_else(|| ImportError(format!("transition \"{id}\" has no \"{key}\" block")))
    };
    let mut transition = Transition::new(endpoint("node")?, endpoint("next")?, kind);
    transition.id = TransitionId(id.as_str().into());
    str_field(fields, "expression").clone_into(&mut transition.expression);
    Ok(transition)
}

/// Entry `index` of the list `list` as an object; `what` names the entry in the error.
fn as_entry<'a>(
    value: &'a Value,
    what: &str,
    list: &str,
    index: usize,
) -> Result<&'a Map<String, Value>, ImportError> {
    value.as_object().ok_or_else(|| {
        ImportError(format!(
            "{what} {} in \"{list}\" is {}, not an object",
            index + 1,
            json_kind(value)
        ))
    })
}

fn str_field<'a>(fields: &'a Map<String, Value>, key: &str) -> &'a str {
    fields.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A non-negative whole number, also when written as text (`"30"`); `false` and anything else is none.
fn whole_number(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f.ceil() as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn lambda(extra: Value) -> Value {
        let mut state = json!({"id": "b1", "name": "Work", "type": "lambda", "language": "python3.6",
                               "code": "def main(block_input, backpack):\n    return 1\n"});
        if let (Some(state), Value::Object(extra)) = (state.as_object_mut(), extra) {
            state.extend(extra);
        }
        json!({"name": "P", "workflow_states": [state], "workflow_relationships": [], "version": 1})
    }

    fn only_code(project: &Project) -> &CodeBlock {
        project.blocks[0].code().expect("a code block")
    }

    #[test]
    fn detects_exports_but_not_other_json() {
        assert!(looks_like_refinery(&json!({"workflow_states": []})));
        assert!(looks_like_refinery(&json!({"diagram_data": "{}"})));
        assert!(looks_like_refinery(
            &json!({"diagram_data": {"workflow_states": []}})
        ));
        assert!(!looks_like_refinery(
            &json!({"name": "left-pad", "version": "1.0.0"})
        ));
        assert!(!looks_like_refinery(&json!([1, 2])));
    }

    #[test]
    fn maps_lambda_fields() {
        let project = import(&lambda(json!({
            "max_execution_time": 30,
            "reserved_concurrency_count": 5,
            "libraries": ["requests", "numpy==1.16"],
            "environment_variables": {
                "8f1c": {"name": "API_KEY", "required": true, "description": "", "value": "secret"},
                "9a2d": {"name": "REGION", "required": false, "description": ""}
            }
        })))
        .expect("imports");
        let code = only_code(&project);
        assert_eq!(code.language, Language::Python);
        assert_eq!(code.timeout_s, 30);
        assert_eq!(code.concurrency_cap, Some(5));
        assert_eq!(code.libraries, ["requests", "numpy==1.16"]);
        assert_eq!(code.env_vars, ["API_KEY", "REGION"]);
        let saved = serde_json::to_string(&project).expect("serialises");
        assert!(
            !saved.contains("secret"),
            "an env var value leaked: {saved}"
        );
    }

    /// A `max_execution_time` past Braid's maximum (1e308 has been seen) comes in as the maximum, so the
    /// project runs as it is rather than being refused (or, before the maximum, hanging its worker).
    #[test]
    fn a_timeout_past_the_maximum_comes_in_as_the_maximum() {
        for huge in [json!(1e308), json!(10_000_000_000_u64), json!("86401")] {
            let project = import(&lambda(json!({"max_execution_time": huge}))).expect("imports");
            assert_eq!(only_code(&project).timeout_s, MAX_TIMEOUT_S, "{huge}");
        }
        let project = import(&lambda(json!({"max_execution_time": 86_400}))).expect("imports");
        assert_eq!(only_code(&project).timeout_s, 86_400);
    }

    #[test]
    fn defaults_when_fields_are_missing_or_false() {
        let project =
            import(&lambda(json!({"reserved_concurrency_count": false}))).expect("imports");
        let code = only_code(&project);
        assert_eq!(code.timeout_s, DEFAULT_TIMEOUT_S);
        assert_eq!(code.concurrency_cap, None);
        assert!(code.libraries.is_empty() && code.env_vars.is_empty());
    }

    #[test]
    fn libraries_as_a_map() {
        let project = import(&lambda(json!({
            "libraries": {"requests": "latest", "numpy": "1.16", "pandas": ">=1.0", "boto3": ""}
        })))
        .expect("imports");
        assert_eq!(
            only_code(&project).libraries,
            ["requests", "numpy==1.16", "pandas>=1.0", "boto3"]
        );
    }

    #[test]
    fn other_languages_are_kept_by_name() {
        let project = import(&lambda(json!({"language": "go1.12"}))).expect("imports");
        assert_eq!(
            only_code(&project).language,
            Language::Other("go1.12".into())
        );
    }

    #[test]
    fn unknown_block_types_keep_their_fields() {
        let state = json!({"id": "w", "name": "Hook", "type": "webhook_relay", "secret": 1});
        let project = import(&json!({"workflow_states": [state.clone()]})).expect("imports");
        assert_eq!(
            project.blocks[0].kind,
            BlockKind::Unsupported {
                refinery_type: "webhook_relay".into(),
                original: state
            }
        );
        assert_eq!(project.name, UNNAMED_PROJECT);
    }

    #[test]
    fn service_blocks_keep_their_settings() {
        let export = json!({"workflow_states": [
            {"id": "t", "name": "Every Day", "type": "schedule_trigger", "description": "Deployed by Refinery",
             "input_string": "{\"n\": 1}", "schedule_expression": "rate(1 day)"},
            {"id": "q", "name": "Jobs", "type": "sqs_queue", "batch_size": 7},
            {"id": "q2", "name": "Jobs 2", "type": "sqs_queue"},
            {"id": "s", "name": "News", "type": "sns_topic"},
            {"id": "e", "name": "Hello", "type": "api_endpoint", "api_path": "/hi", "http_method": "POST"}
        ]});
        let project = import(&export).expect("imports");
        let kinds: Vec<&BlockKind> = project.blocks.iter().map(|b| &b.kind).collect();
        assert_eq!(
            kinds,
            [
                &BlockKind::Timer {
                    schedule_expression: "rate(1 day)".into(),
                    input_string: "{\"n\": 1}".into(),
                    description: "Deployed by Refinery".into()
                },
                &BlockKind::Queue { batch_size: 7 },
                &BlockKind::Queue { batch_size: 1 },
                &BlockKind::Topic,
                &BlockKind::ApiEndpoint {
                    api_path: "/hi".into(),
                    http_method: "POST".into(),
                    timeout_s: 29
                },
            ]
        );
    }

    #[test]
    fn unknown_transition_type_is_named() {
        let export = json!({"workflow_states": [], "workflow_relationships": [
            {"id": "t9", "node": "a", "next": "b", "type": "teleport", "expression": ""}
        ]});
        let err = import(&export).expect_err("must fail").to_string();
        assert!(err.contains("\"teleport\"") && err.contains("t9"), "{err}");
    }

    #[test]
    fn transitions_keep_ids_and_expressions() {
        let export = json!({"workflow_states": [], "workflow_relationships": [
            {"id": "t1", "node": "a", "next": "b", "type": "if", "expression": "return_data > 2"}
        ]});
        let project = import(&export).expect("imports");
        let t = &project.transitions[0];
        assert_eq!((&*t.id.0, &*t.from.0, &*t.to.0), ("t1", "a", "b"));
        assert_eq!(t.kind, TransitionKind::If);
        assert_eq!(t.expression, "return_data > 2");
    }

    #[test]
    fn diagram_data_as_string_or_object() {
        let inner = json!({"name": "Inner", "readme": "hi", "workflow_states": [
            {"id": "r", "name": "Resp", "type": "api_gateway_response"}
        ]});
        for wrapped in [
            json!({"project_name": "Outer", "diagram_data": inner.to_string()}),
            json!({"project_name": "Outer", "diagram_data": inner.clone()}),
        ] {
            let project = import(&wrapped).expect("imports");
            assert_eq!(project.name, "Inner");
            assert_eq!(project.readme, "hi");
            assert_eq!(project.blocks[0].kind, BlockKind::ApiResponse);
        }
        let nameless =
            json!({"project_name": "Outer", "diagram_data": "{\"workflow_states\": []}"});
        assert_eq!(import(&nameless).expect("imports").name, "Outer");
        let broken = json!({"diagram_data": "{not json"});
        assert!(import(&broken).is_err());
    }

    #[test]
    fn block_without_id_is_an_error() {
        let export = json!({"workflow_states": [{"name": "X", "type": "lambda"}]});
        assert!(import(&export).is_err());
    }
}
