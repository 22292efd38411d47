//! `hgframe` subcommands: not written yet (owned by the layer that provides them).

use super::{CliResult, Failure};

/// Options (to be defined).
#[derive(Debug, clap::Args)]
pub(crate) struct PackArgs {}

/// Options (to be defined).
#[derive(Debug, clap::Args)]
pub(crate) struct UnpackArgs {}

pub(crate) fn pack(_args: PackArgs) -> CliResult {
    Err(Failure::usage("this subcommand is not implemented yet"))
}

pub(crate) fn unpack(_args: UnpackArgs) -> CliResult {
    Err(Failure::usage("this subcommand is not implemented yet"))
}
