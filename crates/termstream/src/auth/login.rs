//! The web page's credential: one-time login codes exchanged for a session
//! cookie.
//!
//! A page cannot be handed a long-lived token safely (it would sit in a URL,
//! history or local storage), so:
//! 1. A holder of a token asks `POST /api/login-codes` (optionally narrowing
//!    the scope: `{"projects": {"web": "read"}}`) and gets a code and the path
//!    `/login?code=CODE` to open in a browser. The code carries the grant,
//!    works once, and expires after `login_code_ttl_ms` (60 s).
//! 2. `GET /login?code=CODE` redeems it for a server-side login session and
//!    answers `303` to `/` with the cookie `termstream` (`__Host-termstream`
//!    under TLS): `HttpOnly; SameSite=Strict; Path=/`, plus `Secure` under
//!    TLS. The cookie's value is a random session id; the store keeps only its
//!    SHA-256, so a dump of memory does not yield usable cookies.
//! 3. The guard ([`super::authenticate`]) accepts the cookie on REST routes
//!    and WebSocket upgrades, with the code's grant, when no other credential
//!    is given. A request authenticated by cookie that changes state or opens
//!    a WebSocket must carry an allowed `Origin` (a browser always sends one
//!    there), and one carrying a foreign `Origin` is refused whatever its
//!    method: cookies are what cross-site request forgery and WebSocket
//!    hijacking ride on.
//! 4. `POST /api/logout` ends the login session and clears the cookie.
//! 5. A login session may mint only read-only codes (the page's "share a
//!    read-only link"): `projects` must be given and ask for `read` alone,
//!    and the login session such a code opens ends no later than the one that
//!    made it, so a cookie can never renew itself or outlive its login.
//!
//! Login sessions expire after `login_session_ttl_secs` (12 h); both stores
//! are bounded (`max_tickets` codes, `max_login_sessions` sessions): when
//! full of live entries, new ones are refused with 503 rather than logging
//! someone else out.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use serde::Deserialize;
use termstream_proto::replies::LoginCode;
use termstream_proto::{ErrorBody, ErrorCode};

use super::expiring::{Expiring, StoreFull, Use};
use super::token::{self, Access, Scope};
use super::{CookieAuth, Grant, Security};
use crate::error::{ApiError, body_rejection, parse_object};

/// Outstanding login codes and open login sessions.
#[derive(Debug)]
pub struct LoginStore {
    codes: Expiring,
    sessions: Expiring,
    /// For codes minted by a login session: the SHA-256 of the code, the
    /// latest end of the session it opens, and the code's own expiry (after
    /// which the entry is swept). Bounded as the codes are.
    caps: Mutex<HashMap<String, (Instant, Instant)>>,
}

impl LoginStore {
    pub fn new(code_ttl: Duration, max_codes: usize, session_ttl: Duration, max_sessions: usize) -> LoginStore {
        LoginStore {
            codes: Expiring::new("login codes", code_ttl, max_codes),
            sessions: Expiring::new("login sessions", session_ttl, max_sessions),
            caps: Mutex::default(),
        }
    }

    /// A one-time code carrying `grant`.
    pub fn issue_code(&self, grant: Grant) -> Result<String, StoreFull> {
        self.codes.insert("lc_", grant)
    }

    /// A one-time code carrying `grant` whose login session ends by `cap`.
    pub fn issue_code_until(&self, grant: Grant, cap: Instant) -> Result<String, StoreFull> {
        let code = self.codes.insert("lc_", grant)?;
        let now = Instant::now();
        let mut caps = self.caps.lock().unwrap_or_else(|p| p.into_inner());
        caps.retain(|_, (_, code_expiry)| *code_expiry > now);
        caps.insert(token::hash(&code), (cap, now + self.codes.ttl()));
        Ok(code)
    }

    /// Exchanges a live code (it cannot be used again) for a login session
    /// id. `Ok(None)`: the code is unknown, used or expired.
    pub fn redeem(&self, code: &str) -> Result<Option<String>, StoreFull> {
        let cap = self
            .caps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&token::hash(code))
            .map(|(cap, _)| cap);
        match self.codes.get(code, Use::Once) {
            None => Ok(None),
            Some(grant) => self.sessions.insert_until("ls_", grant, cap).map(Some),
        }
    }

    /// When the live login session `id` ends.
    pub fn session_end(&self, id: &str) -> Option<Instant> {
        self.sessions.expiry(id)
    }

    /// The grant of a live login session.
    pub fn session(&self, id: &str) -> Option<Grant> {
        self.sessions.get(id, Use::UntilExpiry)
    }

    /// Ends a login session.
    pub fn logout(&self, id: &str) {
        self.sessions.remove(id);
    }

    pub fn code_ttl(&self) -> Duration {
        self.codes.ttl()
    }

    pub fn session_ttl(&self) -> Duration {
        self.sessions.ttl()
    }
}

/// The cookie's name: under TLS the `__Host-` prefix makes browsers refuse
/// it unless it is `Secure`, `Path=/` and has no `Domain`.
pub fn cookie_name(tls: bool) -> &'static str {
    if tls { "__Host-termstream" } else { "termstream" }
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn read_cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

