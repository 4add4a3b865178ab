//! The background verification threads: one per core, at a lower scheduling priority (nice
//! 10) than the rest of the process, for the bulk of gossip (presences and attestations).
//!
//! Every node verifies every presence of the network and the attestations it carries, in a
//! burst each epoch; a signal, a proposal or a release arriving in that burst must not wait
//! behind it. The gossip queues already hand a node's urgent messages to verification first,
//! but once verification runs, the threads compete for the cores as equals, so a signal's
//! single check waited tens of milliseconds behind the presences' (the propagation bench,
//! `commons_verification_wait_seconds{kind="signal"}`). On these threads the kernel gives the
//! bulk about a tenth of a contended core's time next to the urgent work, and all of it when
//! there is no urgent work. The nice value is a per-thread attribute on Linux and only lowers
//! priority, which any process may do; elsewhere the threads run at the normal priority.

use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::Duration;

type Job = Box<dyn FnOnce() + Send>;

/// The nice value of the background threads (0 is normal, 19 the lowest).
const BACKGROUND_NICE: i32 = 10;

/// The process's background threads, started when first used.
fn pool() -> &'static mpsc::Sender<Job> {
    static POOL: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = std::sync::Arc::new(std::sync::Mutex::new(receiver));
        for i in 0..crate::ingest::cores() {
            let receiver = receiver.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("commons-background-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = {
                            let receiver = receiver.lock().expect("background queue poisoned");
                            receiver.recv()
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "could not start a background verification thread");
            }
        }
        sender
    })
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    let thread = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(thread), BACKGROUND_NICE) {
        tracing::debug!(error = %e, "background thread keeps the normal priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// How long work waits for a background thread before it runs on tokio's blocking pool at
/// the normal priority instead. Under an overload that keeps the cores busy with urgent
/// work (a hundred daemons in one simulator process, say) the background threads get only a
/// tenth of a core, and presences verified too late for their epoch cost nodes their
/// standing; past this wait they compete as equals again, as they did before these threads.
const MAX_BACKGROUND_WAIT: Duration = Duration::from_millis(250);

/// Runs `work` on a background thread, or at the normal priority on tokio's blocking pool
/// if no background thread took it within [`MAX_BACKGROUND_WAIT`], and returns its result;
/// `None` if it panicked or could not be run.
pub(crate) async fn run<T, F>(work: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    // Whoever takes the work first runs it: a background thread, or the blocking pool once
    // the wait is over. The other finds it gone.
    let slot = Arc::new(Mutex::new(Some(work)));
    let (done, mut result) = tokio::sync::oneshot::channel();
    let done = Arc::new(Mutex::new(Some(done)));
    let take_and_run = {
        let (slot, done) = (slot.clone(), done.clone());
        move || {
            let Some(work) = slot.lock().expect("background slot poisoned").take() else {
                return;
            };
            if let Ok(value) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
                let sender = done.lock().expect("background result poisoned").take();
                if let Some(sender) = sender {
                    let _ = sender.send(value);
                }
            }
        }
    };
    // Only the closures may hold the sender: when both are gone without sending (the work
    // panicked), `result` ends.
    drop(done);
    let queued = pool().send(Box::new(take_and_run.clone())).is_ok();
    if queued {
        tokio::select! {
            value = &mut result => return value.ok(),
            _ = tokio::time::sleep(MAX_BACKGROUND_WAIT) => {}
        }
    }
    // Still waiting (or no background thread): take it to the blocking pool unless a
    // background thread started it meanwhile, in which case its result comes on `result`.
    let overflow = tokio::task::spawn_blocking(take_and_run);
    let _ = overflow.await;
    result.await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests share the process's background threads: one at a time.
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    fn own_nice() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).expect("priority")
    }

    #[tokio::test]
    async fn work_runs_at_the_background_priority_and_returns() {
        let _serial = SERIAL.lock().await;
        let nice = run(own_nice).await.expect("ran");
        // At least that low: a process already niced further keeps its own value.
        assert!(nice >= BACKGROUND_NICE, "nice {nice}");
        let name = run(|| std::thread::current().name().map(str::to_owned))
            .await
            .expect("ran");
        assert!(name.is_some_and(|n| n.starts_with("commons-background-")));
    }

    #[tokio::test]
    async fn a_panic_is_none_and_the_threads_go_on() {
        let _serial = SERIAL.lock().await;
        assert_eq!(run(|| -> u8 { panic!("boom") }).await, None);
        assert_eq!(run(|| 7).await, Some(7));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn work_that_waits_too_long_runs_at_the_normal_priority() {
        let _serial = SERIAL.lock().await;
        let normal = tokio::task::spawn_blocking(own_nice).await.expect("ran");
        let busy: Vec<_> = (0..crate::ingest::cores())
            .map(|_| tokio::spawn(run(|| std::thread::sleep(Duration::from_secs(2)))))
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        let nice = run(own_nice).await.expect("ran");
        assert_eq!(
            nice, normal,
            "the overflow runs where the blocking pool runs"
        );
        assert!(started.elapsed() >= MAX_BACKGROUND_WAIT);
        for job in busy {
            assert_eq!(job.await.expect("joined"), Some(()));
        }
    }
}
