//! `hgframe` subcommands: not written yet (owned by the layer that provides them).

use super::{CliResult, Failure};

/// Options (to be defined).
#[derive(Debug, clap::Args)]
pub(crate) struct CallArgs {}

pub(crate) fn run(_args: CallArgs) -> CliResult {
    Err(Failure::usage("this subcommand is not implemented yet"))
}