fn set_cookie(tls: bool, value: &str, max_age: u64) -> HeaderValue {
    let secure = if tls { "; Secure" } else { "" };
    let cookie = format!(
        "{}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}",
        cookie_name(tls)
    );
    HeaderValue::from_str(&cookie).expect("cookie characters are ASCII")
}

/// The body of `POST /api/login-codes`; empty for the caller's own scope.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// Narrow the code to these projects (each at most the caller's access).
    projects: Option<BTreeMap<String, Access>>,
}

#[utoipa::path(post, path = "/api/login-codes", request_body(content = Option<CodeRequest>, description = "Optional: narrow the code to these projects."),
    responses((status = 200, body = LoginCode, description = "A single-use code that logs a browser in at `path`, valid for `login_code_ttl_ms`."),
        (status = 403, body = ErrorBody, description = "`forbidden`: the Host or the Origin is not allowed here, a \
            request came through a reverse proxy to a server with no token, the credential cannot give the access \
            asked for, or a login cookie asked for a code that is not read-only."),
        (status = 503, body = ErrorBody, description = "capacity: `max_tickets` login codes are outstanding.")))]
/// `POST /api/login-codes`: a one-time code for `/login?code=CODE`, carrying
/// the caller's grant or a narrower one. A login session (cookie) may mint
/// only read-only codes, whose sessions end no later than its own: it could
/// otherwise renew itself forever.
pub async fn issue_code(
    State(sec): State<Arc<Security>>,
    grant: Grant,
    headers: HeaderMap,
    cookie: Option<Extension<CookieAuth>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<LoginCode>, ApiError> {
    // No body asks for the caller's whole grant.
    let body = body.map_err(body_rejection)?;
    let req: CodeRequest = if body.iter().all(u8::is_ascii_whitespace) {
        CodeRequest::default()
    } else {
        parse_object(&body)?
    };
    let store = &sec.logins;
    let cap = match &cookie {
        None => None,
        Some(_) => {
            let read_only = req
                .projects
                .as_ref()
                .is_some_and(|p| p.values().all(|a| *a == Access::Read));
            if !read_only {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    "a login cookie may only make read-only codes: give projects, each \"read\"",
                ));
            }
            let id = read_cookie(&headers, cookie_name(sec.tls()));
            let end = id.and_then(|id| store.session_end(id));
            Some(end.ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "the login has expired or ended"))?)
        }
    };
    let grant = match req.projects {
        None => grant,
        Some(wanted) => narrow(&grant, wanted)?,
    };
    let code = match cap {
        None => store.issue_code(grant)?,
        Some(cap) => store.issue_code_until(grant, cap)?,
    };
    Ok(Json(LoginCode {
        path: format!("/login?code={code}"),
        code,
        expires_in_ms: store.code_ttl().as_millis() as u64,
    }))
}

/// `grant` narrowed to `wanted`, which must not exceed it.
fn narrow(grant: &Grant, wanted: BTreeMap<String, Access>) -> Result<Grant, ApiError> {
    if wanted.is_empty() {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "projects must name at least one project",
        ));
    }
    if let Some((p, _)) = wanted
        .iter()
        .find(|(p, a)| grant.access(p).is_none_or(|have| have < **a))
    {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this token cannot grant that access to project {p:?}"),
        ));
    }
    Ok(Grant {
        scope: Scope::Projects(wanted).into(),
        ..grant.clone()
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LoginQuery {
    /// The one-time code from `POST /api/login-codes`.
    code: Option<String>,
}

#[utoipa::path(get, path = "/login", params(LoginQuery), security(()),
    responses((status = 303, description = "Logged in: the session cookie is set; redirects to `/`.",
        headers(("location" = String), ("set-cookie" = String))),
        (status = 401, description = "The code is missing, unknown, used or expired: the API's error, or a page saying so for a request that accepts `text/html` (a browser; not stored: `Cache-Control: no-store`).",
            headers(("vary" = String, description = "`accept`: the answer depends on the request's Accept header.")),
            content((ErrorBody = "application/json"), ("text/html"))),
        (status = 503, body = ErrorBody, description = "capacity: `max_login_sessions` login sessions are open.")))]
/// `GET /login?code=CODE`: a valid code sets the session cookie and
/// redirects to `/`; anything else is 401 and sets nothing. A browser (a
/// request that accepts `text/html`) is told so by a page, since a person
/// opening a used or expired link reads the answer.
pub async fn login(
    State(sec): State<Arc<Security>>,
    headers: HeaderMap,
    query: Result<Query<LoginQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let id = match q.code {
        Some(code) => sec.logins.redeem(&code)?,
        None => None,
    };
    let Some(id) = id else { return Ok(refused(&headers)) };
    let cookie = set_cookie(sec.tls(), &id, sec.logins.session_ttl().as_secs());
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, HeaderValue::from_static("/")),
            (header::SET_COOKIE, cookie),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response())
}

