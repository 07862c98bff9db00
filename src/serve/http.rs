//! The HTTP side (axum): each request to an API Endpoint becomes a run whose input is the request as
//! Refinery gave it (API Gateway's proxy event, plus `raw_body`, `json` and `form`), answered by the
//! first value that reaches an API Response. Braid's own routes under `/_braid/` post to queues and
//! topics and tell the status.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use super::{Host, OWN_PREFIX, Reply, lock};
use crate::run::{RunId, RunStatus};
use crate::runtime::capacity::Lane;
use crate::runtime::scheduler::Answer;

/// Serves until `stopped` turns true; requests going on then are answered first.
pub(super) async fn serve(
    host: Arc<Host>,
    listener: std::net::TcpListener,
    mut stopped: watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            (host.log)(&format!("can't listen: {e}"));
            return;
        }
    };
    let app = Router::new().fallback(handle).with_state(Arc::clone(&host));
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    })
    .await;
    if let Err(e) = served {
        (host.log)(&format!("the HTTP server stopped: {e}"));
    }
}

async fn handle(
    State(host): State<Arc<Host>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let (response, run) = if path.starts_with(OWN_PREFIX) {
        (own_route(&host, request).await, None)
    } else {
        endpoint(&host, peer, request).await
    };
    let status = response.status().as_u16();
    let run = run.map_or_else(String::new, |run| format!(" run {run}"));
    (host.log)(&format!(
        "{method} {path} {status} {}{run}",
        crate::text::duration_ms(started.elapsed().as_secs_f64() * 1000.0)
    ));
    response
}

/// A request to an API Endpoint: its run's answer, and the run.
async fn endpoint(host: &Host, peer: SocketAddr, request: Request) -> (Response, Option<RunId>) {
    let method = request.method().as_str().to_owned();
    let route = match host.route(&method, request.uri().path()) {
        Ok(route) => route,
        Err(path_known) => {
            let (status, msg) = if path_known {
                (
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("{} does not answer {method}", request.uri().path()),
                )
            } else {
                (
                    StatusCode::NOT_FOUND,
                    format!("no API Endpoint answers {}", request.uri().path()),
                )
            };
            return (error(status, &msg, None), None);
        }
    };
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, host.max_body_bytes).await else {
        let msg = format!(
            "the request's body is larger than {} bytes",
            crate::text::count(host.max_body_bytes as u64)
        );
        return (error(StatusCode::PAYLOAD_TOO_LARGE, &msg, None), None);
    };
    let event = request_event(&parts, &route.path, &body, peer);
    route.requests.fetch_add(1, Ordering::Relaxed);
    let (run_id, reply) = host.trigger(&route.block, event, Lane::Request).await;
    let response = match tokio::time::timeout(route.timeout, reply).await {
        Ok(Ok(reply)) => answer(reply, &run_id),
        Ok(Err(_)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the service stopped before the response was computed",
            Some(&run_id),
        ),
        Err(_) => {
            lock(&host.pending).remove(&run_id);
            // Refinery's words for it.
            error(
                StatusCode::GATEWAY_TIMEOUT,
                "The request to the backend has timed out.",
                Some(&run_id),
            )
        }
    };
    (with_run(response, &run_id), Some(run_id))
}

