//! Authentication and authorization: who is asking, and what they may do.
//!
//! Every request passes [`guard`], a middleware that runs before any
//! handler, in this order:
//! 1. `Host` must be allowed when bound to loopback ([`origin`]); else 403.
//! 2. A WebSocket upgrade (`Upgrade: websocket` on a route of
//!    [`crate::api::WEBSOCKET_ROUTES`]: on any other route the header
//!    changes nothing), or a request of a method other than GET/HEAD/OPTIONS,
//!    that carries `Origin` must come from an allowed origin; else 403.
//! 3. The credential ([`token`], [`ticket`]): with no token configured, the
//!    peer must be loopback (unless `insecure_no_auth`) and is granted
//!    everything. Otherwise one of `Authorization: Bearer TOKEN`;
//!    on WebSocket upgrades `Sec-WebSocket-Protocol: bearer.TOKEN` or
//!    `?token=TICKET`; a long-lived token in the query only when
//!    `allow_token_in_query`; failing all of these, the login cookie
//!    ([`login`]), which then needs an allowed `Origin` on a WebSocket
//!    upgrade or a state-changing request. None or a bad one: 401.
//!    `/health`, `/healthz`, `/readyz`, the page (`/`, `/assets/...`),
//!    `GET /login` and `POST /api/logout` need none.
//! 4. The route's need ([`policy`]) against the credential's [`Grant`].
//! 5. WebSocket upgrades take a connection permit ([`crate::limits`]).
//!
//! A terminate or a delete then runs its handler as the registry's
//! finishing work ([`ending`]), so the session's end and its audit survive a
//! client that hangs up.
//!
//! So a WebSocket with a bad credential is refused with 401 before the 101
//! answer, and no session is touched. This is also the socket's
//! authentication deadline: a socket exists only once authenticated, so
//! there is no unauthenticated socket to time out; the upgrade request
//! itself is bounded by the header read timeout ([`crate::server::accept`]). Handlers read the [`Grant`] from the
//! request (it is an extractor, and refuses with 401 if the guard did not
//! run, so a route mounted outside it fails closed). Every response gets the
//! security headers.

mod ending;
pub mod expiring;
mod grant;
pub mod login;
pub mod origin;
pub mod policy;
pub mod proxy;
pub mod ticket;
pub mod token;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use termstream_proto::ErrorCode;
use termstream_proto::replies::WsTicket;

use crate::config::Config;
use crate::error::ApiError;
use crate::limits::{ConnLimiter, ConnPermit, LimitError, SessionQuota};
use crate::observe::{audit, metrics};
use crate::registry::Registry;
use ending::{Ending, refused_write};
use login::LoginStore;
use origin::{BrowserPolicy, Origin};
use proxy::TrustedProxies;
use ticket::TicketStore;
use token::TokenTable;

pub use grant::Grant;
pub use token::Access as ProjectAccess;

/// The `bearer.TOKEN` subprotocol a WebSocket client authenticated with;
/// the upgrade must echo it (or another protocol the client offered).
#[derive(Debug, Clone)]
pub struct BearerProtocol(pub String);

/// Marks a request authenticated by the login cookie ([`login`]).
#[derive(Debug, Clone, Copy)]
pub struct CookieAuth;

/// A WebSocket upgrade's connection permit; held by the socket's task.
#[derive(Debug, Clone)]
pub struct Permit(pub Arc<ConnPermit>);

/// The server's security state, shared by every request.
#[derive(Debug)]
pub struct Security {
    /// The configured tokens; replaced whole by a reload (SIGHUP).
    tokens: std::sync::RwLock<Arc<TokenTable>>,
    pub tickets: TicketStore,
    /// Login codes and the sessions of the login cookie.
    pub logins: LoginStore,
    pub browser: BrowserPolicy,
    pub allow_token_in_query: bool,
    pub insecure_no_auth: bool,
    pub connections: Arc<ConnLimiter>,
    pub quota: SessionQuota,
    /// Reverse proxies whose forwarding headers are believed ([`proxy`]).
    pub proxies: TrustedProxies,
}

