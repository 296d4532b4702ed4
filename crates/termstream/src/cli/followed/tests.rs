//! The release handling of [`Followed`], event by event, without a
//! server: what each event asks of the verb (the attach again itself is
//! the one step left out, [`Next::AttachAgain`]).

use termstream_client::proto::ws::{ATTACH_REQUEST, DetachReason, LogPosition};
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

/// An error naming the session: `attach` answers the verb's attach.
fn refusal(code: ErrorCode, attach: bool) -> Event {
    Event::ServerError {
        code,
        message: "no session has id \"s\"".into(),
        session_id: Some(id()),
        request: attach.then(|| ATTACH_REQUEST.to_owned()),
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
    assert_eq!(
        take(&mut f, attached(1, 0)),
        Next::Step(Step::Reattached { refused: Some(0) })
    );
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

/// Refusals of input or a resize naming the session are counted from
/// the last attach on, whether they came before the `released` or after;
/// while re-attaching they are taken here, otherwise the verb sees them
/// (as it always did).
#[test]
fn refusals_before_and_after_the_release_are_counted() {
    let mut f = following();
    let not_found = || refusal(ErrorCode::SessionNotFound, false);
    assert_eq!(take(&mut f, not_found()), Next::Step(Step::Pass), "before the release");
    take(&mut f, detached(Some(DetachReason::Released)));
    assert_eq!(take(&mut f, not_found()), Next::Step(Step::Taken), "while re-attaching");
    // Another code is not a refusal of a session that went: not counted.
    let limited = refusal(ErrorCode::RateLimited, false);
    assert_eq!(take(&mut f, limited), Next::Step(Step::Taken));
    assert_eq!(
        take(&mut f, attached(1, 0)),
        Next::Step(Step::Reattached { refused: Some(2) })
    );
    // Counted afresh from there.
    take(&mut f, detached(Some(DetachReason::Released)));
    assert_eq!(
        take(&mut f, attached(1, 0)),
        Next::Step(Step::Reattached { refused: Some(0) })
    );
}

/// Refusals before an attach that ends no re-attach (the first, or one
/// after a reconnect) do not count towards a later release.
#[test]
fn an_attach_starts_the_count_again() {
    let mut f = Followed::new(None, Resume::Screen);
    take(&mut f, refusal(ErrorCode::SessionNotFound, false));
    take(&mut f, attached(1, 0));
    take(&mut f, detached(Some(DetachReason::Released)));
    assert_eq!(
        take(&mut f, attached(1, 0)),
        Next::Step(Step::Reattached { refused: Some(0) })
    );
}

/// After a reconnect the client library sent its unacknowledged input
/// again, so until the next attach the count says nothing.
#[test]
fn a_reconnect_makes_the_count_unknown() {
    let mut f = following();
    take(&mut f, detached(Some(DetachReason::Released)));
    let reconnected = Event::Connected {
        client_id: "c".into(),
        reconnect: true,
    };
    assert_eq!(take(&mut f, reconnected), Next::Step(Step::Pass));
    take(&mut f, refusal(ErrorCode::SessionNotFound, false));
    assert_eq!(
        take(&mut f, attached(1, 0)),
        Next::Step(Step::Reattached { refused: None })
    );
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
