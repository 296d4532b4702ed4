//! Tests of the log event channel.

use std::time::Duration;

use super::*;

fn resized(offset: u64) -> LogEvent {
    LogEvent::Resized {
        offset,
        cols: 80,
        rows: 24,
    }
}

fn offset_of(event: LogEvent) -> u64 {
    match event {
        LogEvent::Resized { offset, .. } => offset,
        other => panic!("unexpected {other:?}"),
    }
}

fn queued(tx: &Sender) -> (usize, usize) {
    let state = tx.shared.lock();
    (state.queue.len(), state.queue.capacity())
}

/// A receiver subscribed before anything was ever sent gets the first
/// event (the queue is made only then), and an idle channel holds no
/// buffer once every receiver took what was sent.
#[tokio::test]
async fn the_first_event_reaches_a_receiver_that_came_before_it() {
    let tx = channel(32);
    let mut rx = tx.subscribe();
    assert_eq!(queued(&tx), (0, 0), "nothing allocated up front");
    let waiting = tokio::spawn(async move { (rx.recv().await.map(offset_of), rx) });
    tokio::task::yield_now().await;
    assert_eq!(tx.send(resized(7)).expect("a receiver"), 1);
    let (got, rx) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("woken")
        .expect("task");
    assert_eq!(got.expect("event"), 7);
    assert_eq!(queued(&tx), (0, 0), "the buffer is given back once taken");
    drop(rx);
    assert!(tx.send(resized(8)).is_err(), "no receiver: the event is dropped");
    assert_eq!(queued(&tx), (0, 0));
}

/// Every receiver sees every event in order; an event stays queued until
/// the last receiver took it, and a receiver dropped before taking it no
/// longer holds it.
#[test]
fn events_stay_until_every_receiver_took_them() {
    let tx = channel(32);
    let mut a = tx.subscribe();
    let mut b = tx.subscribe();
    for i in 0..3 {
        tx.send(resized(i)).expect("receivers");
    }
    for i in 0..3 {
        assert_eq!(a.try_recv().map(offset_of).expect("a"), i);
    }
    assert!(matches!(a.try_recv(), Err(TryRecvError::Empty)));
    assert_eq!(queued(&tx).0, 3, "b has not taken them");
    assert_eq!(b.try_recv().map(offset_of).expect("b"), 0);
    assert_eq!(queued(&tx).0, 2);
    let late = tx.subscribe();
    tx.send(resized(3)).expect("receivers");
    drop(b);
    assert_eq!(
        queued(&tx).0,
        1,
        "only the event a and the late receiver have not taken"
    );
    drop(late);
    assert_eq!(queued(&tx).0, 1, "a has not taken it");
    assert_eq!(a.try_recv().map(offset_of).expect("a"), 3);
    assert_eq!(queued(&tx), (0, 0));
}

/// A receiver that falls more than the capacity behind is told how many
/// events it lost and goes on from the oldest held; one that kept up
/// loses nothing; the queue never holds more than its capacity.
#[test]
fn a_receiver_too_far_behind_lags() {
    let tx = channel(2);
    let mut slow = tx.subscribe();
    let mut quick = tx.subscribe();
    for i in 0..5 {
        tx.send(resized(i)).expect("receivers");
        assert_eq!(quick.try_recv().map(offset_of).expect("quick"), i);
        assert!(queued(&tx).0 <= 2);
    }
    assert!(matches!(slow.try_recv(), Err(TryRecvError::Lagged(3))));
    assert_eq!(slow.try_recv().map(offset_of).expect("slow"), 3);
    assert_eq!(slow.try_recv().map(offset_of).expect("slow"), 4);
    assert!(matches!(slow.try_recv(), Err(TryRecvError::Empty)));
    assert_eq!(queued(&tx), (0, 0));
}