/// The request as the endpoint's blocks receive it: API Gateway's proxy event (as Refinery passed it
/// on), with the body also as text (`raw_body`), parsed as JSON for a JSON request (`json`) and as a
/// form for a form's (`form`).
fn request_event(
    parts: &axum::http::request::Parts,
    resource: &str,
    body: &Bytes,
    peer: SocketAddr,
) -> Value {
    let mut headers = Map::new();
    let mut multi_headers: Map<String, Value> = Map::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers.insert(name.to_string(), Value::String(value.clone()));
        match multi_headers.entry(name.to_string()) {
            serde_json::map::Entry::Occupied(mut values) => {
                if let Value::Array(values) = values.get_mut() {
                    values.push(Value::String(value));
                }
            }
            serde_json::map::Entry::Vacant(slot) => {
                slot.insert(json!([value]));
            }
        }
    }
    let (query, multi_query) = match parts.uri.query() {
        Some(query) if !query.is_empty() => {
            let (single, multi) = pairs(query.as_bytes());
            (Value::Object(single), Value::Object(multi))
        }
        _ => (Value::Null, Value::Null),
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let text = std::str::from_utf8(body).ok();
    let (body_field, raw_body, base64) = match text {
        _ if body.is_empty() => (Value::Null, Value::Null, false),
        Some(text) => (json!(text), json!(text), false),
        None => (
            json!(base64::engine::general_purpose::STANDARD.encode(body)),
            Value::Null,
            true,
        ),
    };
    let json_body = match text {
        Some(text) if is_json(&content_type) => serde_json::from_str(text).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let form = if content_type.starts_with("application/x-www-form-urlencoded") && !body.is_empty()
    {
        Value::Object(pairs(body).1)
    } else {
        Value::Null
    };
    let method = parts.method.as_str();
    let path = parts.uri.path();
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    json!({
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": null,
        "stageVariables": null,
        "requestContext": {
            "stage": "braid",
            "httpMethod": method,
            "path": path,
            "resourcePath": resource,
            "protocol": format!("{:?}", parts.version),
            "requestTimeEpoch": crate::run::now_ms() as u64,
            "domainName": parts.headers.get(header::HOST).and_then(|v| v.to_str().ok()),
            "identity": {"sourceIp": peer.ip().to_string(), "userAgent": user_agent},
        },
        "body": body_field,
        "isBase64Encoded": base64,
        "raw_body": raw_body,
        "json": json_body,
        "form": form,
    })
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence == "application/json" || essence.ends_with("+json")
}

/// URL-encoded pairs: each name's last value, and all of its values.
fn pairs(encoded: &[u8]) -> (Map<String, Value>, Map<String, Value>) {
    let mut single = Map::new();
    let mut multi: Map<String, Value> = Map::new();
    for (name, value) in form_urlencoded::parse(encoded) {
        single.insert(name.to_string(), json!(value));
        if let Value::Array(values) = multi.entry(name.to_string()).or_insert_with(|| json!([])) {
            values.push(json!(value));
        }
    }
    (single, multi)
}

/// The headers Refinery set on a JSON answer.
const JSON_HEADERS: [(&str, &str); 7] = [
    ("content-type", "application/json"),
    ("x-frame-options", "deny"),
    ("x-content-type-options", "nosniff"),
    ("x-xss-protection", "1; mode=block"),
    ("cache-control", "no-cache, no-store, must-revalidate"),
    ("pragma", "no-cache"),
    ("expires", "0"),
];

fn answer(reply: Reply, run_id: &RunId) -> Response {
    match reply {
        Reply::Answer(Answer::Value(value)) => respond(&value),
        Reply::Answer(Answer::Failed { block, .. }) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!(
                "An exception occurred while computing the response: block \"{block}\" failed (Braid run {run_id})"
            ),
            Some(run_id),
        ),
        Reply::Ended(RunStatus::Cancelled) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the service stopped before the response was computed",
            Some(run_id),
        ),
        Reply::Ended(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("The run ended without reaching an API Response block (Braid run {run_id})"),
            Some(run_id),
        ),
        Reply::Refused(message) => error(StatusCode::SERVICE_UNAVAILABLE, &message, Some(run_id)),
    }
}

