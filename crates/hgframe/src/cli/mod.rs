//! The subcommands, one module each.
//!
//! Exit status (docs/cli.md): 0 on success; 1 when the input or the peer was bad, with a
//! one-line message on stderr; 2 for bad usage.

use std::io::Write;
use std::process::ExitCode;

pub(crate) mod batch;
pub(crate) mod call;
pub(crate) mod debug;
pub(crate) mod demo;
pub(crate) mod frames;
pub(crate) mod pack;
pub(crate) mod serve;

/// What a subcommand that failed reports.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The input or the peer was bad: exit 1.
    Bad(String),
    /// The command line was wrong: exit 2.
    Usage(String),
}

impl Failure {
    pub(crate) fn bad(msg: impl std::fmt::Display) -> Self {
        Self::Bad(msg.to_string())
    }

    pub(crate) fn usage(msg: impl std::fmt::Display) -> Self {
        Self::Usage(msg.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Self::Bad(format!("i/o error: {e}"))
    }
}

/// Result of a subcommand.
pub(crate) type CliResult = Result<(), Failure>;

/// Maps a subcommand's result to the exit status, printing the message.
pub(crate) fn finish(result: CliResult) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Bad(msg)) => {
            let _ = writeln!(std::io::stderr(), "hgframe: {msg}");
            ExitCode::from(1)
        }
        Err(Failure::Usage(msg)) => {
            let _ = writeln!(std::io::stderr(), "hgframe: {msg}");
            ExitCode::from(2)
        }
    }
}

/// Reads a whole input: the file named, or stdin.
pub(crate) fn read_input(file: Option<&std::path::Path>) -> Result<Vec<u8>, Failure> {
    use std::io::Read;
    match file {
        Some(path) => std::fs::read(path)
            .map_err(|e| Failure::bad(format!("cannot read {}: {e}", path.display()))),
        None => {
            let mut buf = Vec::new();
            std::io::stdin().lock().read_to_end(&mut buf)?;
            Ok(buf)
        }
    }
}

/// Lowercase hex of some bytes (the JSON outputs of docs/cli.md).
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
