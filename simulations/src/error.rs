//! Errors and the exit codes they map to.

use std::fmt;

/// What went wrong, sorted by whose mistake it is: the exit code tells scripts apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimError {
    /// Bad command line or scenario: nothing ran. Exit code 2, like a clap usage error.
    Usage(String),
    /// The simulation itself failed (output directory not writable, an internal check).
    /// Exit code 1.
    Runtime(String),
}

impl SimError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            SimError::Usage(_) => 2,
            SimError::Runtime(_) => 1,
        }
    }
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            SimError::Usage(m) | SimError::Runtime(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for SimError {}
