//! Development tasks for hgframe: `cargo run -p xtask -- <task>`.
//!
//! - `ci`: what `.ci/run` does (format, lint, docs, tests).
//! - `clippy-each`: clippy on each package alone, so features are not unified across the
//!   workspace (a crate that only builds with a sibling's features shows up here).
//! - `features`: each library crate with `--no-default-features`, then with default features.
//! - `bench-report`: runs every criterion bench and prints where the reports are.
//! - `fuzz [TARGET] [--time SECONDS]`: runs one fuzz target or all of them with cargo-fuzz
//!   on the stable toolchain (installs cargo-fuzz if missing); see `fuzz/README.md`.
//! - `fuzz-seeds`: writes the seed corpora (`fuzz/seeds/`) from valid traffic.

mod fuzz;

use std::process::Command;

use anyhow::{bail, Context, Result};

const LIBRARY_CRATES: [&str; 5] = [
    "hgframe-wire",
    "hgframe-stream",
    "hgframe-reactor",
    "hgframe-engine",
    "hgframe-http",
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => {
            run("bash", &[".ci/run"])?;
        }
        Some("clippy-each") => {
            for krate in LIBRARY_CRATES.iter().chain(&["hgframe"]) {
                run(
                    "cargo",
                    &[
                        "clippy",
                        "-p",
                        krate,
                        "--all-targets",
                        "--",
                        "-D",
                        "warnings",
                    ],
                )?;
            }
        }
        Some("features") => {
            for krate in LIBRARY_CRATES {
                run("cargo", &["check", "-p", krate, "--no-default-features"])?;
                run("cargo", &["check", "-p", krate])?;
            }
        }
        Some("bench-report") => {
            run("cargo", &["bench", "-p", "hgframe-benches"])?;
            println!("criterion reports: target/criterion/report/index.html");
        }
        Some("fuzz") => fuzz::run(args.get(1..).unwrap_or_default())?,
        Some("fuzz-seeds") => fuzz::write_seeds()?,
        _ => {
            println!("usage: cargo xtask <ci | clippy-each | features | bench-report | fuzz [TARGET] [--time SECONDS] | fuzz-seeds>");
        }
    }
    Ok(())
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    eprintln!("+ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("starting {program}"))?;
    if !status.success() {
        bail!("{program} {} failed: {status}", args.join(" "));
    }
    Ok(())
}
