//! Progress of long operations (hashing artifacts, waiting for the node to check them), drawn
//! with `indicatif` on standard error, never on standard output, which is for the report.
//!
//! A bar is drawn only when the command asks for it ([`crate::commands::Context::progress`]
//! decides: standard error is a terminal, and neither `--json` nor `--quiet` was given);
//! otherwise it is hidden but still counts, so the same code runs either way. A bar clears its
//! line when dropped, so the report or an error message printed after it starts on a clean
//! line.

use std::io::{self, Read};
use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a spinner moves while nothing else happens.
const TICK: Duration = Duration::from_millis(120);

/// One progress bar or spinner.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar over `total` bytes, `label` before it (`hashing`); drawn only when `visible`.
    pub fn bytes(visible: bool, total: u64, label: &str) -> Self {
        let style = ProgressStyle::with_template(
            "{prefix} {msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
        )
        .expect("the template is valid")
        .progress_chars("=> ");
        // Styled before it is given its target: a bar draws as soon as it has one.
        let bar = ProgressBar::hidden()
            .with_style(style)
            .with_prefix(label.to_string());
        bar.set_length(total);
        if visible {
            bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        Progress { bar }
    }

    /// A spinner with `message` and the time elapsed, for work whose progress cannot be
    /// seen from here (the node checking artifacts); drawn only when `visible`.
    pub fn spinner(visible: bool, message: String) -> Self {
        if !visible {
            return Progress {
                bar: ProgressBar::hidden(),
            };
        }
        let bar = ProgressBar::new_spinner()
            .with_style(
                ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                    .expect("the template is valid"),
            )
            .with_message(message);
        bar.set_draw_target(ProgressDrawTarget::stderr());
        // Drawn once now, before the ticker starts (`tick` does nothing once one runs): the
        // ticker's thread may first run after a quick answer, and then the person would never
        // have seen what the wait was for. Under load that happened.
        bar.tick();
        bar.enable_steady_tick(TICK);
        Progress { bar }
    }

    /// Shows what is being worked on now (a file name).
    pub fn set_item(&self, item: &str) {
        self.bar.set_message(crate::format::one_line(item));
    }

    /// `inner`, counting every byte read from it on this bar.
    pub fn reader<R: Read>(&self, inner: R) -> ProgressReader<'_, R> {
        ProgressReader {
            inner,
            progress: self,
        }
    }

    /// The bytes counted so far.
    #[cfg(test)]
    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    /// The bytes the bar goes up to.
    #[cfg(test)]
    pub fn total(&self) -> u64 {
        self.bar.length().unwrap_or(0)
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// A reader that counts what passes through it on a [`Progress`] bar.
pub struct ProgressReader<'a, R> {
    inner: R,
    progress: &'a Progress,
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.bar.inc(n as u64);
        Ok(n)
    }
}

/// `1.43 MiB`: a byte count as the bars show it.
pub fn human_bytes(bytes: u64) -> String {
    HumanBytes(bytes).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most `step` bytes per read, as a file or pipe may.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn counts_every_byte_read_through_it() {
        let data: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        let progress = Progress::bytes(false, 2 * data.len() as u64, "hashing");
        assert_eq!(progress.total(), 600_000);
        let digest = crate::files::digest_reader(
            progress.reader(Trickle {
                data: &data,
                step: 7_777,
            }),
            u64::MAX,
        )
        .unwrap();
        assert_eq!(digest.size, 300_000);
        assert_eq!(progress.position(), 300_000);
        // A second file adds to the same bar; a read stopped at a limit counts only what
        // was read.
        crate::files::digest_reader(progress.reader(&data[..]), 1_000).unwrap();
        assert_eq!(progress.position(), 301_000);
        // Errors count nothing.
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk gone"))
            }
        }
        assert!(progress.reader(Failing).read(&mut [0; 8]).is_err());
        assert_eq!(progress.position(), 301_000);
    }

    #[test]
    fn a_hidden_spinner_is_silent_and_sizes_read_well() {
        let spinner = Progress::spinner(false, "waiting".to_string());
        assert_eq!(spinner.position(), 0);
        assert_eq!(human_bytes(1_500_000), "1.43 MiB");
    }
}