/// What an API Response received, as an HTTP response: a dict with `body` is the response itself
/// (`statusCode`, `headers`, `body`, `isBase64Encoded`), anything else is `200` with the value as JSON.
fn respond(value: &Value) -> Response {
    let Value::Object(raw) = value else {
        return json_response(StatusCode::OK, value);
    };
    let Some(body) = raw.get("body") else {
        return json_response(StatusCode::OK, value);
    };
    let status = match raw.get("statusCode") {
        None | Some(Value::Null) => Some(StatusCode::OK),
        Some(code) => code
            .as_u64()
            .or_else(|| code.as_str().and_then(|s| s.trim().parse().ok()))
            .and_then(|code| u16::try_from(code).ok())
            .and_then(|code| StatusCode::from_u16(code).ok()),
    };
    let Some(status) = status else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!(
                "the API Response's statusCode {} is not an HTTP status",
                raw["statusCode"]
            ),
            None,
        );
    };
    let text = match body {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let bytes = if raw.get("isBase64Encoded") == Some(&Value::Bool(true)) {
        match base64::engine::general_purpose::STANDARD.decode(text.as_bytes()) {
            Ok(bytes) => bytes,
            Err(e) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("the API Response's body is not base64 as isBase64Encoded says: {e}"),
                    None,
                );
            }
        }
    } else {
        text.into_bytes()
    };
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    if let Some(Value::Object(headers)) = raw.get("headers") {
        for (name, value) in headers {
            let value = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                response.headers_mut().append(name, value);
            }
        }
    }
    response
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut response = (status, value.to_string()).into_response();
    let headers: &mut HeaderMap = response.headers_mut();
    for (name, value) in JSON_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Braid's own answer when no API Response gave one: a short JSON error (no traceback: the run in
/// Braid has it).
fn error(status: StatusCode, msg: &str, run_id: Option<&RunId>) -> Response {
    let mut body = json!({"success": false, "msg": msg});
    if let Some(run_id) = run_id {
        body["run_id"] = json!(run_id.0);
    }
    json_response(status, &body)
}

fn with_run(mut response: Response, run_id: &RunId) -> Response {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&run_id.0) {
        headers.insert("x-braid-run", value);
    }
    headers.insert(header::SERVER, HeaderValue::from_static("braid"));
    response
}

/// `/_braid/…`: queues, topics and the status.
async fn own_route(host: &Host, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path()[OWN_PREFIX.len()..].to_owned();
    let segments: Vec<&str> = path.split('/').collect();
    let Ok(body) = axum::body::to_bytes(request.into_body(), host.max_body_bytes).await else {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request's body is too large",
            None,
        );
    };
    match (&method, segments.as_slice()) {
        (&Method::GET, ["status"]) => json_response(
            StatusCode::OK,
            &serde_json::to_value(host.status()).unwrap_or(Value::Null),
        ),
        (&Method::POST, ["queues", name]) => post_to_queue(host, &decode(name), &body).await,
        (&Method::GET, ["queues", name]) => queue_state(host, &decode(name)).await,
        (&Method::POST, ["queues", name, "redrive"]) => redrive(host, &decode(name)).await,
        (&Method::POST, ["topics", name]) => publish(host, &decode(name), &body).await,
        _ => error(
            StatusCode::NOT_FOUND,
            &format!("Braid has no route {method} {OWN_PREFIX}{path}"),
            None,
        ),
    }
}

fn decode(segment: &str) -> String {
    form_urlencoded::parse(format!("n={segment}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn json_body(body: &Bytes) -> Result<Value, Response> {
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            &format!("the body is not JSON: {e}"),
            None,
        )
    })
}

/// The queue named `name` (its index) and the store of its messages, or the answer saying why not.
fn queue_and_store<'h>(
    host: &'h Host,
    name: &str,
) -> Result<(usize, &'h super::Queue, &'h super::queues::Store), Response> {
    let Some((index, queue)) = host.queue(name) else {
        return Err(error(
            StatusCode::NOT_FOUND,
            &format!("no Queue is named {name:?}"),
            None,
        ));
    };
    let Some(store) = &host.store else {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the queues have no store",
            None,
        ));
    };
    Ok((index, queue, store))
}

