//! The web page: `GET /` and `GET /assets/...`, served from files embedded in
//! the binary at build time (`web/dist`, built from `web/src` by
//! `web/build.mjs` and committed), so running the server needs no npm.
//!
//! These routes need no credential ([`crate::auth`] lists them as public):
//! the page itself holds no secret. Everything it then asks for (the REST API,
//! `/ws`) goes through the guard as any other client, with the login cookie or
//! from loopback; a page that is refused shows how to get a login link.
//!
//! Responses carry a strong `ETag` (the file's SHA-256) and
//! `Cache-Control: no-cache`, so a browser revalidates and gets `304` until the
//! binary changes: the bundle's names carry no hash.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;
use termstream_proto::ErrorCode;

use crate::error::ApiError;

/// The built page, `web/dist` of the repository.
#[derive(RustEmbed)]
#[folder = "../../web/dist/"]
struct Assets;

#[utoipa::path(get, path = "/", security(()),
    responses((status = 200, description = "The web page (HTML).", content_type = "text/html"), (status = 304, description = "Not modified (`If-None-Match`).")))]
/// `GET /`: the page.
pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

#[utoipa::path(get, path = "/assets/{path}", security(()), params(("path" = String, Path, description = "The asset's path under `assets/`.")),
    responses((status = 200, description = "A script, style sheet or font of the page."), (status = 304, description = "Not modified (`If-None-Match`)."), (status = 404, description = "No such asset.", body = termstream_proto::ErrorBody)))]
/// `GET /assets/{*path}`: the page's scripts and styles.
pub async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&format!("assets/{path}"), &headers)
}

/// Whether `path` is one of the page's routes (they need no credential).
pub fn is_page_path(path: &str) -> bool {
    path == "/" || path.starts_with("/assets/")
}

/// The embedded file `name`, or `304` when the request's `If-None-Match`
/// names its current version, or `404`.
fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(file) = Assets::get(name) else {
        return ApiError::new(ErrorCode::NotFound, format!("no asset {name:?}")).into_response();
    };
    let etag = format!("\"{}\"", hex::encode(file.metadata.sha256_hash()));
    let cache = [
        (
            header::ETAG,
            HeaderValue::from_str(&etag).expect("hex is a valid header"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if fresh {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    let mime =
        HeaderValue::from_str(file.metadata.mimetype()).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let mut resp = (cache, file.data.into_owned()).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, mime);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_bundle_are_embedded() {
        let index = Assets::get("index.html").expect("web/dist/index.html is embedded");
        let html = std::str::from_utf8(&index.data).unwrap();
        assert!(html.contains("/assets/app.js"), "the page loads its bundle");
        assert!(Assets::get("assets/app.js").is_some());
        assert!(Assets::get("assets/app.css").is_some());
        assert_eq!(Assets::get("index.html").unwrap().metadata.mimetype(), "text/html");
    }

    #[test]
    fn page_paths() {
        assert!(is_page_path("/"));
        assert!(is_page_path("/assets/app.js"));
        assert!(!is_page_path("/api/sessions"));
        assert!(!is_page_path("/assetsx"));
    }
}
