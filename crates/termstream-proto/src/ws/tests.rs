//! Unit tests of the socket messages: the flat dialect's aliases, the
//! names and shapes of server messages (a detach's reason, an input's
//! refusal, as older and newer servers send them), and the binary output
//! frame.

use super::*;

#[test]
fn flat_aliases_parse_as_dotted() {
    let m: ClientMessage = serde_json::from_str(r#"{"type":"terminal_input","sessionName":"a","data":"x"}"#).unwrap();
    assert_eq!(
        m,
        ClientMessage::Input {
            session_id: SessionId::new("a").unwrap(),
            data: "x".into(),
            seq: None,
            response: false
        }
    );
}

#[test]
fn server_messages_use_the_documented_names() {
    let m = ServerMessage::Connected {
        message: "hi".into(),
        client_count: 2,
        client_id: "c1".into(),
    };
    assert_eq!(
        serde_json::to_value(&m).unwrap(),
        serde_json::json!({"type":"connected","message":"hi","client_count":2,"clientId":"c1"})
    );
}

#[test]
fn detached_carries_its_reason_and_reads_older_and_newer_servers() {
    let id = SessionId::new("s").unwrap();
    let m = ServerMessage::Detached {
        session_id: id.clone(),
        reason: Some(DetachReason::Released),
    };
    assert_eq!(
        serde_json::to_value(&m).unwrap(),
        serde_json::json!({"type":"session.detached","sessionId":"s","reason":"released"})
    );
    let read = |text: &str| match serde_json::from_str::<ServerMessage>(text).unwrap() {
        ServerMessage::Detached { reason, .. } => reason,
        other => panic!("{other:?}"),
    };
    assert_eq!(read(r#"{"type":"session.detached","sessionId":"s"}"#), None);
    assert_eq!(
        read(r#"{"type":"session.detached","sessionId":"s","reason":"detach"}"#),
        Some(DetachReason::Detach)
    );
    assert_eq!(
        read(r#"{"type":"session.detached","sessionId":"s","reason":"deleted"}"#),
        Some(DetachReason::Deleted)
    );
    assert_eq!(
        read(r#"{"type":"session.detached","sessionId":"s","reason":"moved"}"#),
        Some(DetachReason::Unknown)
    );
}

#[test]
fn an_input_refusal_names_its_request_and_seq_and_reads_older_servers() {
    let m = ServerMessage::Error {
        code: ErrorCode::SessionNotFound,
        message: "gone".into(),
        session_id: Some(SessionId::new("s").unwrap()),
        request: Some(INPUT_REQUEST.into()),
        seq: Some(7),
    };
    let v = serde_json::to_value(&m).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"type":"error","code":"session_not_found","message":"gone",
            "sessionId":"s","request":"terminal.input","seq":7})
    );
    assert_eq!(serde_json::from_value::<ServerMessage>(v).unwrap(), m);
    let older: ServerMessage =
        serde_json::from_str(r#"{"type":"error","code":"session_not_found","message":"x","sessionId":"s"}"#).unwrap();
    assert!(matches!(
        older,
        ServerMessage::Error {
            request: None,
            seq: None,
            ..
        }
    ));
}

#[test]
fn binary_frames_round_trip() {
    let mut f = Vec::new();
    binary::encode_header(&mut f, "sess-1", Stream::Stderr, 1 << 40);
    f.extend_from_slice(b"\xffdata");
    let d = binary::decode(&f).unwrap();
    assert_eq!(d.session_id, "sess-1");
    assert_eq!(d.stream, Stream::Stderr);
    assert_eq!(d.offset, 1 << 40);
    assert_eq!(d.data, b"\xffdata");
    assert!(binary::decode(&f[..5]).is_none());
}
