//! The request body's deadline: a body must arrive whole within
//! `http_body_timeout_ms` of the first read that finds it not all there.
//!
//! hyper bounds only the request head; a client could send a body a byte a
//! second and hold its connection (and the handler reading it) forever.
//! [`TimedBody`] wraps every request body: once the deadline passes, the
//! next read fails with [`BodyTimedOut`], which the REST error mapping
//! answers with 408 `request_timeout` (see `api::error::body_rejection`);
//! hyper then closes the connection, whose body was not read to its end.
//! A body nobody reads costs nothing: the timer starts at the first read
//! that has to wait.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

/// The error a read returns once the body's time is up.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimedOut(pub Duration);

/// A request body with a deadline (see the module docs).
pub struct TimedBody {
    inner: Incoming,
    limit: Duration,
    /// Started when a read first has to wait; `None` before.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Whether the deadline passed (every later read fails too).
    expired: bool,
}

impl TimedBody {
    pub fn new(inner: Incoming, limit: Duration) -> TimedBody {
        TimedBody {
            inner,
            limit,
            deadline: None,
            expired: false,
        }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.expired {
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut(this.limit)))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => return Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {}
        }
        let limit = this.limit;
        let deadline = this.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.expired = true;
                Poll::Ready(Some(Err(Box::new(BodyTimedOut(limit)))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `error`, or an error it wraps, is a [`BodyTimedOut`].
pub fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<BodyTimedOut>() {
            return true;
        }
        current = e.source();
    }
    false
}
