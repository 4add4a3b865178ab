//! The one error type of every command, and the exit codes it maps to.
//!
//! Commands build their errors with [`anyhow`], adding the file name as context, so that
//! the message a person reads is `FILE: problem` in one or two lines. The variant only says
//! which exit code the failure gets. A later kind of failure (an unreachable RPC server,
//! say) becomes a new variant with its own code.

use std::fmt;
use std::io::Write;

/// Exit code when a verification ran and what it checked is not valid.
pub const EXIT_FAILED: u8 = 1;
/// Exit code of bad arguments and of input that cannot be read, parsed or used. clap exits
/// with the same code for usage errors.
pub const EXIT_INPUT: u8 = 2;
/// Exit code when the node cannot be reached or refuses the credentials.
pub const EXIT_UNAVAILABLE: u8 = 3;

/// Why a command did not succeed.
#[derive(Debug)]
pub enum CliError {
    /// A verification ran and the input did not pass it (exit code 1).
    Failed(anyhow::Error),
    /// Bad arguments, or input that could not be read, parsed or used (exit code 2).
    Input(anyhow::Error),
    /// The node is not running, not reachable, or refused the cookie (exit code 3).
    Unavailable(anyhow::Error),
}

/// The result of a command or a step of one.
pub type Result<T = (), E = CliError> = std::result::Result<T, E>;

impl CliError {
    /// A verification failure with this message.
    pub fn failed(message: impl fmt::Display) -> Self {
        CliError::Failed(anyhow::anyhow!("{message}"))
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Failed(_) => EXIT_FAILED,
            CliError::Input(_) => EXIT_INPUT,
            CliError::Unavailable(_) => EXIT_UNAVAILABLE,
        }
    }

    /// The error with its context chain.
    pub fn error(&self) -> &anyhow::Error {
        match self {
            CliError::Failed(e) | CliError::Input(e) | CliError::Unavailable(e) => e,
        }
    }

    /// Prints the error to standard error as `error: FILE: problem`.
    pub fn report(&self) {
        // Nothing sensible is left to do when standard error itself is gone.
        let text = self.to_string();
        let _ = writeln!(
            std::io::stderr(),
            "error: {}",
            crate::format::terminal_safe(&text)
        );
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        // `{:#}` prints the whole context chain: "proposal.cbor: malformed message: ...".
        write!(f, "{:#}", self.error())
    }
}

/// Any `anyhow` error is an input error unless a command says otherwise; so `?` works on
/// `anyhow::Result`, while a bare `std::io::Error` needs `.with_context(...)` to name its
/// file first.
impl From<anyhow::Error> for CliError {
    fn from(error: anyhow::Error) -> Self {
        CliError::Input(error)
    }
}

/// Turns a key error into an input error, with file problems worded as for other files.
pub fn key_error(error: commons_signaling::KeyError) -> CliError {
    match error {
        commons_signaling::KeyError::Io { path, source } => {
            CliError::Input(crate::files::io_error(&path, &source))
        }
        other => input(other),
    }
}

/// Turns a spec error into an input error, with file problems worded as for other files.
pub fn spec_error(error: commons_signaling::SpecError) -> CliError {
    match error {
        commons_signaling::SpecError::Io { path, source } => {
            CliError::Input(crate::files::io_error(std::path::Path::new(&path), &source))
        }
        other => input(other),
    }
}

/// Turns a library error whose message already names its file (key and spec errors) into an
/// input error.
pub fn input<E: std::error::Error + Send + Sync + 'static>(error: E) -> CliError {
    CliError::Input(anyhow::Error::new(error))
}
