//! The release handling of [`Followed`], event by event, without a
//! server: what each event asks of the verb (the attach again itself is
//! the one step left out, [`Next::AttachAgain`]).

use termstream_client::proto::ws::{ATTACH_REQUEST, DetachReason, INPUT_REQUEST, LogPosition};
use termstream_client::{Event, Resume};
use termstream_proto::{Epoch, ErrorCode, SessionId, SessionStatus, Stream};

use super::{Followed, Next, Step};

fn id() -> SessionId {
    SessionId::new("s").unwrap()
}

fn attached(epoch: u64, offset: u64) -> Event {
    Event::Attached {
        session_id: id(),
        epoch: Epoch(epoch),
        offset,
        cols: 80,
        rows: 24,
        status: SessionStatus::Running,
        recovered: None,
    }
}

fn detached(reason: Option<DetachReason>) -> Event {
    Event::Detached {
        session_id: id(),
        reason,
    }
}

/// An error naming the session: `attach` answers the verb's attach,
/// else it answers input.
fn refusal(code: ErrorCode, attach: bool) -> Event {
    Event::ServerError {
        code,
        message: "no session has id \"s\"".into(),
        session_id: Some(id()),
        request: Some(if attach { ATTACH_REQUEST } else { INPUT_REQUEST }.to_owned()),
        refused_input: (!attach).then_some(3),
    }
}

fn take(f: &mut Followed, ev: Event) -> Next {
    f.take(&id(), &ev).expect("no failure")
}

/// Attached at epoch 1, offset 0, as a verb is before a release.
fn following() -> Followed {
    let mut f = Followed::new(None, Resume::Exact);
    assert_eq!(take(&mut f, attached(1, 0)), Next::Step(Step::Pass), "the first attach");
    f
}

/// A snapshot or output from before the position leaves it where it
/// is: attaching again from there would print what was printed.
#[test]
fn the_position_only_moves_forward() {
    let mut f = Followed::new(
        Some(LogPosition {
            epoch: Epoch(1),
            offset: 100,
        }),
        Resume::Exact,
    );
    let restore = Event::Restore {
        session_id: id(),
        data: String::new(),
        offset: 50,
        cols: 80,
        rows: 24,
    };
    take(&mut f, restore);
    assert_eq!(f.at.map(|p| p.offset), Some(100), "a snapshot from further back");
    let output = |offset: u64, data: &'static [u8]| Event::Output {
        session_id: id(),
        stream: Stream::Pty,
        offset,
        data: bytes::Bytes::from_static(data),
    };
    take(&mut f, output(90, b"12345"));
    assert_eq!(f.at.map(|p| p.offset), Some(100), "output from further back");
    take(&mut f, output(100, b"12345"));
    assert_eq!(f.at.map(|p| p.offset), Some(105), "output on from the position");
}

/// A release asks for an attach again; its answer ends the re-attach,
/// unless it is another incarnation of the id (the one followed was
/// deleted, the id taken again): then the session is gone.
#[test]
fn a_release_attaches_again_and_another_incarnation_is_gone() {
    let mut f = following();
    assert_eq!(take(&mut f, detached(Some(DetachReason::Released))), Next::AttachAgain);
    assert!(f.reattaching());
    assert_eq!(take(&mut f, attached(1, 0)), Next::Step(Step::Reattached));
    assert!(!f.reattaching());
    take(&mut f, detached(Some(DetachReason::Released)));
    assert_eq!(take(&mut f, attached(2, 0)), Next::Step(Step::Gone));
    assert!(!f.reattaching());
}

/// A detach for any other reason, or none (a server before the field),
/// ends the verb as for a deletion.
#[test]
fn a_detach_but_a_release_is_gone() {
    for reason in [Some(DetachReason::Deleted), Some(DetachReason::Detach), None] {
        let mut f = following();
        assert_eq!(take(&mut f, detached(reason)), Next::Step(Step::Gone), "{reason:?}");
    }
}

/// Refusals of input or a resize naming the session, whatever their
/// code, and from a server before `request` too: while re-attaching
/// they are taken here, otherwise the verb sees them (it reads which keys
/// were refused from them); none ends the verb.
#[test]
fn refusals_of_input_are_the_verbs_and_end_nothing() {
    let mut f = following();
    let not_found = || refusal(ErrorCode::SessionNotFound, false);
    assert_eq!(take(&mut f, not_found()), Next::Step(Step::Pass), "before the release");
    take(&mut f, detached(Some(DetachReason::Released)));
    assert_eq!(take(&mut f, not_found()), Next::Step(Step::Taken), "while re-attaching");
    let limited = refusal(ErrorCode::RateLimited, false);
    assert_eq!(take(&mut f, limited), Next::Step(Step::Taken));
    let older = Event::ServerError {
        code: ErrorCode::SessionNotFound,
        message: String::new(),
        session_id: Some(id()),
        request: None,
        refused_input: None,
    };
    assert_eq!(
        take(&mut f, older),
        Next::Step(Step::Taken),
        "a server before `request`"
    );
    assert_eq!(take(&mut f, attached(1, 0)), Next::Step(Step::Reattached));
}

/// The refusal of the attach again: the session is gone when it did not
/// come back within the server's attach wait; another code (no slot
/// free) fails the verb, as the session may still exist. The refusal of
/// the verb's own first attach is the verb's.
#[test]
fn the_refusal_of_the_attach_again() {
    let mut f = following();
    take(&mut f, detached(Some(DetachReason::Released)));
    assert_eq!(
        take(&mut f, refusal(ErrorCode::SessionNotFound, true)),
        Next::Step(Step::Gone)
    );
    let mut f = following();
    take(&mut f, detached(Some(DetachReason::Released)));
    let failure = f
        .take(&id(), &refusal(ErrorCode::RateLimited, true))
        .expect_err("a failure");
    assert_eq!(failure.code, crate::cli::exit::FAILURE, "{failure:?}");
    assert!(failure.message.contains("no session has id"), "{failure:?}");
    let mut f = Followed::new(None, Resume::Screen);
    assert_eq!(
        take(&mut f, refusal(ErrorCode::SessionNotFound, true)),
        Next::Step(Step::Pass)
    );
}

/// Events of other sessions are the verb's, and move nothing.
#[test]
fn other_sessions_pass() {
    let mut f = following();
    let other = Event::Detached {
        session_id: SessionId::new("t").unwrap(),
        reason: Some(DetachReason::Released),
    };
    assert_eq!(take(&mut f, other), Next::Step(Step::Pass));
    assert!(!f.reattaching());
}
