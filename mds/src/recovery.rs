//! Recovery of an MDS that commits asynchronously [target recovery]: after a restart, the
//! changes it replied to but had not committed are redone from its clients' replays, in
//! transno order across clients, before any other request is served.
//!
//! The clients waited for are those the namespace knows (registered or with reply
//! records) at start. A replay runs when its transno is the lowest queued and nothing else
//! runs, and either it is the next transno, or every expected client not done yet has a
//! replay queued (the missing numbers belong to changes nobody will replay, and are
//! skipped), or the window has expired. Recovery ends when every expected client said it is
//! done and no replay is queued, or once the window expired and the queue drained.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sheen_rpc::ServiceError;
use sheen_wire::Errno;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, Instrument};

pub(crate) struct Recovery {
    /// The last transno on disk at start: replays up to it are answered, not executed.
    pub(crate) durable_at_start: u64,
    state: Mutex<State>,
    /// Bumped on every change of `state`, to wake the replays waiting for their turn.
    changed: watch::Sender<u64>,
    /// True once recovery has ended.
    ended: watch::Sender<bool>,
}

struct State {
    /// Every client expected at start.
    expected: BTreeSet<String>,
    /// Expected clients that have not said they are done.
    not_done: BTreeSet<String>,
    /// Queued replays: transno → client.
    queued: BTreeMap<u64, String>,
    /// The highest transno executed so far.
    last: u64,
    running: bool,
    expired: bool,
    ended: bool,
    applied: u64,
    failed: u64,
    skipped: u64,
}

/// A replay's turn: held while it executes; the next one runs after it is dropped.
pub(crate) struct Turn {
    recovery: Arc<Recovery>,
    transno: u64,
    succeeded: bool,
}

impl Turn {
    /// The replay did what it asked for (else it counts as failed).
    pub(crate) fn succeeded(&mut self) {
        self.succeeded = true;
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut st = self.recovery.lock();
        st.running = false;
        st.last = st.last.max(self.transno);
        if self.succeeded {
            st.applied += 1;
        } else {
            st.failed += 1;
        }
        self.recovery.after_change(st);
    }
}

