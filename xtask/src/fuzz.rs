//! `cargo xtask fuzz` and `cargo xtask fuzz-seeds`.
//!
//! Fuzzing runs on the stable toolchain: cargo-fuzz with `--sanitizer none` (safe Rust
//! needs no sanitizer to find panics, hangs, overflows and runaway allocation; libFuzzer's
//! `-rss_limit_mb` and `-timeout` catch the last two).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// Memory a run may use before libFuzzer calls it a crash.
const RSS_LIMIT_MB: u32 = 2048;
/// Seconds one input may take before libFuzzer calls it a hang.
const TIMEOUT_SECS: u32 = 10;
/// Default run time per target.
const DEFAULT_SECS: u64 = 60;

/// The workspace root (xtask lives one level below it).
fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// What one target's run gave.
struct Report {
    target: String,
    ok: bool,
    runs: Option<u64>,
    secs: f64,
    cov: Option<u64>,
    ft: Option<u64>,
    corpus: Option<String>,
}

/// `fuzz [TARGET] [--time SECONDS]`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut target = None;
    let mut secs = DEFAULT_SECS;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--time" => {
                let v = it.next().context("--time needs a number of seconds")?;
                secs = v
                    .parse()
                    .with_context(|| format!("--time {v}: not a number of seconds"))?;
            }
            "-h" | "--help" => {
                println!("usage: cargo xtask fuzz [TARGET] [--time SECONDS]  (default: every target, {DEFAULT_SECS} s each)");
                return Ok(());
            }
            other if other.starts_with('-') => bail!("unknown option {other}"),
            other if target.is_none() => target = Some(other.to_string()),
            other => bail!("one target at most (got {other} too)"),
        }
    }
    if secs == 0 {
        bail!("--time must be at least 1 second");
    }
    let root = root();
    let fuzz_dir = root.join("fuzz");
    ensure_cargo_fuzz()?;
    // The fuzz crate's lock file must be up to date, as the workspace's (`--locked`).
    let locked = Command::new("cargo")
        .args(["metadata", "--locked", "--format-version", "1", "--no-deps"])
        .arg("--manifest-path")
        .arg(fuzz_dir.join("Cargo.toml"))
        .stdout(Stdio::null())
        .status()
        .context("starting cargo metadata")?;
    if !locked.success() {
        bail!(
            "fuzz/Cargo.lock is out of date: run `cargo update -w --manifest-path fuzz/Cargo.toml` and commit it"
        );
    }

    let all = list_targets(&fuzz_dir)?;
    let targets = match target {
        Some(t) if all.contains(&t) => vec![t],
        Some(t) => bail!("no fuzz target {t}; there are: {}", all.join(", ")),
        None => all,
    };
    // One build for every target, then the runs.
    crate::run(
        "cargo",
        &[
            "fuzz",
            "build",
            "--sanitizer",
            "none",
            "--fuzz-dir",
            &path_str(&fuzz_dir)?,
        ],
    )?;
    let mut reports = Vec::new();
    for t in &targets {
        reports.push(run_target(&fuzz_dir, t, secs)?);
    }
    println!();
    println!("| target | runs | seconds | cov | ft | corpus | result |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for r in &reports {
        let num = |n: Option<u64>| n.map_or_else(|| "?".to_string(), |n| n.to_string());
        println!(
            "| {} | {} | {:.0} | {} | {} | {} | {} |",
            r.target,
            num(r.runs),
            r.secs,
            num(r.cov),
            num(r.ft),
            r.corpus.as_deref().unwrap_or("?"),
            if r.ok { "ok" } else { "CRASH" }
        );
    }
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| !r.ok)
        .map(|r| r.target.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "fuzz targets failed: {} (the input is in fuzz/artifacts/<target>/; \
             reproduce with `cargo fuzz run --sanitizer none --fuzz-dir fuzz TARGET FILE`)",
            failed.join(", ")
        );
    }
    Ok(())
}

fn path_str(p: &Path) -> Result<String> {
    p.to_str()
        .map(str::to_string)
        .with_context(|| format!("path {} is not UTF-8", p.display()))
}

fn ensure_cargo_fuzz() -> Result<()> {
    let present = Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        eprintln!("cargo-fuzz is missing: installing it");
        crate::run("cargo", &["install", "cargo-fuzz", "--locked"])?;
    }
    Ok(())
}

