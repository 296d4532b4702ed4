//! `/openapi.json`: the OpenAPI description of every route in
//! [`ROUTES`](super::ROUTES), and `/health`.
//!
//! Each handler describes its own answers (`#[utoipa::path]`); [`Common`]
//! adds what every route shares: the bearer security scheme (with the public
//! routes exempt), and the errors the guard and the router answer before or
//! around any handler (400, 401, 403, 405, 413, 429, 503; 404 where the
//! path names a session).

use axum::Json;
use termstream_proto::replies::Health;
use termstream_proto::{ErrorBody, ErrorCode};
use utoipa::openapi::path::Operation;
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
#[utoipa::path(get, path = "/health", security(()), responses((status = 200, body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// What every route shares; see the module docs.
struct Common;

/// The errors any route may answer, and why.
const SHARED_ERRORS: [(&str, &str); 7] = [
    ("400", "A malformed body, path or query."),
    ("401", "No credential, or a bad one."),
    (
        "403",
        "The Host, the Origin or the credential's scope does not allow this.",
    ),
    ("405", "The route does not take that method."),
    ("413", "The body is larger than `max_body_bytes`."),
    ("429", "A per-client or per-token limit was reached."),
    ("503", "The server is at capacity."),
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
            let ops = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete];
            for op in ops.into_iter().flatten() {
                add_errors(op, path.contains('{'));
            }
        }
    }
}

fn add_errors(op: &mut Operation, names_session: bool) {
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
    let public = op
        .security
        .as_ref()
        .is_some_and(|s| s.iter().all(|r| *r == SecurityRequirement::default()));
    for (status, why) in SHARED_ERRORS {
        if public && (status == "401" || status == "429") {
            continue;
        }
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| error(why).into());
    }
    if names_session {
        op.responses
            .responses
            .entry("404".to_owned())
            .or_insert_with(|| error("No session has that id.").into());
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
