//! `stop_lane` drops the actors on the bulk lane (`session/lane.rs`), as the
//! server's exit does. In a process of its own: the lane is process-wide,
//! and stopping it would drop other tests' actors.

use termstream::session::lane;

#[test]
fn stopping_the_lane_drops_the_actors_on_it() {
    /// Says when the actor's future is dropped.
    struct Dropped(std::sync::mpsc::Sender<()>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
    let (dropped_tx, dropped) = std::sync::mpsc::channel();
    let (on_lane_tx, on_lane) = std::sync::mpsc::channel();
    let home = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    home.block_on(async {
        let wish = lane::LaneWish::default();
        let w = wish.clone();
        lane::spawn_actor(
            async move {
                let _guard = Dropped(dropped_tx);
                w.set(true);
                tokio::task::yield_now().await;
                let _ = on_lane_tx.send(lane::on_bulk_lane());
                std::future::pending::<()>().await
            },
            wish,
        );
    });
    let lane = on_lane.recv_timeout(std::time::Duration::from_secs(10));
    assert_eq!(lane, Ok(true), "the actor moved to the lane");
    lane::stop_lane(std::time::Duration::from_secs(10));
    // Dropped before `stop_lane` returned.
    assert_eq!(dropped.try_recv(), Ok(()), "the actor was left on the lane");
}
