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

use std::sync::OnceLock;
use std::sync::mpsc;

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

/// Runs `work` on a background thread and returns its result; `None` if it panicked or no
/// background thread could be started (then the work did not run).
pub(crate) async fn run<T, F>(work: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (done, result) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        if let Ok(value) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
            let _ = done.send(value);
        }
    });
    pool().send(job).ok()?;
    result.await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_at_the_background_priority_and_returns() {
        let nice = run(|| rustix::process::getpriority_process(Some(rustix::thread::gettid())))
            .await
            .expect("ran")
            .expect("read its priority");
        // At least that low: a process already niced further keeps its own value.
        assert!(nice >= BACKGROUND_NICE, "nice {nice}");
        let name = run(|| std::thread::current().name().map(str::to_owned))
            .await
            .expect("ran");
        assert!(name.is_some_and(|n| n.starts_with("commons-background-")));
    }

    #[tokio::test]
    async fn a_panic_is_none_and_the_threads_go_on() {
        assert_eq!(run(|| -> u8 { panic!("boom") }).await, None);
        assert_eq!(run(|| 7).await, Some(7));
    }
}