/// Why the server refuses to start with this configuration.
#[derive(Debug, thiserror::Error)]
pub enum SecurityConfigError {
    #[error(transparent)]
    Tokens(#[from] token::TokenConfigError),
    #[error("allowed origin {0:?} is not scheme://host[:port]")]
    BadOrigin(String),
    #[error(transparent)]
    BadProxy(#[from] proxy::BadProxy),
    #[error(
        "refusing to listen on {0} without authentication: configure a token (`termstream token create`), \
         listen on a loopback address, or pass --insecure-no-auth"
    )]
    OpenOnNetwork(SocketAddr),
}

impl Security {
    /// Builds the security state for a server bound to `bound`.
    pub fn new(config: &Config, bound: SocketAddr, tls: bool) -> Result<Security, SecurityConfigError> {
        let tokens = TokenTable::new(&config.tokens)?;
        if tokens.is_empty() && !bound.ip().is_loopback() && !config.insecure_no_auth {
            return Err(SecurityConfigError::OpenOnNetwork(bound));
        }
        let allowed_origins = config
            .allowed_origins
            .iter()
            .map(|o| Origin::parse(o).ok_or_else(|| SecurityConfigError::BadOrigin(o.clone())))
            .collect::<Result<_, _>>()?;
        Ok(Security {
            tokens: std::sync::RwLock::new(Arc::new(tokens)),
            tickets: TicketStore::new(
                std::time::Duration::from_millis(config.ticket_ttl_ms),
                config.max_tickets,
            ),
            logins: LoginStore::new(
                std::time::Duration::from_millis(config.login_code_ttl_ms),
                config.max_tickets,
                std::time::Duration::from_secs(config.login_session_ttl_secs),
                config.max_login_sessions,
            ),
            browser: BrowserPolicy {
                bound,
                scheme: if tls { "https" } else { "http" },
                allowed_origins,
                allowed_hosts: config.allowed_hosts.clone(),
            },
            allow_token_in_query: config.allow_token_in_query,
            insecure_no_auth: config.insecure_no_auth,
            connections: ConnLimiter::new(config.max_connections, config.max_connections_per_ip),
            quota: SessionQuota::new(config.max_sessions_per_token),
            proxies: TrustedProxies::parse(&config.trusted_proxies)?,
        })
    }

    /// Whether the server runs without authentication.
    pub fn open(&self) -> bool {
        self.tokens().is_empty()
    }

    /// The configured tokens now.
    pub fn tokens(&self) -> Arc<TokenTable> {
        self.tokens.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the tokens with those of `config` (a reload). Refused, the
    /// old ones kept, when they are not valid, or when none would leave a
    /// server on a network address open.
    pub fn reload_tokens(&self, config: &Config) -> Result<usize, SecurityConfigError> {
        let table = TokenTable::new(&config.tokens)?;
        let bound = self.browser.bound;
        if table.is_empty() && !self.open() && !bound.ip().is_loopback() && !self.insecure_no_auth {
            return Err(SecurityConfigError::OpenOnNetwork(bound));
        }
        let n = config.tokens.len();
        *self.tokens.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
        Ok(n)
    }

    /// Whether the server serves TLS.
    pub fn tls(&self) -> bool {
        self.browser.scheme == "https"
    }
}

impl From<LimitError> for ApiError {
    fn from(e: LimitError) -> ApiError {
        let code = match e {
            LimitError::Total { .. } => ErrorCode::Capacity,
            LimitError::PerIp { .. } | LimitError::SessionsPerToken { .. } => ErrorCode::RateLimited,
        };
        ApiError::new(code, e.to_string())
    }
}

/// Whether `ip` is a loopback address (IPv4-mapped IPv6 included).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Forbidden, message)
}

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, message)
}

