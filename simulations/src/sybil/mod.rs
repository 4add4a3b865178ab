//! `commons-sim sybil`: how much weight Sybil strategies buy under the tally rule, run on the
//! node's own aggregator.
//!
//! A scenario file describes the honest network, the attackers and the policy;
//! `--set`/`--sweep` change it from the command line; every parameter point runs `--runs`
//! times with seeds `seed, seed + 1, ...`, spread over all cores; the results land in the
//! output directory as `runs.csv`, `summary.json` and a plot.

pub mod engine;
pub mod output;
pub mod scenario;
pub mod world;

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use crate::error::SimError;
use crate::progress::Progress;
use engine::{LoadMode, Outcome};
use scenario::{Resolved, Scenario, Sweep};

/// Arguments of `commons-sim sybil`.
#[derive(Debug, Clone, clap::Args)]
pub struct SybilArgs {
    /// The scenario file (TOML; the format is in docs/SIMULATIONS.md).
    #[arg(long, value_name = "FILE")]
    pub scenario: PathBuf,
    /// Change one scenario value, e.g. `--set honest.nodes=5000`,
    /// `--set attacker.cloud.ips=300`, `--set policy.base=regtest`. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Sweep one value: `KEY=A..B:STEPS` (STEPS evenly spaced values, A and B included) or
    /// `KEY=V1,V2,...`. Several sweeps run every combination. Repeatable.
    #[arg(long = "sweep", value_name = "KEY=A..B:STEPS")]
    pub sweeps: Vec<String>,
    /// Seed of run 0 (run r uses seed + r). Default: the scenario's `run.seed`.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Runs per parameter point. Default: the scenario's `run.runs`.
    #[arg(long)]
    pub runs: Option<u32>,
    /// Output directory (created if missing; files in it are replaced).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Runs at the same time. Default: one per core.
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// No progress bar and no closing summary on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Leave run times out of summary.json, so that it too is byte-identical for a seed
    /// (runs.csv never contains times).
    #[arg(long)]
    pub no_timing: bool,
    /// Feed messages as a node does between epoch boundaries, updating standings after
    /// each one, instead of computing them once at the boundary. Same numbers, much slower:
    /// for checking and profiling the aggregator's incremental path.
    #[arg(long)]
    pub incremental: bool,
}

/// One parameter point: the swept values and the scenario they give.
#[derive(Debug, Clone)]
pub struct Point {
    /// The value of each sweep, in sweep order.
    pub values: Vec<toml::Value>,
    /// The scenario with `--set` and these values applied.
    pub scenario: Scenario,
    /// Its spec and policy.
    pub resolved: Resolved,
}

/// Everything a finished invocation produced.
#[derive(Debug)]
pub struct Results {
    /// The sweeps.
    pub sweeps: Vec<Sweep>,
    /// The points, in sweep order (the last sweep varies fastest).
    pub points: Vec<Point>,
    /// Outcomes by point, then run.
    pub outcomes: Vec<Vec<Outcome>>,
    /// The seed of run 0.
    pub seed: u64,
    /// Wall-clock time of the whole invocation.
    pub total_ms: u64,
    /// Threads used.
    pub threads: usize,
}

