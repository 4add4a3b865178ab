//! Progress on stderr, the one implementation both simulations use: a one-line bar over a
//! known number of runs (`sybil`), and timestamped lines for the stages of one long run
//! (`network`). Hand-written: a dependency for one line of output is not worth its weight.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Instant;

/// Whether stderr is a terminal: a bar is for people, never for logs or pipes.
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Counts finished runs and redraws the bar.
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    total: usize,
    state: Mutex<(usize, Instant)>,
}

impl Progress {
    /// A bar over `total` runs; draws nothing unless `enabled` and there is more than one run.
    pub fn new(total: usize, enabled: bool) -> Self {
        Progress {
            enabled: enabled && total > 1,
            total,
            state: Mutex::new((0, Instant::now())),
        }
    }

    /// One more run finished.
    pub fn tick(&self) {
        let mut state = self
            .state
            .lock()
            .expect("no thread panics holding the lock");
        state.0 += 1;
        if !self.enabled {
            return;
        }
        let (done, started) = *state;
        let width = 30;
        let filled = done * width / self.total.max(1);
        let elapsed = started.elapsed().as_secs_f64();
        let eta = if done > 0 {
            elapsed / done as f64 * (self.total - done) as f64
        } else {
            0.0
        };
        let mut err = std::io::stderr().lock();
        // A failed write to a terminal is not worth stopping a simulation for.
        let _ = write!(
            err,
            "\r[{}{}] {done}/{} runs, {elapsed:.0} s, about {eta:.0} s left ",
            "#".repeat(filled),
            " ".repeat(width - filled),
            self.total
        );
        let _ = err.flush();
    }

    /// Ends the bar's line.
    pub fn finish(&self) {
        if self.enabled {
            eprintln!();
        }
    }
}

/// Timestamped lines for the stages of one long run, `[  12.3s] text`: unlike the bar they
/// are meant for logs too, so only `--quiet` turns them off.
#[derive(Debug, Clone, Copy)]
pub struct StageLog {
    enabled: bool,
    started: Instant,
}

impl StageLog {
    /// Lines timed from `started`; prints nothing unless `enabled`.
    pub fn new(started: Instant, enabled: bool) -> Self {
        StageLog { enabled, started }
    }

    /// One stage line.
    pub fn line(&self, text: &str) {
        if self.enabled {
            eprintln!("[{:>6.1}s] {text}", self.started.elapsed().as_secs_f64());
        }
    }
}