/// The middleware; see the module docs for what it checks, in order.
pub async fn guard(
    State(sec): State<Arc<Security>>,
    State(registry): State<Arc<Registry>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let client = sec.proxies.client(peer, req.headers());
    let client_ip = client.ip;
    let mut resp = match admit(&sec, &registry, peer, client, &mut req) {
        Ok(()) => match Ending::of(&registry, &req) {
            // Ended and audited even when the client hangs up.
            Some(ending) => ending.run(&registry, req, next).await,
            None => next.run(req).await,
        },
        Err(Refusal(reason, e)) => {
            metrics::auth_failure(reason);
            audit::auth_failed(client_ip, reason, req.method().as_str(), req.uri().path(), &e.message);
            e.into_response()
        }
    };
    origin::security_headers(resp.headers_mut());
    resp
}

/// Why the guard refused a request: the step that failed (the reason of
/// the auth failure metric and the audit event), and the answer.
struct Refusal(&'static str, ApiError);

/// Tags an error with the guard step that raised it.
fn at(step: &'static str) -> impl FnOnce(ApiError) -> Refusal {
    move |e| Refusal(step, e)
}

fn admit(
    sec: &Security,
    registry: &Registry,
    peer: SocketAddr,
    client: proxy::Client,
    req: &mut Request,
) -> Result<(), Refusal> {
    let headers = req.headers();
    // Behind a proxy every client would look like loopback.
    if sec.open() && !sec.insecure_no_auth && proxy::is_forwarded(headers) {
        return Err(Refusal(
            "forwarded",
            forbidden(
                "this request came through a reverse proxy (it carries Forwarded or X-Forwarded-For) and no token \
                 is configured, so it cannot be told from a local client: configure a token (`termstream token \
                 create`), or set insecure_no_auth",
            ),
        ));
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    // A trusted proxy's own server name check stands for the Host check.
    if !client.via_trusted && !sec.browser.host_allowed(host) {
        return Err(Refusal("host", forbidden("this Host is not served here")));
    }
    // Only on a WebSocket route: elsewhere the header changes nothing (a
    // REST call that carries it is neither capped nor Origin-checked as a
    // socket). The guard runs after routing, so the route the router chose
    // decides, never a second reading of the path.
    let ws = is_websocket(headers)
        && req
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .is_some_and(|m| crate::api::WEBSOCKET_ROUTES.contains(&m.as_str()));
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    // `None`: no Origin; `Some(false)`: a foreign one.
    // Behind a trusted proxy the page's origin is what the client used.
    let scheme = client.proto.as_deref().unwrap_or(sec.browser.scheme);
    let own_host = client.host.as_deref().or(host);
    let origin_ok = headers.get(header::ORIGIN).map(|o| {
        o.to_str()
            .is_ok_and(|o| sec.browser.origin_allowed_as(o, scheme, own_host))
    });
    if origin_ok == Some(false) && (ws || !safe) {
        return Err(Refusal(
            "origin",
            forbidden("requests from this Origin are not allowed"),
        ));
    }
    if public(req.method(), req.uri().path()) {
        // No grant: a handler there that asked for one would get 401.
        return Ok(());
    }
    let mut grant = authenticate(sec, peer, req, ws).map_err(at("credential"))?;
    // A cookie rides along on any request the browser makes, so it counts
    // only on requests the server's own pages made: an allowed Origin where
    // browsers always send one, and never a foreign one.
    if req.extensions().get::<CookieAuth>().is_some() && origin_ok != Some(true) && (ws || !safe || origin_ok.is_some())
    {
        return Err(Refusal(
            "cookie_origin",
            forbidden("a request authenticated by the login cookie must come from an allowed Origin"),
        ));
    }
    grant.peer = Some(client.ip);
    if let Err(e) = policy::check(&grant, registry, req.method(), req.uri().path()) {
        if e.code == ErrorCode::ReadOnly {
            refused_write(registry, &grant, req.uri().path());
        }
        return Err(Refusal("scope", e));
    }
    if ws {
        let permit = sec
            .connections
            .acquire(client.ip)
            .map_err(|e| Refusal("connection_limit", e.into()))?;
        req.extensions_mut().insert(Permit(Arc::new(permit)));
    }
    req.extensions_mut().insert(grant);
    Ok(())
}

/// Routes that need no credential: the health checks, the web page's static
/// files ([`crate::page`]; they hold no secret), and the two ends of the
/// login cookie (the code is the credential; logout only takes away).
/// `HEAD /login` is not public: a link checker's HEAD must not use up a code.
fn public(method: &Method, path: &str) -> bool {
    let get = matches!(method.as_str(), "GET" | "HEAD");
    (get && crate::page::is_page_path(path))
        || matches!(
            (method.as_str(), path),
            ("GET" | "HEAD", "/health" | "/healthz" | "/readyz") | ("GET", "/login") | ("POST", "/api/logout")
        )
}

fn authenticate(sec: &Security, peer: SocketAddr, req: &mut Request, ws: bool) -> Result<Grant, ApiError> {
    if sec.open() {
        if !sec.insecure_no_auth && !is_loopback(peer.ip()) {
            return Err(forbidden("no token is configured, so only loopback clients are served"));
        }
        return Ok(Grant::open());
    }
    let from_token = |t: &str| {
        sec.tokens()
            .lookup(t)
            .map(|k| Grant {
                name: k.name.as_str().into(),
                scope: Arc::new(k.scope.clone()),
                token: true,
                peer: None,
            })
            .ok_or_else(|| unauthorized("the token is not valid"))
    };
    let headers = req.headers();
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let token = auth
            .to_str()
            .ok()
            .and_then(|a| a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("bearer ")))
            .ok_or_else(|| unauthorized("Authorization must be `Bearer TOKEN`"))?;
        return from_token(token.trim());
    }
    if ws {
        let offered = headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .find(|p| p.starts_with("bearer."))
            .map(str::to_owned);
        if let Some(proto) = offered {
            let grant = from_token(&proto["bearer.".len()..])?;
            req.extensions_mut().insert(BearerProtocol(proto));
            return Ok(grant);
        }
    }
    let query_token = req.uri().query().and_then(|q| {
        axum::extract::Query::<std::collections::HashMap<String, String>>::try_from_uri(req.uri())
            .ok()
            .and_then(|axum::extract::Query(mut m)| m.remove("token"))
            .filter(|_| !q.is_empty())
    });
    if let Some(t) = query_token {
        if t.starts_with("tkt_") {
            if !ws {
                return Err(unauthorized("a ticket only opens a WebSocket"));
            }
            return sec
                .tickets
                .redeem(&t)
                .ok_or_else(|| unauthorized("the ticket is unknown, used or expired"));
        }
        if !sec.allow_token_in_query {
            return Err(unauthorized(
                "a long-lived token in a URL is refused: send it in Authorization, or get a ticket from POST /api/ws-ticket",
            ));
        }
        return from_token(&t);
    }
    if let Some(id) = login::read_cookie(req.headers(), login::cookie_name(sec.tls())) {
        let grant = sec
            .logins
            .session(id)
            .ok_or_else(|| unauthorized("the login has expired or ended: log in again"))?;
        req.extensions_mut().insert(CookieAuth);
        return Ok(grant);
    }
    Err(unauthorized("a credential is required: Authorization: Bearer TOKEN"))
}

#[utoipa::path(post, path = "/api/ws-ticket", responses((status = 200, body = WsTicket, description = "A single-use ticket for a WebSocket upgrade (`?token=TICKET`), carrying the caller's access, valid for `ticket_ttl_ms`."),
    (status = 403, body = termstream_proto::ErrorBody, description = "`forbidden`: the Host or the Origin is not \
        allowed here, or a request came through a reverse proxy to a server with no token."),
    (status = 503, body = termstream_proto::ErrorBody, description = "capacity: `max_tickets` tickets are outstanding.")))]
/// `POST /api/ws-ticket`: a single-use ticket for `/ws?token=TICKET`,
/// carrying the caller's grant.
pub async fn ws_ticket(State(sec): State<Arc<Security>>, grant: Grant) -> Result<Json<WsTicket>, ApiError> {
    let ticket = sec.tickets.issue(grant)?;
    let ttl = sec.tickets.ttl().as_millis() as u64;
    Ok(Json(WsTicket {
        ticket,
        expires_in_ms: ttl,
    }))
}

#[cfg(test)]
mod tests;
