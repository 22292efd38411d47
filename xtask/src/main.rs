//! Development tasks for hgframe: `cargo run -p xtask -- <task>`.
//!
//! - `ci`: what `.ci/run` does (format, lint, docs, tests).
//! - `clippy-each`: clippy on each package alone, so features are not unified across the
//!   workspace (a crate that only builds with a sibling's features shows up here).
//! - `features`: each library crate with `--no-default-features`, then with default features.
//! - `bench-report`: runs every criterion bench and prints where the reports are.
//! - `fuzz TARGET [SECONDS]`: runs a fuzz target with cargo-fuzz (nightly).

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
        Some("fuzz") => {
            let Some(target) = args.get(1) else {
                bail!("usage: cargo run -p xtask -- fuzz TARGET [SECONDS]");
            };
            let secs = args.get(2).map_or("60", String::as_str);
            let max_time = format!("-max_total_time={secs}");
            run(
                "cargo",
                &[
                    "+nightly",
                    "fuzz",
                    "run",
                    "--fuzz-dir",
                    "fuzz",
                    target,
                    "--",
                    &max_time,
                ],
            )?;
        }
        _ => {
            println!("usage: cargo run -p xtask -- <ci | clippy-each | features | bench-report | fuzz TARGET [SECONDS]>");
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