impl Recovery {
    /// Starts recovery, expecting `expected`; it ends at the latest `window` after now
    /// (plus the replays queued by then), or at `shutdown`.
    pub(crate) fn start(
        expected: Vec<String>,
        durable_at_start: u64,
        window: Duration,
        shutdown: CancellationToken,
    ) -> Arc<Recovery> {
        let expected: BTreeSet<String> = expected.into_iter().collect();
        info!(
            clients = expected.len(),
            durable_at_start,
            window_s = window.as_secs_f64(),
            "recovery started: waiting for clients to replay uncommitted changes"
        );
        let r = Arc::new(Recovery {
            durable_at_start,
            state: Mutex::new(State {
                not_done: expected.clone(),
                expected,
                queued: BTreeMap::new(),
                last: durable_at_start,
                running: false,
                expired: false,
                ended: false,
                applied: 0,
                failed: 0,
                skipped: 0,
            }),
            changed: watch::Sender::new(0),
            ended: watch::Sender::new(false),
        });
        let timer = Arc::clone(&r);
        tokio::spawn(
            async move {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(window) => {}
                }
                let mut st = timer.lock();
                st.expired = true;
                timer.after_change(st);
            }
            .instrument(tracing::info_span!("recovery_window")),
        );
        let st = r.lock();
        r.after_change(st);
        r
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends recovery if it is over, and wakes the waiting replays.
    fn after_change(&self, mut st: MutexGuard<'_, State>) {
        let drained = st.queued.is_empty() && !st.running;
        if !st.ended && drained && (st.not_done.is_empty() || st.expired) {
            st.ended = true;
            let never_came: Vec<&String> = st
                .expected
                .iter()
                .filter(|c| st.not_done.contains(*c))
                .collect();
            info!(
                applied = st.applied,
                failed = st.failed,
                skipped = st.skipped,
                last_transno = st.last,
                never_came = ?never_came,
                "recovery ended"
            );
            self.ended.send_replace(true);
        }
        drop(st);
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn is_over(&self) -> bool {
        *self.ended.borrow()
    }

    /// Waits until recovery has ended.
    pub(crate) async fn wait_end(&self) {
        let mut rx = self.ended.subscribe();
        // The sender lives as long as `self`.
        if rx.wait_for(|ended| *ended).await.is_err() {
            debug!("recovery dropped before it ended");
        }
    }

    /// The expected clients that never said they were done (once recovery has ended).
    pub(crate) fn never_came(&self) -> Vec<String> {
        let st = self.lock();
        st.not_done.iter().cloned().collect()
    }

    /// A replay answered without executing (its change was on disk already).
    pub(crate) fn note_skipped(&self) {
        self.lock().skipped += 1;
    }

    /// Client `client` has replayed everything.
    pub(crate) fn done(&self, client: &str) {
        let mut st = self.lock();
        st.not_done.remove(client);
        self.after_change(st);
    }

    /// Waits for the turn of replay `transno` of `client`. ESTALE once recovery has ended
    /// without it (it came too late: its change cannot be ordered any more).
    pub(crate) async fn turn(
        self: &Arc<Self>,
        client: &str,
        transno: u64,
    ) -> Result<Turn, ServiceError> {
        let mut rx = self.changed.subscribe();
        {
            let mut st = self.lock();
            if st.ended {
                return Err(too_late());
            }
            st.queued.insert(transno, client.to_owned());
            self.after_change(st);
        }
        loop {
            {
                let mut st = self.lock();
                if st.ended {
                    st.queued.remove(&transno);
                    return Err(too_late());
                }
                let lowest = st.queued.keys().next().copied();
                let everyone_queued = st
                    .not_done
                    .iter()
                    .all(|c| st.queued.values().any(|q| q == c));
                let next = st.last.checked_add(1) == Some(transno);
                if lowest == Some(transno) && !st.running && (next || everyone_queued || st.expired)
                {
                    st.queued.remove(&transno);
                    st.running = true;
                    drop(st);
                    return Ok(Turn {
                        recovery: Arc::clone(self),
                        transno,
                        succeeded: false,
                    });
                }
            }
            if rx.changed().await.is_err() {
                return Err(too_late());
            }
        }
    }
}

fn too_late() -> ServiceError {
    ServiceError::new(
        Errno::ESTALE,
        "replay after the end of recovery: its change is lost",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start_with(expected: &[&str], window: Duration) -> Arc<Recovery> {
        let expected = expected.iter().map(|s| s.to_string()).collect();
        Recovery::start(expected, 10, window, CancellationToken::new())
    }

    fn start(expected: &[&str]) -> Arc<Recovery> {
        start_with(expected, Duration::from_secs(30))
    }

    #[tokio::test]
    async fn replays_run_in_transno_order_across_clients() {
        let r = start(&["a", "b"]);
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // b's 12 arrives first but waits for a's 11; gaps (13) are skipped once every
        // client has a replay queued.
        for (client, transno) in [("b", 12), ("a", 11), ("a", 14), ("b", 15)] {
            let r = Arc::clone(&r);
            let order = Arc::clone(&order);
            tasks.push(tokio::spawn(async move {
                let mut turn = r.turn(client, transno).await.unwrap();
                order.lock().unwrap().push(transno);
                turn.succeeded();
                drop(turn);
            }));
            tokio::task::yield_now().await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [11, 12, 14, 15]);
        assert!(!r.is_over());
        r.done("a");
        assert!(!r.is_over());
        r.done("b");
        assert!(r.is_over());
        assert!(r.turn("a", 20).await.is_err());
    }

    #[tokio::test]
    async fn nobody_expected_ends_at_once() {
        let r = start(&[]);
        assert!(r.is_over());
        r.wait_end().await;
    }

    #[tokio::test]
    async fn the_window_ends_recovery_without_missing_clients() {
        let r = start_with(&["gone", "here"], Duration::from_millis(300));
        assert!(!r.is_over());
        // After the window, a queued replay runs without waiting for the missing client.
        let turn = tokio::time::timeout(Duration::from_secs(10), r.turn("here", 15))
            .await
            .unwrap()
            .unwrap();
        drop(turn);
        r.wait_end().await;
        assert_eq!(r.never_came(), ["gone", "here"]);
    }
}