/// What a person reads after opening a login link that does not work.
const REFUSED_PAGE: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>termstream: login link refused</title></head>\
<body style=\"font-family: system-ui, sans-serif; max-width: 40em; margin: 3em auto; padding: 0 1em; line-height: 1.5\">\
<h1>termstream</h1><p><strong>This login link is unknown, used or expired.</strong> A link works once, \
and only for a short time after it is made.</p><p>Ask whoever sent it for a new one and open it in this browser \
at once. <a href=\"/\">The page</a> says how someone with a token makes one.</p></body></html>";

/// The refusal of a login link: the API's 401, or for a browser a page
/// saying what happened and what to do. Both say `Vary: Accept`, as the
/// answer depends on it.
fn refused(headers: &HeaderMap) -> Response {
    let browser = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    let vary = (header::VARY, HeaderValue::from_static("accept"));
    if !browser {
        let refusal = ApiError::new(ErrorCode::Unauthorized, "the login code is unknown, used or expired");
        return ([vary], refusal).into_response();
    }
    (
        StatusCode::UNAUTHORIZED,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            vary,
        ],
        REFUSED_PAGE,
    )
        .into_response()
}

#[utoipa::path(post, path = "/api/logout", security(()),
    responses((status = 204, description = "Logged out; the cookie is cleared.", headers(("set-cookie" = String)))))]
/// `POST /api/logout`: ends the login session of the request's cookie, if
/// any, and clears the cookie. Needs no credential (it only takes away).
pub async fn logout(State(sec): State<Arc<Security>>, headers: HeaderMap) -> Response {
    if let Some(id) = read_cookie(&headers, cookie_name(sec.tls())) {
        sec.logins.logout(id);
    }
    (
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, set_cookie(sec.tls(), "", 0))],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(projects: &[(&str, Access)]) -> Grant {
        let map = projects.iter().map(|(p, a)| (p.to_string(), *a)).collect();
        Grant {
            name: "t".into(),
            scope: Scope::Projects(map).into(),
            token: true,
            peer: None,
        }
    }

    #[test]
    fn a_code_works_once_for_one_session() {
        let store = LoginStore::new(Duration::from_secs(60), 10, Duration::from_secs(60), 10);
        let code = store.issue_code(Grant::open()).unwrap();
        let id = store.redeem(&code).unwrap().expect("a live code");
        assert_eq!(store.redeem(&code).unwrap(), None, "used");
        assert_eq!(store.session(&id), Some(Grant::open()));
        store.logout(&id);
        assert_eq!(store.session(&id), None);
    }

    #[test]
    fn expired_codes_and_sessions_fail_and_the_stores_are_bounded() {
        let store = LoginStore::new(Duration::ZERO, 1, Duration::ZERO, 1);
        let code = store.issue_code(Grant::open()).unwrap();
        assert_eq!(store.redeem(&code).unwrap(), None, "expired");
        let live = LoginStore::new(Duration::from_secs(60), 1, Duration::ZERO, 1);
        let code = live.issue_code(Grant::open()).unwrap();
        assert!(live.issue_code(Grant::open()).is_err(), "full of live codes");
        let id = live.redeem(&code).unwrap().unwrap();
        assert_eq!(live.session(&id), None, "an expired session");
    }

    #[test]
    fn a_capped_code_opens_a_session_that_ends_by_the_cap() {
        let store = LoginStore::new(Duration::from_secs(60), 10, Duration::from_secs(3600), 10);
        let cap = Instant::now() + Duration::from_secs(5);
        let code = store.issue_code_until(grant(&[("web", Access::Read)]), cap).unwrap();
        let id = store.redeem(&code).unwrap().expect("a live code");
        let end = store.session_end(&id).unwrap();
        assert!(end <= cap, "the session ends by its issuer's end");
        let plain = store.issue_code(Grant::open()).unwrap();
        let id = store.redeem(&plain).unwrap().unwrap();
        assert!(store.session_end(&id).unwrap() > Instant::now() + Duration::from_secs(3000));
        assert!(store.caps.lock().unwrap().is_empty(), "redeemed caps are dropped");
    }

    #[test]
    fn a_code_cannot_grant_more_than_its_issuer() {
        let writer = grant(&[("web", Access::Write), ("api", Access::Read)]);
        let read_web = narrow(&writer, [("web".to_string(), Access::Read)].into()).unwrap();
        assert_eq!(read_web.access("web"), Some(Access::Read));
        assert_eq!(read_web.access("api"), None);
        assert!(narrow(&writer, [("api".to_string(), Access::Write)].into()).is_err());
        assert!(narrow(&writer, [("other".to_string(), Access::Read)].into()).is_err());
        assert!(narrow(&writer, BTreeMap::new()).is_err());
        assert!(narrow(&Grant::open(), [("any".to_string(), Access::Write)].into()).is_ok());
    }

    #[test]
    fn cookies_are_read_by_name() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; termstream=ls_x ; b=2"));
        assert_eq!(read_cookie(&h, "termstream"), Some("ls_x"));
        assert_eq!(read_cookie(&h, "__Host-termstream"), None);
        let c = set_cookie(true, "v", 5);
        assert_eq!(
            c,
            "__Host-termstream=v; HttpOnly; SameSite=Strict; Path=/; Max-Age=5; Secure"
        );
    }
}