/// When the sender goes, a receiver first takes what is queued, then is
/// told the channel closed; one waiting is woken for it.
#[tokio::test]
async fn receivers_end_after_the_sender_and_what_it_sent() {
    let tx = channel(32);
    let mut rx = tx.subscribe();
    let mut waiting = tx.subscribe();
    tx.send(resized(1)).expect("receivers");
    assert_eq!(waiting.try_recv().map(offset_of).expect("event"), 1);
    let waiter = tokio::spawn(async move { waiting.recv().await });
    tokio::task::yield_now().await;
    drop(tx);
    let woken = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("woken")
        .expect("task");
    assert!(matches!(woken, Err(RecvError::Closed)));
    assert_eq!(rx.recv().await.map(offset_of).expect("queued first"), 1);
    assert!(matches!(rx.recv().await, Err(RecvError::Closed)));
}

/// A receiver that fell behind never makes the queue's buffer grow past
/// its bound.
#[test]
fn a_lagging_receiver_keeps_the_buffer_within_its_bound() {
    let tx = channel(32);
    let _rx = tx.subscribe();
    for i in 0..100 {
        tx.send(resized(i)).expect("a receiver");
        let (len, capacity) = queued(&tx);
        assert!(len <= 32 && capacity <= 32, "queued {len} in a buffer of {capacity}");
    }
}

/// Followers on two threads, some cancelling their `recv` in `select!`,
/// one slow and one never polled: each sees the events in order, with
/// what it lost counted by `Lagged`, then `Closed`; the queue stays within
/// its bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_cancelled_slow_and_idle_lose_nothing_uncounted() {
    async fn follow(mut rx: Receiver, cancel_every: u64, slow: bool) -> (u64, u64) {
        let (mut taken, mut lost, mut expect, mut i) = (0, 0, 0, 0u64);
        loop {
            i += 1;
            let got = if i % cancel_every == 0 {
                tokio::select! {
                    biased;
                    _ = tokio::task::yield_now() => continue,
                    got = rx.recv() => got,
                }
            } else {
                rx.recv().await
            };
            match got {
                Ok(event) => {
                    assert_eq!(offset_of(event), expect, "in order");
                    expect += 1;
                    taken += 1;
                }
                Err(RecvError::Lagged(n)) => {
                    lost += n;
                    expect += n;
                }
                Err(RecvError::Closed) => return (taken, lost),
            }
            if slow && i % 7 == 0 {
                tokio::time::sleep(Duration::from_micros(50)).await;
            }
        }
    }
    const N: u64 = 5_000;
    for round in 0..4 {
        let tx = channel(32);
        let idle = tx.subscribe();
        let followers: Vec<_> = (0..4)
            .map(|k| tokio::spawn(follow(tx.subscribe(), k + 2 + round % 3, k == 3)))
            .collect();
        for n in 0..N {
            tx.send(resized(n)).expect("receivers");
            assert!(queued(&tx).0 <= 32);
            if n % 64 == 0 {
                tokio::task::yield_now().await;
            }
        }
        drop(tx);
        for f in followers {
            let (taken, lost) = tokio::time::timeout(Duration::from_secs(20), f)
                .await
                .expect("no lost wake-up")
                .expect("task");
            assert_eq!(taken + lost, N, "every event taken or counted lost");
        }
        drop(idle);
    }
}

/// Sends from a plain thread racing a receiver's wait, one at a time: no
/// wake-up is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_racing_a_wait_always_wakes_it() {
    const N: u64 = 20_000;
    let tx = std::sync::Arc::new(channel(32));
    let mut rx = tx.subscribe();
    let (ack, acked) = std::sync::mpsc::channel::<()>();
    let sender = {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for n in 0..N {
                tx.send(resized(n)).expect("a receiver");
                acked.recv().expect("acked");
            }
        })
    };
    for n in 0..N {
        let event = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("woken")
            .expect("event");
        assert_eq!(offset_of(event), n);
        ack.send(()).expect("sender waits");
    }
    sender.join().expect("sender");
    assert_eq!(queued(&tx), (0, 0));
}
