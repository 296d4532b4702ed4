//! Unit tests of the guard's pure parts: which peers count as loopback,
//! and who is served without a token.

use super::*;

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
