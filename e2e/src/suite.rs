//! Suites taking turns on the one cluster under test. The end-to-end tests of a binary are its
//! modules (`tests/kwok/`, `tests/real_node/`), each a suite that was once a binary of its own: the
//! tests of one suite run side by side as they always did, and suites take turns, so that one
//! suite's cluster-wide objects (the chart's admission policies, its ClusterRoles) never meet
//! another suite's tests. Every cluster test starts with `let _turn = e2e::suite::turn("name").await;`.

use std::sync::Mutex;

use tokio::sync::Notify;

struct State {
    /// The suite whose tests run now, if any.
    current: Option<&'static str>,
    /// How many of its tests run.
    running: usize,
}

static STATE: Mutex<State> = Mutex::new(State {
    current: None,
    running: 0,
});
static TURN_OVER: Notify = Notify::const_new();

/// A test's place in its suite's turn; dropping it (the test ended, or panicked) frees it.
pub struct Turn(());

/// Waits until `suite` has the cluster (no other suite's test runs), and counts this test in.
pub async fn turn(suite: &'static str) -> Turn {
    loop {
        // Registered before the check, so that a turn ending in between is not missed.
        let over = TURN_OVER.notified();
        {
            let mut s = STATE.lock().unwrap_or_else(|e| e.into_inner());
            if s.current.is_none_or(|c| c == suite) {
                s.current = Some(suite);
                s.running += 1;
                return Turn(());
            }
        }
        over.await;
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut s = STATE.lock().unwrap_or_else(|e| e.into_inner());
        s.running -= 1;
        if s.running == 0 {
            s.current = None;
            TURN_OVER.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Tests of two suites on many threads: never both at once; those of one suite together.
    #[test]
    fn suites_take_turns() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .unwrap();
        let in_a = Arc::new(AtomicUsize::new(0));
        let in_b = Arc::new(AtomicUsize::new(0));
        let max_a = Arc::new(AtomicUsize::new(0));
        rt.block_on(async {
            let mut tasks = Vec::new();
            for i in 0..40 {
                let (mine, other, max) = if i % 2 == 0 {
                    (in_a.clone(), in_b.clone(), Some(max_a.clone()))
                } else {
                    (in_b.clone(), in_a.clone(), None)
                };
                let suite = if i % 2 == 0 { "a" } else { "b" };
                tasks.push(tokio::spawn(async move {
                    let _turn = turn(suite).await;
                    let n = mine.fetch_add(1, Ordering::SeqCst) + 1;
                    if let Some(max) = max {
                        max.fetch_max(n, Ordering::SeqCst);
                    }
                    assert_eq!(other.load(Ordering::SeqCst), 0, "suite {suite} ran beside the other");
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    assert_eq!(other.load(Ordering::SeqCst), 0, "suite {suite} ran beside the other");
                    mine.fetch_sub(1, Ordering::SeqCst);
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        });
        assert!(
            max_a.load(Ordering::SeqCst) > 1,
            "the tests of one suite should run side by side"
        );
    }
}
