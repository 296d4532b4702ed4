//! `/openapi.json`: the OpenAPI description of every route in
//! [`ROUTES`](super::ROUTES), and `/health`.
//!
//! Each handler describes its own answers (`#[utoipa::path]`); [`Common`]
//! adds the bearer security scheme (with the public routes exempt), and the
//! errors the guard, the extractors and the body's deadline answer before
//! any handler runs, each only on the routes that can answer it
//! ([`SHARED_ERRORS`]): 401 on every route that needs a credential, 403 on
//! every route (the Host check), 400 where a body, a path or a query is
//! read, 408 and 413 where a body is read, 404 where the path names a
//! session, and 400, 429 and 503 on the WebSocket upgrades (a malformed
//! handshake, the connection limits). 405 is not an answer of any described
//! operation (it is the answer to a method that is not described), so it is
//! listed nowhere. `tests/openapi_answers.rs` provokes each of these
//! answers from a live server and looks them up here. Every answer listed
//! has a description (a unit test checks): a handler describes the answers
//! it lists, and leaves a shared one to [`Common`] unless it has more to
//! say of it.

use axum::Json;
use termstream_proto::replies::Health;
use termstream_proto::{ErrorBody, ErrorCode};
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::{compat, events, focus, sessions};
use crate::observe::{health, metrics};
use crate::{auth, gateway, page};

#[derive(OpenApi)]
#[openapi(
    info(title = "termstream", description = "Runs terminal sessions and streams them live."),
    paths(
        sessions::create,
        sessions::list,
        sessions::get,
        sessions::input,
        sessions::resize,
        sessions::terminate,
        sessions::delete,
        sessions::output,
        sessions::snapshot,
        sessions::recording,
        compat::start,
        compat::sessions,
        compat::status,
        compat::terminate,
        events::publish,
        focus::put_focus,
        focus::get_focus,
        focus::projects,
        auth::ws_ticket,
        auth::login::issue_code,
        auth::login::logout,
        auth::login::login,
        gateway::ws,
        gateway::legacy_all,
        gateway::legacy_one,
        serve,
        health,
        page::index,
        page::asset,
        health::healthz,
        health::readyz,
        metrics::render,
    ),
    components(schemas(sessions::OutputFormat, ErrorBody, ErrorCode)),
    modifiers(&Common)
)]
struct ApiDoc;

/// The OpenAPI description of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "The OpenAPI description.", body = Object)))]
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}

/// Whether the server answers; needs no credential.
#[utoipa::path(get, path = "/health", security(()), responses((status = 200, body = Health, description = "The server answers.")))]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// What every route shares; see the module docs.
struct Common;

/// What [`SHARED_ERRORS`] needs to know of an operation.
struct Facts {
    /// It needs no credential.
    public: bool,
    /// It reads a request body (and so may meet its limit and deadline).
    body: bool,
    /// It reads a path parameter.
    path_params: bool,
    /// It reads a query parameter.
    query_params: bool,
    /// It is a WebSocket upgrade (it answers 101).
    websocket: bool,
    /// Its path names a session (`/api/sessions/{id}...`,
    /// `/terminal/{session_id}...`).
    names_session: bool,
    /// It only reads (`GET`): a credential that may only read is not refused.
    reads: bool,
}

/// An error answered before or around a handler.
struct Shared {
    status: &'static str,
    /// Its description, naming the [`ErrorCode`]s it carries.
    why: &'static str,
    /// Whether an operation with these facts can answer it.
    applies: fn(&Facts) -> bool,
}

