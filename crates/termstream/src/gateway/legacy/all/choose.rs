//! What `/ws/terminal/all` does with a session coming in (created, listed
//! at connect or at a resync), from how it stands to the registry's handle
//! of its id and to what the socket streamed last under that id.

use crate::session::kin::Kin;

/// What the socket streamed last under an id, as it stands to a handle
/// coming in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Before {
    /// Still streamed.
    Streaming(Kin),
    /// Left: deleted, or let go by this node (a copy of another node's
    /// session), or found gone at a resync.
    Left(Kin),
}

/// What to do with a handle coming in.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Action {
    /// Nothing: not the registry's copy of its id now (an event older than
    /// the listing a resync took, or an id listed twice), or streamed
    /// already.
    Skip,
    /// Its `terminal_start` and all its output (after what the socket
    /// streamed under its id before, which is another session).
    Start,
    /// Another copy of the session streamed last under its id: it goes on
    /// where the client got, once the old copy's forwarder is gone
    /// (`forward::Next`).
    TakeOver,
}

/// Decides on a handle coming in: `current`, how the registry's handle of
/// its id stands to it (`None`: the registry has none); `before`, what the
/// socket streamed last under the id. Only the registry's current copy is
/// acted on: after a lag the channel resumes at the oldest event it still
/// holds, older than the listing the resync took, and a `Created` of an
/// incarnation since deleted would replace the current one.
pub(super) fn choose(current: Option<Kin>, before: Option<Before>) -> Action {
    if current != Some(Kin::Same) {
        return Action::Skip;
    }
    match before {
        Some(Before::Streaming(Kin::Same)) => Action::Skip,
        // A left entry of the very same copy cannot come in again (a copy
        // is added once); were it to, the client has its output already.
        Some(Before::Streaming(Kin::Copy) | Before::Left(Kin::Copy | Kin::Same)) => Action::TakeOver,
        Some(Before::Streaming(Kin::Other) | Before::Left(Kin::Other)) | None => Action::Start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After a resync that started X2, the channel's tail
    /// `[Created(X1), Deleted(X), Created(X2)]`: nothing is started again.
    #[test]
    fn stale_creates_after_a_resync_are_skipped() {
        // Created(X1): the registry holds X2, another incarnation than X1;
        // the socket streams X2, also another than X1.
        let other = Some(Before::Streaming(Kin::Other));
        assert_eq!(choose(Some(Kin::Other), other), Action::Skip);
        // The same-epoch variant: an old copy of a cluster session.
        let copy = Some(Before::Streaming(Kin::Copy));
        assert_eq!(choose(Some(Kin::Copy), copy), Action::Skip);
        // Created(X2) (after Deleted(X) kept X2's entry): streamed already.
        let same = Some(Before::Streaming(Kin::Same));
        assert_eq!(choose(Some(Kin::Same), same), Action::Skip);
        // A deleted session's Created, the id unused now.
        assert_eq!(choose(None, None), Action::Skip);
        assert_eq!(choose(None, Some(Before::Left(Kin::Copy))), Action::Skip);
    }

    #[test]
    fn the_current_incarnation_is_started_or_taken_over() {
        assert_eq!(choose(Some(Kin::Same), None), Action::Start);
        for other in [Before::Streaming(Kin::Other), Before::Left(Kin::Other)] {
            assert_eq!(choose(Some(Kin::Same), Some(other)), Action::Start, "{other:?}");
        }
        // A new copy of the session streamed (a lost one taken up again),
        // or of one this node let go of and lists again.
        for copy in [Before::Streaming(Kin::Copy), Before::Left(Kin::Copy)] {
            assert_eq!(choose(Some(Kin::Same), Some(copy)), Action::TakeOver, "{copy:?}");
        }
    }
}
