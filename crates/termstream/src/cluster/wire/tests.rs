//! Tests of the wire format: what older nodes write and read.

use serde::Deserialize;
use serde_json::json;

use termstream_proto::Epoch;

use super::{Op, Request};

/// A request as an owner that predates `info` and `epoch` reads it (no
/// `deny_unknown_fields`: what it does not know, it skips).
#[derive(Debug, Deserialize)]
struct OldRequest {
    id: u64,
    session: String,
    #[serde(flatten)]
    op: OldOp,
}

/// `Op` as such an owner has it (the kinds these tests send).
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum OldOp {
    Resize { cols: u16, rows: u16 },
    Terminate,
}

#[test]
fn the_last_id_of_a_read_counts_an_entry_that_cannot_be_read() {
    use redis::Value;
    let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
    let entry = |id: &str, kind: &str| {
        Value::Array(vec![
            bulk(id),
            Value::Array(vec![
                bulk("k"),
                bulk(kind),
                bulk("c"),
                bulk("90"),
                bulk("r"),
                bulk("30"),
            ]),
        ])
    };
    // A resize, then an entry of a kind this node does not know.
    let read = Value::Array(vec![Value::Array(vec![
        bulk("termstream:out:s:e"),
        Value::Array(vec![entry("5-0", "r"), entry("9-0", "zz")]),
    ])]);
    assert_eq!(super::xread_entries(&read).len(), 1);
    assert_eq!(super::xread_last_id(&read).as_deref(), Some("9-0"));
    assert_eq!(super::xread_last_id(&Value::Nil), None);
    // The same as RESP3 gives it, and a read of unreadable entries only.
    let resp3 = Value::Map(vec![(
        bulk("termstream:out:s:e"),
        Value::Array(vec![entry("5-0", "r"), entry("9-0", "zz")]),
    )]);
    assert_eq!(super::xread_last_id(&resp3).as_deref(), Some("9-0"));
    let unreadable = Value::Array(vec![Value::Array(vec![
        bulk("termstream:out:s:e"),
        Value::Array(vec![entry("9-0", "zz")]),
    ])]);
    assert!(super::xread_entries(&unreadable).is_empty());
    assert_eq!(super::xread_last_id(&unreadable).as_deref(), Some("9-0"));
}

/// A resize request as a node that predates `info` writes it.
fn old_resize() -> serde_json::Value {
    json!({"id":7,"from":"n1","session":"s1","op":"resize","cols":100,"rows":30})
}

#[test]
fn a_resize_from_a_node_that_predates_info_does_not_ask_for_it() {
    let req: Request = serde_json::from_value(old_resize()).expect("read");
    assert!(
        matches!(
            req.op,
            Op::Resize {
                cols: 100,
                rows: 30,
                info: false
            }
        ),
        "{req:?}"
    );
}

#[test]
fn a_resize_that_does_not_ask_for_info_is_written_as_before() {
    let req: Request = serde_json::from_value(old_resize()).expect("read");
    assert_eq!(serde_json::to_value(&req).expect("write"), old_resize());
}

#[test]
fn an_owner_that_predates_info_reads_a_resize_that_asks_for_it() {
    let req = Request {
        id: 7,
        from: "n1".into(),
        session: "s1".parse().expect("id"),
        epoch: None,
        op: Op::Resize {
            cols: 100,
            rows: 30,
            info: true,
        },
    };
    let json = serde_json::to_value(&req).expect("write");
    assert_eq!(json["info"], true);
    let old: OldRequest = serde_json::from_value(json).expect("read by the old shape");
    assert!(matches!(old.op, OldOp::Resize { cols: 100, rows: 30 }), "{old:?}");
}

#[test]
fn a_request_from_a_node_that_predates_epoch_names_none_and_is_written_as_before() {
    // Such an owner applies it to the session of that id, whatever its
    // epoch, as before (see `Request::epoch`).
    let req: Request = serde_json::from_value(old_resize()).expect("read");
    assert_eq!(req.epoch, None);
    assert_eq!(serde_json::to_value(&req).expect("write"), old_resize());
}

#[test]
fn a_request_names_its_epoch_and_an_owner_that_predates_it_reads_it() {
    let req = Request {
        id: 9,
        from: "n1".into(),
        session: "s1".parse().expect("id"),
        epoch: Some(Epoch(0xaa)),
        op: Op::Terminate,
    };
    let json = serde_json::to_value(&req).expect("write");
    assert_eq!(
        json,
        json!({"id":9,"from":"n1","session":"s1","epoch":"00000000000000aa","op":"terminate"})
    );
    let back: Request = serde_json::from_value(json.clone()).expect("read");
    assert_eq!(back.epoch, Some(Epoch(0xaa)));
    assert!(matches!(back.op, Op::Terminate), "{back:?}");
    let old: OldRequest = serde_json::from_value(json).expect("read by the old shape");
    assert!(
        old.id == 9 && old.session == "s1" && matches!(old.op, OldOp::Terminate),
        "{old:?}"
    );
}

#[test]
fn a_request_with_an_epoch_that_cannot_be_read_is_refused() {
    let mut json = old_resize();
    json["epoch"] = json!("not-hex");
    assert!(serde_json::from_value::<Request>(json).is_err());
}