/// Runs `commons-sim sybil`.
pub fn main(args: &SybilArgs) -> Result<(), SimError> {
    let started = Instant::now();
    let origin = args.scenario.display().to_string();
    let text = std::fs::read_to_string(&args.scenario)
        .map_err(|e| SimError::Usage(format!("{origin}: cannot read the scenario: {e}")))?;
    // Typed parse of the file first: its errors carry line numbers.
    Scenario::from_toml_str(&text, &origin)?;
    let doc: toml::Table =
        toml::from_str(&text).map_err(|e| SimError::Usage(format!("{origin}: {}", e.message())))?;
    let sets = args
        .sets
        .iter()
        .map(|s| scenario::parse_set(s))
        .collect::<Result<Vec<_>, _>>()?;
    let sweeps = args
        .sweeps
        .iter()
        .map(|s| scenario::parse_sweep(s))
        .collect::<Result<Vec<_>, _>>()?;
    let name = args
        .scenario
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scenario".into());
    let points = points(&doc, &sets, &sweeps, &name)?;
    let first = &points[0].scenario;
    let seed = args.seed.unwrap_or(first.run.seed);
    let runs = args.runs.unwrap_or(first.run.runs);
    if runs == 0 {
        return Err(SimError::Usage("--runs must be at least 1".into()));
    }
    let threads = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    std::fs::create_dir_all(&args.out)
        .map_err(|e| SimError::Runtime(format!("cannot create {}: {e}", args.out.display())))?;
    let progress = Progress::new(
        points.len() * runs as usize,
        !args.quiet && crate::progress::stderr_is_terminal(),
    );
    let mode = if args.incremental {
        LoadMode::Incremental
    } else {
        LoadMode::EpochBoundary
    };
    let outcomes = run_all(&points, seed, runs, mode, threads, &progress)?;
    progress.finish();
    let results = Results {
        sweeps,
        points,
        outcomes,
        seed,
        total_ms: started.elapsed().as_millis() as u64,
        threads,
    };
    let written = output::write_all(&args.out, &origin, &args.sets, &results, !args.no_timing)?;
    if !args.quiet {
        let runs_done: usize = results.outcomes.iter().map(Vec::len).sum();
        eprintln!(
            "commons-sim: {runs_done} run(s) in {:.1} s; wrote {}",
            results.total_ms as f64 / 1000.0,
            written.join(", ")
        );
    }
    Ok(())
}

/// Every combination of sweep values, each turned into a checked scenario.
pub fn points(
    doc: &toml::Table,
    sets: &[(String, toml::Value)],
    sweeps: &[Sweep],
    name: &str,
) -> Result<Vec<Point>, SimError> {
    let mut combos: Vec<Vec<toml::Value>> = vec![vec![]];
    for sweep in sweeps {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                sweep.values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push(v.clone());
                    c
                })
            })
            .collect();
    }
    let mut points = Vec::with_capacity(combos.len());
    for values in combos {
        let mut applied: Vec<(String, toml::Value, &'static str)> = sets
            .iter()
            .map(|(k, v)| (k.clone(), v.clone(), "--set"))
            .collect();
        applied.extend(
            sweeps
                .iter()
                .zip(&values)
                .map(|(s, v)| (s.key.clone(), v.clone(), "--sweep")),
        );
        let scenario = scenario::build(doc, &applied, name)?;
        let resolved = scenario
            .resolve()
            .map_err(|e| match (&e, sweeps.is_empty()) {
                (SimError::Usage(m), false) => {
                    let at: Vec<String> = sweeps
                        .iter()
                        .zip(&values)
                        .map(|(s, v)| format!("{}={}", s.key, scenario::value_text(v)))
                        .collect();
                    SimError::Usage(format!("at sweep point {}: {m}", at.join(" ")))
                }
                _ => e,
            })?;
        points.push(Point {
            values,
            scenario,
            resolved,
        });
    }
    Ok(points)
}

/// Runs every (point, run) pair on `threads` threads; outcomes come back in order, so the
/// CSV does not depend on which thread finished first.
pub fn run_all(
    points: &[Point],
    seed: u64,
    runs: u32,
    mode: LoadMode,
    threads: usize,
    progress: &Progress,
) -> Result<Vec<Vec<Outcome>>, SimError> {
    let jobs: Vec<(usize, u32)> = (0..points.len())
        .flat_map(|p| (0..runs).map(move |r| (p, r)))
        .collect();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let slots: Mutex<Vec<Option<Result<Outcome, SimError>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    // The cores the runs leave idle go to each run's epoch boundary: a single large run
    // (a million nodes) gets them all.
    let workers = threads.min(jobs.len()).max(1);
    let boundary_threads = (threads / workers).max(1);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= jobs.len() || failed.load(Ordering::Relaxed) {
                        break;
                    }
                    let (p, r) = jobs[i];
                    let result = engine::run_on(
                        &points[p].scenario,
                        seed.wrapping_add(u64::from(r)),
                        mode,
                        boundary_threads,
                    );
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    slots.lock().expect("no thread panics holding the lock")[i] = Some(result);
                    progress.tick();
                }
            });
        }
    });
    let slots = slots
        .into_inner()
        .expect("no thread panics holding the lock");
    let mut outcomes: Vec<Vec<Outcome>> = (0..points.len()).map(|_| Vec::new()).collect();
    for ((p, _), slot) in jobs.iter().zip(slots) {
        match slot {
            Some(Ok(o)) => outcomes[*p].push(o),
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    Ok(outcomes)
}
