//! Unit tests of the guard's pure parts: which peers count as loopback,
//! who is served without a token, which routes are public, and where
//! `authenticate` reads a credential from (and where it refuses one).

use super::*;
use token::TokenEntry;

/// A peer that is not loopback, so nothing is served for being local.
const REMOTE: &str = "192.0.2.7:5000";

/// A guard bound to the network with one admin token named `ops`; the token.
fn with_token(allow_token_in_query: bool) -> (Security, String) {
    let secret = token::generate();
    let config = Config {
        tokens: vec![TokenEntry {
            name: Some("ops".into()),
            sha256: token::hash(&secret),
            admin: true,
            projects: Default::default(),
        }],
        allow_token_in_query,
        ..Config::default()
    };
    let sec = Security::new(&config, "0.0.0.0:8000".parse().unwrap(), false).unwrap();
    (sec, secret)
}

/// Authenticates a request for `uri` with `headers` from [`REMOTE`]; the
/// grant's name or the refusal's code, and the request (for its extensions).
fn auth(sec: &Security, uri: &str, headers: &[(&str, &str)], ws: bool) -> (Result<String, ErrorCode>, Request) {
    let mut req = Request::builder().uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = req.body(axum::body::Body::empty()).unwrap();
    let got = authenticate(sec, REMOTE.parse().unwrap(), &mut req, ws)
        .map(|g| g.name.to_string())
        .map_err(|e| e.code);
    (got, req)
}

#[test]
fn loopback_includes_mapped_addresses() {
    assert!(is_loopback("127.0.0.1".parse().unwrap()));
    assert!(is_loopback("127.8.9.10".parse().unwrap()));
    assert!(is_loopback("::1".parse().unwrap()));
    assert!(is_loopback("::ffff:127.0.0.1".parse().unwrap()));
    assert!(!is_loopback("10.0.0.1".parse().unwrap()));
    assert!(!is_loopback("::ffff:10.0.0.1".parse().unwrap()));
}

#[test]
fn without_a_token_only_loopback_peers_are_served() {
    let config = Config::default();
    let sec = Security::new(&config, "127.0.0.1:8000".parse().unwrap(), false).unwrap();
    let try_from = |peer: &str| {
        let mut req = Request::new(axum::body::Body::empty());
        authenticate(&sec, peer.parse().unwrap(), &mut req, false)
    };
    assert!(try_from("127.0.0.1:5000").is_ok());
    assert!(try_from("[::1]:5000").is_ok());
    assert_eq!(try_from("192.0.2.7:5000").unwrap_err().code, ErrorCode::Forbidden);
    assert_eq!(try_from("[2001:db8::1]:5000").unwrap_err().code, ErrorCode::Forbidden);

    let open = Config {
        insecure_no_auth: true,
        ..Config::default()
    };
    let sec = Security::new(&open, "0.0.0.0:8000".parse().unwrap(), false).unwrap();
    let mut req = Request::new(axum::body::Body::empty());
    assert!(authenticate(&sec, "192.0.2.7:5000".parse().unwrap(), &mut req, false).is_ok());
    assert!(matches!(
        Security::new(&Config::default(), "0.0.0.0:8000".parse().unwrap(), false),
        Err(SecurityConfigError::OpenOnNetwork(_))
    ));
}

#[test]
fn only_health_the_page_and_the_two_ends_of_the_login_are_public() {
    let public_to = |method: &str, path: &str| public(&method.parse().unwrap(), path);
    for (method, path) in [
        ("GET", "/health"),
        ("HEAD", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/"),
        ("HEAD", "/assets/app.js"),
        ("GET", "/login"),
        ("POST", "/api/logout"),
    ] {
        assert!(public_to(method, path), "{method} {path} is public");
    }
    for (method, path) in [
        // A link checker's HEAD must not use up a login code.
        ("HEAD", "/login"),
        ("POST", "/health"),
        ("POST", "/"),
        ("GET", "/api/sessions"),
        ("POST", "/api/ws-ticket"),
        ("GET", "/ws"),
        ("GET", "/assetsx"),
    ] {
        assert!(!public_to(method, path), "{method} {path} needs a credential");
    }
}

#[test]
fn a_token_is_read_from_authorization_only_as_bearer() {
    let (sec, secret) = with_token(false);
    let bearer = |scheme: &str, t: &str| {
        auth(
            &sec,
            "/api/sessions",
            &[("authorization", &format!("{scheme} {t}"))],
            false,
        )
        .0
    };
    assert_eq!(bearer("Bearer", &secret), Ok("ops".into()));
    assert_eq!(bearer("bearer", &secret), Ok("ops".into()));
    assert_eq!(bearer("Basic", &secret), Err(ErrorCode::Unauthorized));
    assert_eq!(bearer("Bearer", "tst_wrong"), Err(ErrorCode::Unauthorized));
    assert_eq!(bearer("Bearer", &token::hash(&secret)), Err(ErrorCode::Unauthorized));
    assert_eq!(
        auth(&sec, "/api/sessions", &[], false).0,
        Err(ErrorCode::Unauthorized),
        "no credential at all"
    );
}

#[test]
fn the_bearer_subprotocol_is_a_credential_only_for_a_websocket() {
    let (sec, secret) = with_token(false);
    let offered = format!("termstream, bearer.{secret}");
    let headers = [("sec-websocket-protocol", offered.as_str())];
    let (got, req) = auth(&sec, "/ws", &headers, true);
    assert_eq!(got, Ok("ops".into()));
    let echoed = req.extensions().get::<BearerProtocol>().map(|p| p.0.clone());
    assert_eq!(echoed, Some(format!("bearer.{secret}")), "the protocol to echo is kept");
    assert_eq!(
        auth(&sec, "/api/sessions", &headers, false).0,
        Err(ErrorCode::Unauthorized)
    );
}

#[test]
fn a_token_in_the_query_is_refused_unless_allowed() {
    let (sec, secret) = with_token(false);
    assert_eq!(
        auth(&sec, &format!("/ws?token={secret}"), &[], true).0,
        Err(ErrorCode::Unauthorized)
    );
    let (sec, secret) = with_token(true);
    assert_eq!(
        auth(&sec, &format!("/ws?token={secret}"), &[], true).0,
        Ok("ops".into())
    );
}

#[test]
fn a_ticket_opens_a_websocket_once_and_is_not_spent_on_rest() {
    let (sec, secret) = with_token(false);
    let headers = [("authorization", format!("Bearer {secret}"))];
    let mut req = Request::builder().uri("/api/ws-ticket");
    for (k, v) in &headers {
        req = req.header(*k, v);
    }
    let mut req = req.body(axum::body::Body::empty()).unwrap();
    let grant = authenticate(&sec, REMOTE.parse().unwrap(), &mut req, false).unwrap();
    let ticket = sec.tickets.issue(grant).unwrap();
    let uri = format!("/ws?token={ticket}");
    assert_eq!(
        auth(&sec, &uri, &[], false).0,
        Err(ErrorCode::Unauthorized),
        "a ticket is no REST credential"
    );
    assert_eq!(
        auth(&sec, &uri, &[], true).0,
        Ok("ops".into()),
        "refused on REST, not spent"
    );
    assert_eq!(auth(&sec, &uri, &[], true).0, Err(ErrorCode::Unauthorized), "once");
}
