//! Ending a session's program on request: the terminate command, the
//! session's acknowledgement, and the wait for the end.
//!
//! A terminate is one [`Command::Terminate`] to the session's actor, or to
//! the stand-in of a session another node owns, which asks the owner over
//! Redis (`cluster::requests`). The answer says whether it was taken; the
//! end itself is seen on the session's info, which the actor (or, for a
//! remote session, the directory and the stream) publishes.
//!
//! Not every refusal means the terminate was not taken. A stand-in whose
//! owner did not answer in time answers `busy`, yet the request stays in
//! the owner's list, and the owner may apply it a moment later: only the
//! end, or the caller's own wait running out, answers then. Every other
//! refusal (the cluster's Redis cannot be reached, the owner has no such
//! session, or no longer the incarnation this node knows: the id was
//! reused) answers at once. A `cluster_unavailable` terminate may have
//! reached Redis all the same (its answer was what failed); a terminate is
//! safe to repeat.
//!
//! A terminate that was answered says whether it began the end
//! ([`Began`]): only one of several terminates of a session (or a
//! shutdown's) does, and none when the session had ended, or was ending by
//! itself, before it came. The actor knows (it ends the session once); a
//! stand-in does not (its owner does not say), and answers
//! [`Began::Unknown`].

use std::time::Duration;

use termstream_proto::{ErrorCode, SessionInfo, SessionStatus};
use tokio::sync::oneshot;

use super::{Command, SessionError, SessionHandle};

/// Whether a refused terminate may still be taken: an owner that did not
/// answer in time (`busy`) may apply it later.
fn may_still_be_taken(refusal: &SessionError) -> bool {
    refusal.code() == ErrorCode::Busy
}

/// Whether a terminate began the session's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Began {
    /// This terminate began it.
    Yes,
    /// The session had ended, or was ending, before it came: by itself, or
    /// by another terminate (or a shutdown's).
    No,
    /// Not known: a session another node owns (its owner does not say).
    Unknown,
}

/// A terminate that ended a session, or found it ended.
#[derive(Debug, Clone)]
pub struct Terminated {
    /// The session's info once it ended.
    pub info: SessionInfo,
    /// Whether this terminate began the end.
    pub began: Began,
}

/// What a terminate handler's answer says of the end, for its audit (a
/// response extension, as [`ErrorCode`] is on an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminateOutcome {
    /// Whether the terminate began the end.
    pub began: Began,
    /// How the session ended.
    pub ended_as: SessionStatus,
}

impl Terminated {
    /// What this answer says of the end, for its audit.
    pub fn outcome(&self) -> TerminateOutcome {
        TerminateOutcome {
            began: self.began,
            ended_as: self.info.status,
        }
    }
}

impl SessionHandle {
    /// Ends the program (see [`Command::Terminate`]) and waits until the
    /// session has ended, at most `wait`. A terminate that was refused (a
    /// session another node owns, when the cluster's Redis cannot be
    /// reached, which it may have reached all the same, or that node has no
    /// such session) answers why at once; one
    /// that was taken, or whose owner did not answer in time, and that did
    /// not end the session within `wait` is `busy` (the owner's own refusal
    /// when it did not answer, else [`SessionError::Busy`]). The answer
    /// says whether this terminate began the end ([`Began`]).
    pub async fn terminate(&self, wait: Duration) -> Result<Terminated, SessionError> {
        let mut info = self.info.clone();
        // An owner's `busy`, kept to answer with if the end does not come:
        // its message says which node did not answer.
        let mut unanswered = None;
        let ended = async {
            // Sent within the wait: a full command queue of a stuck actor
            // answers `busy` too.
            let mut taken = self.send_terminate().await?;
            let ended = info.wait_for(|i| !i.status.is_running());
            tokio::pin!(ended);
            let began = tokio::select! {
                // The end wins over a late refusal: the session did end.
                biased;
                i = &mut ended => {
                    let info = i.map(|i| i.clone()).map_err(|_| self.closed())?;
                    return Ok(Terminated { info, began: self.began_before_the_end(&mut taken) });
                }
                // A dropped reply (the actor ended) leaves the end to say so.
                t = &mut taken => match t {
                    Ok(Ok(began)) => began,
                    Ok(Err(e)) if !may_still_be_taken(&e) => return Err(e),
                    Ok(Err(e)) => {
                        unanswered = Some(e);
                        Began::Unknown
                    }
                    Err(_) => Began::Unknown,
                },
            };
            let info = ended.await.map(|i| i.clone()).map_err(|_| self.closed())?;
            Ok(Terminated { info, began })
        };
        let answer = tokio::time::timeout(wait, ended).await;
        answer.unwrap_or_else(|_| Err(unanswered.unwrap_or_else(|| SessionError::Busy(self.id.clone()))))
    }

