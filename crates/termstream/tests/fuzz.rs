//! Bad input, generated: the protocol decoder, the binary frame decoder, the
//! REST bodies, the event validator and the screen model are fed arbitrary
//! bytes and JSON, and must never panic; a live `/ws` socket fed arbitrary
//! text keeps answering. Runs are short (256 cases) so the suite stays fast;
//! set `PROPTEST_CASES` for a longer hunt. Failures proptest finds are
//! written to `proptest-regressions/fuzz.txt` beside this crate and replayed
//! first on every later run: keep that file in the repo. Hand-picked seeds
//! (inputs that once mattered) are plain tests at the end.

mod common;

use proptest::prelude::*;
use serde_json::{Value, json};
use termstream::api::events;
use termstream::session::screen::ScreenModel;
use termstream_proto::compat::StartRequest;
use termstream_proto::ws::{ClientMessage, binary};
use termstream_proto::{CreateSession, InputRequest, ResizeRequest};

/// Arbitrary JSON, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(field_name(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Field names the decoders know, and others.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "type",
            "sessionId",
            "sessionName",
            "data",
            "seq",
            "since",
            "epoch",
            "offset",
            "output",
            "cols",
            "rows",
            "channels",
            "id",
            "kind",
            "argv",
            "command",
            "cwd",
            "env",
            "project",
            "dataBase64",
            "eof",
            "title",
            "message",
            "taskId",
            "status",
            "level",
            "metadata",
            "priority",
            "session_id",
        ])
        .prop_map(String::from),
        "[a-zA-Z_]{1,8}",
    ]
}

/// A JSON object with a known message `type` and arbitrary fields.
fn typed_message() -> impl Strategy<Value = Value> {
    let types: Vec<&str> = ClientMessage::TYPES.to_vec();
    (
        prop::sample::select(types),
        prop::collection::btree_map(field_name(), json_value(), 0..6),
    )
        .prop_map(|(t, fields)| {
            let mut m: serde_json::Map<String, Value> = fields.into_iter().collect();
            m.insert("type".into(), Value::from(t));
            Value::Object(m)
        })
}

/// Terminal output: bytes biased towards escape sequences and UTF-8.
fn terminal_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..16),
        "[ -~]{0,16}".prop_map(String::into_bytes),
        "\\PC{0,6}".prop_map(String::into_bytes),
        (
            prop::sample::select(vec!["\x1b[", "\x1b[?", "\x1b]", "\x1bP", "\x1b(", "\x1b"]),
            prop::collection::vec(0u16..2000, 0..5),
            prop::sample::select(vec![
                'm', 'H', 'J', 'K', 'h', 'l', 'r', 'S', 'T', '@', 'L', 'M', 'P', 'X', 'n', 'q', '\x07'
            ])
        )
            .prop_map(|(intro, params, fin)| {
                let p: Vec<String> = params.iter().map(u16::to_string).collect();
                format!("{intro}{}{fin}", p.join(";")).into_bytes()
            }),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn client_messages_from_any_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = serde_json::from_slice::<ClientMessage>(&bytes);
    }

    #[test]
    fn client_messages_from_any_json_never_panic(v in prop_oneof![typed_message(), json_value()]) {
        if let Ok(m) = serde_json::from_value::<ClientMessage>(v) {
            // What parses serialises and parses back the same.
            let again: ClientMessage = serde_json::from_value(serde_json::to_value(&m).unwrap()).unwrap();
            prop_assert_eq!(again, m);
        }
    }

    #[test]
    fn binary_frames_decode_anything_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = binary::decode(&bytes);
    }

    #[test]
    fn binary_frames_round_trip(id in "[a-zA-Z0-9_-]{1,128}", tag in 0u8..3, offset in any::<u64>(), data in prop::collection::vec(any::<u8>(), 0..64)) {
        let Some(stream) = termstream_proto::Stream::from_tag(tag) else { return Ok(()) };
        let mut f = Vec::new();
        binary::encode_header(&mut f, &id, stream, offset);
        f.extend_from_slice(&data);
        let d = binary::decode(&f).unwrap();
        prop_assert_eq!((d.session_id, d.stream, d.offset, d.data), (id.as_str(), stream, offset, data.as_slice()));
    }

    #[test]
    fn rest_bodies_and_events_never_panic(v in json_value()) {
        let _ = serde_json::from_value::<CreateSession>(v.clone());
        let _ = serde_json::from_value::<InputRequest>(v.clone());
        let _ = serde_json::from_value::<ResizeRequest>(v.clone());
        let _ = serde_json::from_value::<StartRequest>(v.clone());
        let _ = events::validate(&v);
    }

    #[test]
    fn the_screen_model_takes_any_output(cols in 1u16..200, rows in 1u16..60, chunks in prop::collection::vec(terminal_bytes(), 1..6), resize in (0u16..300, 0u16..100)) {
        let mut screen = ScreenModel::new(cols, rows, 50);
        for c in &chunks {
            screen.feed(c);
        }
        screen.resize(resize.0, resize.1);
        let snap = screen.snapshot();
        let (c, r) = screen.size();
        // A snapshot replays into a fresh terminal without panic.
        let mut replay = ScreenModel::new(c, r, 50);
        replay.feed(snap.as_bytes());
        let _ = replay.snapshot();
    }
}

/// A live socket fed arbitrary text answers each message and stays usable.
#[tokio::test]
async fn a_live_socket_survives_arbitrary_messages() {
    use common::ws::WsClient;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let server = common::TestServer::start().await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    let mut runner = TestRunner::deterministic();
    let strategy = prop_oneof![typed_message().prop_map(|v| v.to_string()), ".{0,64}"];
    for _ in 0..128 {
        let text = strategy.new_tree(&mut runner).unwrap().current();
        ws.send_raw(tokio_tungstenite::tungstenite::Message::Text(text.into()))
            .await;
    }
    ws.send(json!({"type":"ping"})).await;
    ws.until_type("pong", common::secs(30)).await;
    let (status, _) = server.get("/health").await;
    assert_eq!(status, 200);
}

/// Seeds: inputs worth keeping whatever the generator does.
#[test]
fn seeds() {
    for text in [
        r#"{"type":"terminal.input","sessionId":"a","data":"x","seq":18446744073709551615}"#,
        r#"{"type":"terminal.resize","sessionId":"a","cols":65536,"rows":1}"#,
        r#"{"type":"session.attach","sessionId":"","since":{"epoch":"zz","offset":-1}}"#,
        r#"{"type":"subscribe","channels":null}"#,
        r#"{"type":"terminal_input","sessionName":"a","sessionId":"b","data":"x"}"#,
    ] {
        let _ = serde_json::from_str::<ClientMessage>(text);
    }
    assert!(
        binary::decode(&[1, 0, 255, 0, 0, 0, 0, 0, 0, 0, 0]).is_none(),
        "id length past the end"
    );
    let mut screen = ScreenModel::new(1, 1, 0);
    for seq in [
        &b"\x1b[99999;99999H\x1b[?1049h\xf0\x9f"[..],
        b"\x1b[999999999999999999999m",
        b"\x1b[4294967296L\x1b[0;0r",
        b"\xe2\x80",
    ] {
        screen.feed(seq);
    }
    let _ = screen.snapshot();
}