/// The errors answered before or around a handler, and the operations that
/// can answer them. A handler's own description of a status wins.
const SHARED_ERRORS: [Shared; 16] = [
    Shared {
        status: "400",
        why: "`bad_request`: a malformed or invalid body, path parameter or query parameter.",
        applies: |f| (f.body || f.path_params || f.query_params) && !f.websocket,
    },
    Shared {
        status: "400",
        why: "`bad_request`: a malformed WebSocket handshake or path parameter.",
        applies: |f| f.websocket && f.path_params && !f.query_params,
    },
    Shared {
        status: "400",
        why: "`bad_request`: a malformed WebSocket handshake or query parameter.",
        applies: |f| f.websocket && f.query_params && !f.path_params,
    },
    Shared {
        status: "400",
        why: "`bad_request`: a malformed WebSocket handshake, path parameter or query parameter.",
        applies: |f| f.websocket && f.path_params && f.query_params,
    },
    Shared {
        status: "400",
        why: "`bad_request`: a malformed WebSocket handshake.",
        applies: |f| f.websocket && !f.path_params && !f.query_params,
    },
    Shared {
        status: "401",
        why: "`unauthorized`: no credential, or a bad one.",
        applies: |f| !f.public,
    },
    // A safe GET is never Origin-checked, unless it is a WebSocket upgrade
    // or authenticated by the login cookie (`auth::guard`).
    Shared {
        status: "403",
        why: "`forbidden`: the Host is not allowed here, or a request came through a reverse proxy to a server \
              with no token.",
        applies: |f| f.public && f.reads,
    },
    Shared {
        status: "403",
        why: "`forbidden`: the Host or the Origin is not allowed here, or a request came through a reverse proxy \
              to a server with no token.",
        applies: |f| f.public && !f.reads,
    },
    Shared {
        status: "403",
        why: "`forbidden`: the Host is not allowed here, a request came through a reverse proxy to a server with \
              no token, one authenticated by the login cookie carries an Origin that is not allowed, or the \
              credential's scope does not cover this route.",
        applies: |f| !f.public && f.reads && !f.websocket,
    },
    Shared {
        status: "403",
        why: "`forbidden`: the Host or the Origin is not allowed here, a request came through a reverse proxy to \
              a server with no token, or the credential's scope does not cover this route.",
        applies: |f| !f.public && f.websocket,
    },
    // `POST /api/ws-ticket` and `POST /api/login-codes` never answer
    // `read_only`: they describe their own 403.
    Shared {
        status: "403",
        why: "`forbidden`: the Host or the Origin is not allowed here, a request came through a reverse proxy to \
              a server with no token, or the credential's scope does not cover this route; `read_only`: the \
              credential may only read that project.",
        applies: |f| !f.public && !f.reads,
    },
    Shared {
        status: "404",
        why: "`session_not_found`: no session has that id, or the credential cannot read its project (in a cluster, also when the session this node knew \
              under that id was deleted on its owner and replaced by a newer one; the listing catches up within \
              a directory read).",
        applies: |f| f.names_session,
    },
    Shared {
        status: "408",
        why: "`request_timeout`: the body did not arrive within `http_body_timeout_ms`; the connection is closed.",
        applies: |f| f.body,
    },
    Shared {
        status: "413",
        why: "`payload_too_large`: the body is larger than `max_body_bytes`.",
        applies: |f| f.body,
    },
    Shared {
        status: "429",
        why: "`rate_limited`: this client holds `max_connections_per_ip` sockets already.",
        applies: |f| f.websocket,
    },
    Shared {
        status: "503",
        why: "`capacity`: the server holds `max_connections` sockets already.",
        applies: |f| f.websocket,
    },
];

impl Modify for Common {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let bearer = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "A token (`Authorization: Bearer TOKEN`). A server with no token configured serves loopback \
                 clients without one.",
            ))
            .build();
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(bearer));
        doc.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
        for (path, item) in doc.paths.paths.iter_mut() {
            let names_session = path.starts_with("/api/sessions/{id}") || path.starts_with("/terminal/{session_id}");
            let ops = [
                (&mut item.get, true),
                (&mut item.put, false),
                (&mut item.post, false),
                (&mut item.delete, false),
            ];
            for (op, reads) in ops {
                if let Some(op) = op {
                    add_errors(op, names_session, reads);
                }
            }
        }
    }
}