fn list_targets(fuzz_dir: &Path) -> Result<Vec<String>> {
    let out = Command::new("cargo")
        .args(["fuzz", "list", "--fuzz-dir"])
        .arg(fuzz_dir)
        .output()
        .context("starting cargo fuzz list")?;
    if !out.status.success() {
        bail!(
            "cargo fuzz list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// Runs one target for `secs` seconds on its working corpus (`fuzz/corpus/TARGET`, not
/// committed) and its committed seeds (`fuzz/seeds/TARGET`), echoing libFuzzer's output
/// and keeping its final figures.
fn run_target(fuzz_dir: &Path, target: &str, secs: u64) -> Result<Report> {
    let corpus = fuzz_dir.join("corpus").join(target);
    let seeds = fuzz_dir.join("seeds").join(target);
    std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let mut cmd = Command::new("cargo");
    cmd.args(["fuzz", "run", "--sanitizer", "none", "--fuzz-dir"])
        .arg(fuzz_dir)
        .arg(target)
        .arg(&corpus);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    cmd.arg("--")
        .arg(format!("-max_total_time={secs}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg(format!("-timeout={TIMEOUT_SECS}"))
        .arg("-print_final_stats=1")
        .stderr(Stdio::piped());
    eprintln!("+ fuzzing {target} for {secs} s");
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting cargo fuzz run {target}"))?;
    let mut report = Report {
        target: target.to_string(),
        ok: false,
        runs: None,
        secs: 0.0,
        cov: None,
        ft: None,
        corpus: None,
    };
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let line = line.context("reading libFuzzer's output")?;
            eprintln!("{line}");
            read_line(&line, &mut report);
        }
    }
    let status = child.wait().context("waiting for cargo fuzz")?;
    report.ok = status.success();
    if report.secs == 0.0 {
        report.secs = started.elapsed().as_secs_f64();
    }
    Ok(report)
}

/// Picks the figures out of libFuzzer's status lines (`#N ... cov: C ft: F corp: K/S`)
/// and its last one (`Done N runs in S second(s)`).
fn read_line(line: &str, report: &mut Report) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |key: &str| {
        words
            .iter()
            .position(|w| *w == key)
            .and_then(|i| words.get(i + 1))
            .copied()
    };
    if line.starts_with('#') {
        if let Some(c) = after("cov:").and_then(|v| v.parse().ok()) {
            report.cov = Some(c);
        }
        if let Some(f) = after("ft:").and_then(|v| v.parse().ok()) {
            report.ft = Some(f);
        }
        if let Some(k) = after("corp:") {
            report.corpus = Some(k.to_string());
        }
    }
    if let ["Done", runs, "runs", "in", secs, ..] = words.as_slice() {
        report.runs = runs.parse().ok();
        if let Ok(s) = secs.parse() {
            report.secs = s;
        }
    }
}

/// `fuzz-seeds`: writes each target's seed inputs, made from valid traffic by the
/// library crates' `fuzzing::seeds`, to `fuzz/seeds/TARGET/seed-N`, replacing what was
/// there.
pub(crate) fn write_seeds() -> Result<()> {
    let mut seeds = Vec::new();
    for part in [
        hgframe_wire::fuzzing::seeds(),
        hgframe_stream::fuzzing::seeds(),
        hgframe_reactor::fuzzing::seeds(),
        hgframe_engine::fuzzing::seeds(),
        hgframe_http::fuzzing::seeds(),
    ] {
        seeds.extend(part.map_err(anyhow::Error::msg)?);
    }
    let dir = root().join("fuzz").join("seeds");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for (target, input) in seeds {
        let n = counts.entry(target).or_default();
        let file = dir.join(target).join(format!("seed-{n}"));
        *n += 1;
        std::fs::create_dir_all(dir.join(target))?;
        std::fs::write(&file, input).with_context(|| format!("writing {}", file.display()))?;
    }
    for (target, n) in counts {
        println!("fuzz/seeds/{target}: {n} files");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> Report {
        Report {
            target: "t".into(),
            ok: false,
            runs: None,
            secs: 0.0,
            cov: None,
            ft: None,
            corpus: None,
        }
    }

    #[test]
    fn reads_libfuzzers_final_figures() {
        let mut r = empty();
        for line in [
            "INFO: Seed: 1234",
            "#2\tINITED cov: 10 ft: 11 corp: 1/1b exec/s: 0 rss: 30Mb",
            "#1578252\tDONE   cov: 895 ft: 2742 corp: 435/37Kb lim: 4096 exec/s: 15626 rss: 36Mb",
            "Done 1578252 runs in 101 second(s)",
            "stat::number_of_executed_units: 1578252",
        ] {
            read_line(line, &mut r);
        }
        assert_eq!(r.runs, Some(1_578_252));
        assert_eq!(r.secs, 101.0);
        assert_eq!((r.cov, r.ft), (Some(895), Some(2742)));
        assert_eq!(r.corpus.as_deref(), Some("435/37Kb"));
    }

    #[test]
    fn other_lines_leave_the_figures_alone() {
        let mut r = empty();
        read_line("==123== ERROR: libFuzzer: deadly signal", &mut r);
        read_line("\"cov:\" # Uses: 12", &mut r);
        assert_eq!((r.runs, r.cov, r.ft), (None, None, None));
    }
}