async fn post_to_queue(host: &Host, name: &str, body: &Bytes) -> Response {
    let (_, queue, store) = match queue_and_store(host, name) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let value = match json_body(body) {
        Ok(value) => value,
        Err(response) => return response,
    };
    let messages = crate::runtime::plan::messages(value);
    let count = messages.len();
    match store.put(&queue.block.0, messages).await {
        Ok(depth) => {
            queue.wake.notify_one();
            json_response(
                StatusCode::ACCEPTED,
                &json!({"success": true, "queued": count, "depth": depth.ready}),
            )
        }
        Err(message) => error(StatusCode::INTERNAL_SERVER_ERROR, &message, None),
    }
}

async fn queue_state(host: &Host, name: &str) -> Response {
    let (index, queue, store) = match queue_and_store(host, name) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let depth = store
        .depths()
        .await
        .get(&*queue.block.0)
        .copied()
        .unwrap_or_default();
    let dead = store.dead(&queue.block.0, 100).await.unwrap_or_default();
    json_response(
        StatusCode::OK,
        &json!({
            "name": queue.name,
            "depth": depth.ready,
            "in_flight": depth.taken,
            "dead": depth.dead,
            "batches_running": host.queues[index].in_flight.load(Ordering::Relaxed),
            "dead_letters": dead.iter().map(|d| json!({
                "id": d.id, "body": d.body, "attempts": d.attempts, "error": d.error
            })).collect::<Vec<_>>(),
        }),
    )
}

async fn redrive(host: &Host, name: &str) -> Response {
    let (_, queue, store) = match queue_and_store(host, name) {
        Ok(found) => found,
        Err(response) => return response,
    };
    match store.redrive(&queue.block.0).await {
        Ok(moved) => {
            queue.wake.notify_one();
            json_response(StatusCode::OK, &json!({"success": true, "redriven": moved}))
        }
        Err(message) => error(StatusCode::INTERNAL_SERVER_ERROR, &message, None),
    }
}