fn add_errors(op: &mut Operation, names_session: bool, reads: bool) {
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    let has_params = |place: ParameterIn| {
        op.parameters
            .as_ref()
            .is_some_and(|p| p.iter().any(|p| p.parameter_in == place))
    };
    let facts = Facts {
        public: op
            .security
            .as_ref()
            .is_some_and(|s| s.iter().all(|r| *r == SecurityRequirement::default())),
        body: op.request_body.is_some(),
        path_params: has_params(ParameterIn::Path),
        query_params: has_params(ParameterIn::Query),
        websocket: op.responses.responses.contains_key("101"),
        names_session,
        reads,
    };
    for shared in SHARED_ERRORS.iter().filter(|s| (s.applies)(&facts)) {
        op.responses
            .responses
            .entry(shared.status.to_owned())
            .or_insert_with(|| error(shared.why).into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_described_once_with_a_unique_operation_id() {
        let doc = serde_json::to_value(openapi()).unwrap();
        let mut ids = std::collections::HashSet::new();
        for (method, path) in super::super::ROUTES {
            // axum's catch-all `{*name}` is OpenAPI's `{name}`.
            let op = &doc["paths"][path.replace("{*", "{")][method];
            assert!(op.is_object(), "{method} {path} is served but not described");
            let id = op["operationId"].as_str().unwrap_or_default();
            assert!(ids.insert(id.to_owned()), "operationId {id:?} is used twice");
            assert!(
                op["responses"]["401"].is_object() || op["security"] == serde_json::json!([{}]),
                "{method} {path}: neither public nor answering 401"
            );
        }
        let described: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|item| item.as_object().unwrap().len())
            .sum();
        assert_eq!(described, super::super::ROUTES.len(), "a described route is not served");
    }

    #[test]
    fn shared_errors_are_listed_only_where_they_are_answered() {
        let doc = serde_json::to_value(openapi()).unwrap();
        let listed = |path: &str, method: &str| -> Vec<String> {
            let responses = doc["paths"][path][method]["responses"].as_object().unwrap();
            responses.keys().cloned().collect()
        };
        let has = |path: &str, method: &str, status: &str| listed(path, method).iter().any(|s| s == status);
        for (method, path) in super::super::ROUTES {
            let path = path.replace("{*", "{");
            assert!(!has(&path, method, "405"), "{method} {path} lists 405");
            let body = doc["paths"][&path][method]["requestBody"].is_object();
            for status in ["408", "413"] {
                assert_eq!(has(&path, method, status), body, "{method} {path}: {status}");
            }
            assert!(has(&path, method, "403"), "{method} {path} does not list 403");
        }
        for (path, method) in [("/health", "get"), ("/metrics", "get"), ("/api/projects", "get")] {
            for status in ["400", "429"] {
                assert!(!has(path, method, status), "{method} {path} lists {status}");
            }
        }
        for (path, method) in [("/api/sessions", "post"), ("/terminal/start", "post")] {
            for status in ["400", "401", "403", "408", "413", "429", "503"] {
                assert!(has(path, method, status), "{method} {path} does not list {status}");
            }
        }
        for status in ["400", "401", "403", "426", "429", "503"] {
            assert!(has("/ws", "get", status), "/ws does not list {status}");
        }
        assert!(!has("/ws/terminal/{session_id}", "get", "404"));
        assert!(!has("/health", "get", "401"));
    }

    #[test]
    fn the_websocket_routes_are_those_answering_101() {
        let doc = serde_json::to_value(openapi()).unwrap();
        let upgrades: Vec<&str> = super::super::ROUTES
            .iter()
            .map(|(_, path)| *path)
            .filter(|path| doc["paths"][path]["get"]["responses"]["101"].is_object())
            .collect();
        assert_eq!(upgrades, super::super::WEBSOCKET_ROUTES);
    }

    #[test]
    fn shared_error_texts_say_what_the_route_can_meet() {
        let doc = serde_json::to_value(openapi()).unwrap();
        let text = |path: &str, method: &str, status: &str| {
            doc["paths"][path][method]["responses"][status]["description"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path}: no {status}"))
                .to_owned()
        };
        // The guard checks no Origin on a safe GET that is no socket and
        // carries no login cookie (a public route takes none).
        for path in ["/health", "/healthz", "/readyz", "/", "/assets/{path}", "/login"] {
            assert!(!text(path, "get", "403").contains("Origin"), "GET {path}");
        }
        assert!(text("/api/logout", "post", "403").contains("Origin"));
        assert!(text("/ws", "get", "403").contains("Origin"));
        assert!(text("/ws/terminal/{session_id}", "get", "400").contains("path parameter"));
        assert!(!text("/ws/terminal/all", "get", "400").contains("parameter"));
        for path in ["/api/ws-ticket", "/api/login-codes"] {
            assert!(!text(path, "post", "403").contains("read_only"), "POST {path}");
        }
        for (path, method) in [
            ("/api/sessions", "post"),
            ("/api/sessions/{id}/input", "post"),
            ("/api/sessions/{id}", "delete"),
            ("/api/events", "post"),
            ("/api/terminal/focus", "put"),
        ] {
            assert!(text(path, method, "403").contains("read_only"), "{method} {path}");
        }
    }

    /// Every answer of every route says when it is given: an answer a
    /// handler listed with no description was served with an empty one
    /// (`PUT /api/terminal/focus` said nothing of its 403).
    #[test]
    fn every_answer_is_described() {
        let doc = serde_json::to_value(openapi()).unwrap();
        let mut empty = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let Some(responses) = op["responses"].as_object() else {
                    continue;
                };
                for (status, answer) in responses {
                    if answer["description"].as_str().is_none_or(|d| d.trim().is_empty()) {
                        empty.push(format!("{method} {path} {status}"));
                    }
                }
            }
        }
        assert!(empty.is_empty(), "answers with no description: {empty:#?}");
    }

    #[test]
    fn query_parameters_are_in_the_query() {
        let doc = serde_json::to_value(openapi()).unwrap();
        for (path, method) in [
            ("/api/sessions", "get"),
            ("/api/sessions/{id}/output", "get"),
            ("/ws", "get"),
            ("/login", "get"),
        ] {
            for p in doc["paths"][path][method]["parameters"].as_array().unwrap() {
                let name = p["name"].as_str().unwrap();
                let want = if path.contains(&format!("{{{name}}}")) {
                    "path"
                } else {
                    "query"
                };
                assert_eq!(p["in"], want, "{method} {path}: {p}");
            }
        }
        assert!(doc["components"]["schemas"]["OutputFormat"].is_object());
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    }
}
