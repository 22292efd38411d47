//! `hgframe` subcommands: not written yet (owned by the layer that provides them).

use super::{CliResult, Failure};

/// Options (to be defined).
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {}

pub(crate) fn run(_args: DemoArgs) -> CliResult {
    Err(Failure::usage("this subcommand is not implemented yet"))
}