async fn publish(host: &Host, name: &str, body: &Bytes) -> Response {
    let Some(topic) = host.topic(name) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("no Topic is named {name:?}"),
            None,
        );
    };
    let value = match json_body(body) {
        Ok(value) => value,
        Err(response) => return response,
    };
    topic.published.fetch_add(1, Ordering::Relaxed);
    let (run_id, _) = host.trigger(&topic.block, value, Lane::Background).await;
    with_run(
        json_response(
            StatusCode::ACCEPTED,
            &json!({"success": true, "run_id": run_id.0}),
        ),
        &run_id,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> axum::http::request::Parts {
        let mut builder = axum::http::Request::builder().method("POST").uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("a request").into_parts().0
    }

    fn peer() -> SocketAddr {
        "127.0.0.2:5000".parse().expect("an address")
    }

    #[test]
    fn a_json_post_arrives_as_refinery_gave_it() {
        let p = parts(
            "/hello/world?n=1&tag=a&tag=b",
            &[
                ("content-type", "application/json"),
                ("user-agent", "curl/8"),
            ],
        );
        let event = request_event(
            &p,
            "/hello/world",
            &Bytes::from_static(br#"{"number": 2}"#),
            peer(),
        );
        assert_eq!(event["httpMethod"], "POST");
        assert_eq!(event["path"], "/hello/world");
        assert_eq!(event["resource"], "/hello/world");
        assert_eq!(
            event["queryStringParameters"],
            json!({"n": "1", "tag": "b"})
        );
        assert_eq!(
            event["multiValueQueryStringParameters"],
            json!({"n": ["1"], "tag": ["a", "b"]})
        );
        assert_eq!(event["headers"]["content-type"], "application/json");
        assert_eq!(event["multiValueHeaders"]["user-agent"], json!(["curl/8"]));
        assert_eq!(event["body"], r#"{"number": 2}"#);
        assert_eq!(event["raw_body"], r#"{"number": 2}"#);
        assert_eq!(event["json"], json!({"number": 2}));
        assert_eq!(event["form"], Value::Null);
        assert_eq!(event["isBase64Encoded"], false);
        assert_eq!(event["pathParameters"], Value::Null);
        assert_eq!(event["requestContext"]["identity"]["sourceIp"], "127.0.0.2");
    }

    #[test]
    fn a_form_a_bare_get_and_a_binary_body() {
        let form = parts(
            "/f",
            &[("content-type", "application/x-www-form-urlencoded")],
        );
        let event = request_event(&form, "/f", &Bytes::from_static(b"a=1&a=2&b=x+y"), peer());
        assert_eq!(event["form"], json!({"a": ["1", "2"], "b": ["x y"]}));
        assert_eq!(event["json"], Value::Null);

        let get = parts("/g", &[]);
        let event = request_event(&get, "/g", &Bytes::new(), peer());
        assert_eq!(
            (
                &event["queryStringParameters"],
                &event["body"],
                &event["raw_body"]
            ),
            (&Value::Null, &Value::Null, &Value::Null)
        );

        let event = request_event(&get, "/g", &Bytes::from_static(&[0xff, 0x00]), peer());
        assert_eq!(
            (&event["body"], &event["isBase64Encoded"]),
            (&json!("/wA="), &json!(true))
        );
        assert_eq!(event["raw_body"], Value::Null);
    }

    async fn text(response: Response) -> (u16, Vec<(String, String)>, String) {
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        // In memory: it is whole at once.
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("a body");
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    fn run_blocking<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(f)
    }

    #[test]
    fn a_value_is_answered_as_json_and_a_dict_with_a_body_as_the_response_itself() {
        run_blocking(async {
            let (status, headers, body) = text(respond(&json!("Hello World!"))).await;
            assert_eq!((status, body.as_str()), (200, "\"Hello World!\""));
            assert!(headers.contains(&("content-type".into(), "application/json".into())));
            assert!(headers.contains(&("x-frame-options".into(), "deny".into())));

            let (status, headers, body) = text(respond(&json!({
                "statusCode": 302, "headers": {"Location": "https://example.com/"}, "body": ""
            })))
            .await;
            assert_eq!((status, body.as_str()), (302, ""));
            assert!(headers.contains(&("location".into(), "https://example.com/".into())));

            let (status, _, body) = text(respond(&json!({
                "statusCode": 201, "body": "aGk=", "isBase64Encoded": true
            })))
            .await;
            assert_eq!((status, body.as_str()), (201, "hi"));

            // A dict without `body` is a value like any other.
            let (status, _, body) = text(respond(&json!({"statusCode": 404, "msg": "x"}))).await;
            assert_eq!(
                (status, body.as_str()),
                (200, r#"{"statusCode":404,"msg":"x"}"#)
            );

            let (status, _, body) = text(respond(&json!({"statusCode": 1000, "body": "x"}))).await;
            assert_eq!(status, 500);
            assert!(body.contains("is not an HTTP status"), "{body}");
        });
    }

    #[test]
    fn failures_are_short_json_errors_naming_the_run_and_never_a_traceback() {
        run_blocking(async {
            let run = RunId("r-1".into());
            let failed = Reply::Answer(Answer::Failed {
                block: "Parse".into(),
                error: "ValueError: secret detail".into(),
                invocation: Some(2),
            });
            let (status, _, body) = text(answer(failed, &run)).await;
            assert_eq!(status, 500);
            assert_eq!(
                serde_json::from_str::<Value>(&body).expect("JSON"),
                json!({
                    "success": false,
                    "msg": "An exception occurred while computing the response: block \"Parse\" failed (Braid run r-1)",
                    "run_id": "r-1"
                })
            );
            let (status, _, _) = text(answer(Reply::Ended(RunStatus::Succeeded), &run)).await;
            assert_eq!(status, 500);
            let (status, _, _) = text(answer(Reply::Ended(RunStatus::Cancelled), &run)).await;
            assert_eq!(status, 503);
        });
    }
}