    /// Whether a terminate whose session was seen ended before its reply
    /// was read began the end. The actor replies before it publishes the
    /// end it began: a reply not there yet (or none) means the end came
    /// first. A stand-in's reply may come after the end, and says nothing.
    fn began_before_the_end(&self, taken: &mut oneshot::Receiver<Result<Began, SessionError>>) -> Began {
        if self.is_remote() {
            return Began::Unknown;
        }
        match taken.try_recv() {
            Ok(Ok(began)) => began,
            _ => Began::No,
        }
    }

    /// Starts ending the program (see [`Command::Terminate`]) and answers
    /// once the session took it, without waiting for the end: an owner
    /// applying a terminate another node asked for.
    pub async fn begin_terminate(&self) -> Result<(), SessionError> {
        let taken = self.send_terminate().await?;
        self.answer(taken).await?.map(drop)
    }

    /// Sends the terminate command; the receiver gets whether it was taken,
    /// and whether it began the end.
    async fn send_terminate(&self) -> Result<oneshot::Receiver<Result<Began, SessionError>>, SessionError> {
        let (reply, taken) = oneshot::channel();
        self.commands
            .send_async(Box::new(Command::Terminate { reply }))
            .await
            .map_err(|_| self.closed())?;
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use futures_util::FutureExt as _;
    use termstream_proto::{ErrorCode, SessionStatus};

    use crate::session::remote::{StandIn, Unasked, remote_handle};
    use crate::session::{Began, Command, SessionError, test_info};

    const LONG: Duration = Duration::from_secs(30);

    /// The reply slot of the terminate the handle sent to the stand-in.
    fn sent(stand_in: &StandIn) -> tokio::sync::oneshot::Sender<Result<Began, SessionError>> {
        match *stand_in.commands.try_recv().expect("the terminate was sent") {
            Command::Terminate { reply } => reply,
            other => panic!("not a terminate: {other:?}"),
        }
    }

    fn refusal(code: ErrorCode) -> SessionError {
        SessionError::Remote {
            code,
            message: format!("{code:?}"),
        }
    }

    /// An owner that did not answer in time may still take the terminate
    /// (the request stays in its list): the caller waits for the end, as
    /// for a local session, instead of answering `busy` at once. It
    /// answered `busy` when the stand-in's ask gave up (10 s), whatever the
    /// grace period.
    #[tokio::test]
    async fn an_unanswered_terminate_waits_for_the_end() {
        let (handle, stand_in) = remote_handle(test_info("late"), Arc::new(Unasked));
        let mut terminate = Box::pin(tokio::time::timeout(LONG, handle.terminate(LONG)));
        assert!((&mut terminate).now_or_never().is_none(), "waits for the answer");
        let _ = sent(&stand_in).send(Err(refusal(ErrorCode::Busy)));
        assert!(
            (&mut terminate).now_or_never().is_none(),
            "an owner that did not answer in time may still end the session: wait for it"
        );
        stand_in.info.send_modify(|i| i.status = SessionStatus::Terminated);
        let ended = terminate.await.expect("answered").expect("the session ended");
        assert_eq!(ended.info.status, SessionStatus::Terminated);
        assert_eq!(ended.began, Began::Unknown, "a stand-in's owner does not say");
    }

    /// A terminate that could not be sent, or that the owner refused,
    /// answers why at once.
    #[tokio::test]
    async fn a_refused_terminate_answers_at_once() {
        for code in [ErrorCode::ClusterUnavailable, ErrorCode::SessionNotFound] {
            let (handle, stand_in) = remote_handle(test_info("refused"), Arc::new(Unasked));
            let mut terminate = Box::pin(handle.terminate(LONG));
            assert!((&mut terminate).now_or_never().is_none(), "waits for the answer");
            let _ = sent(&stand_in).send(Err(refusal(code)));
            let answer = (&mut terminate).now_or_never().expect("answered at once");
            assert_eq!(answer.expect_err("refused").code(), code);
        }
    }

    /// A terminate that was taken but did not end the session within the
    /// caller's wait is `busy`; so is one whose owner never answered, but
    /// only once the wait is over (the owner may still take it), and with
    /// the owner's refusal, which names the node that did not answer.
    #[tokio::test]
    async fn a_terminate_that_does_not_end_the_session_in_time_is_busy() {
        let wait = Duration::from_millis(50);
        for answer in [Ok(Began::Unknown), Err(refusal(ErrorCode::Busy))] {
            let unanswered = answer.is_err();
            let (handle, stand_in) = remote_handle(test_info("stuck"), Arc::new(Unasked));
            let start = std::time::Instant::now();
            let terminate = tokio::time::timeout(LONG, handle.terminate(wait));
            let answering = async {
                tokio::task::yield_now().await;
                let _ = sent(&stand_in).send(answer);
            };
            let (ended, ()) = tokio::join!(terminate, answering);
            let e = ended.expect("the wait bounds the terminate").expect_err("not ended");
            assert!(start.elapsed() >= wait, "busy only once the wait is over");
            assert_eq!(e.code(), ErrorCode::Busy);
            if unanswered {
                assert!(matches!(e, SessionError::Remote { .. }), "the owner's refusal: {e:?}");
            } else {
                assert!(matches!(e, SessionError::Busy(_)), "{e:?}");
            }
        }
    }

    /// A stuck actor whose command queue is full answers `busy` once the
    /// caller's wait is over: the command is sent within that wait. The
    /// send used to come first, and waited for room with no limit.
    #[tokio::test]
    async fn a_full_command_queue_answers_busy_within_the_wait() {
        let (handle, _stand_in) = remote_handle(test_info("full"), Arc::new(Unasked));
        let mut filled = 0;
        loop {
            let (reply, _) = tokio::sync::oneshot::channel();
            if handle
                .commands
                .try_send(Box::new(Command::Terminate { reply }))
                .is_err()
            {
                break;
            }
            filled += 1;
        }
        assert!(filled > 0, "the queue took nothing");
        let wait = Duration::from_millis(50);
        let start = std::time::Instant::now();
        let answer = tokio::time::timeout(LONG, handle.terminate(wait)).await;
        let e = answer.expect("the wait bounds the send").expect_err("not ended");
        assert!(start.elapsed() >= wait, "busy only once the wait is over");
        assert!(matches!(e, SessionError::Busy(_)), "{e:?}");
    }

    /// The owner's side: `begin_terminate` answers with the session's
    /// acknowledgement, without waiting for the end.
    #[tokio::test]
    async fn begin_terminate_answers_the_acknowledgement() {
        let (handle, stand_in) = remote_handle(test_info("begun"), Arc::new(Unasked));
        let mut begin = Box::pin(handle.begin_terminate());
        assert!((&mut begin).now_or_never().is_none(), "waits for the session");
        let _ = sent(&stand_in).send(Ok(Began::Unknown));
        let begun = tokio::time::timeout(LONG, begin).await.expect("answered");
        assert!(begun.is_ok(), "{begun:?}");
        assert!(handle.is_running(), "the end is not waited for");
    }
}
