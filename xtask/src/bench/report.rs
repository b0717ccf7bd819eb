//! The report: medians over the repetitions, one line per goal, the section of
//! `docs/BENCHMARKS.md` for this data size, and a JSON copy under `target/bench/`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde_json::json;

use super::{Results, Sample, Scenario, load, ms};

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn stat(r: &Results, s: Scenario, f: impl Fn(&Sample) -> f64) -> (f64, Vec<f64>) {
    let all: Vec<f64> = r
        .samples
        .get(&s)
        .map(|v| v.iter().map(&f).collect())
        .unwrap_or_default();
    (median(all.clone()), all)
}

fn name(s: Scenario, r: &Results) -> String {
    let c = r.concurrency;
    match s {
        Scenario::GetUnloaded => "GET by id, 1 connection".into(),
        Scenario::ListUnloaded => "list page of 50, 1 connection".into(),
        Scenario::ReadMixOpen => format!("read mix (9 GET : 1 list), open loop at {}/s", r.rate),
        Scenario::GetSaturated => format!("GET by id, {c} connections"),
        Scenario::GetFloor => format!("pgbench floor: GET-by-id SQL, {c} clients"),
        Scenario::ListSaturated => format!("list page of 50, {c} connections"),
        Scenario::CreateSaturated => format!("create, {c} connections"),
        Scenario::PatchSaturated => format!("patch, {c} connections"),
    }
}

/// The ratio GET-by-id throughput / pgbench floor, per run (same run, same minute).
fn floor_ratios(r: &Results) -> Vec<f64> {
    let api = r
        .samples
        .get(&Scenario::GetSaturated)
        .cloned()
        .unwrap_or_default();
    let floor = r
        .samples
        .get(&Scenario::GetFloor)
        .cloned()
        .unwrap_or_default();
    api.iter().zip(&floor).map(|(a, f)| a.rps / f.rps).collect()
}

struct Goal {
    what: String,
    target: String,
    measured: String,
    met: bool,
}

fn goals(r: &Results) -> Vec<Goal> {
    let list_limit_ms = if r.leads >= 1_000_000 { 15.0 } else { 5.0 };
    let (get_p95, _) = stat(r, Scenario::GetUnloaded, |s| ms(s.p95_us));
    let (list_p95, _) = stat(r, Scenario::ListUnloaded, |s| ms(s.p95_us));
    let (mix_p99, _) = stat(r, Scenario::ReadMixOpen, |s| ms(s.p99_us));
    let ratio = median(floor_ratios(r));
    let (get_rps, _) = stat(r, Scenario::GetSaturated, |s| s.rps);
    let (floor_tps, _) = stat(r, Scenario::GetFloor, |s| s.rps);
    let (create_rps, _) = stat(r, Scenario::CreateSaturated, |s| s.rps);
    let rss_mb = r.rss_peak_kib as f64 * 1024.0 / 1e6;
    vec![
        Goal {
            what: "GET by id p95, unloaded (1 connection)".into(),
            target: "≤ 1 ms".into(),
            measured: format!("{get_p95:.2} ms"),
            met: get_p95 <= 1.0,
        },
        Goal {
            what: format!("list page p95, unloaded, {} leads", thousands(r.leads)),
            target: format!("≤ {list_limit_ms} ms"),
            measured: format!("{list_p95:.2} ms"),
            met: list_p95 <= list_limit_ms,
        },
        Goal {
            what: format!("read mix p99 at a fixed {}/s", r.rate),
            target: "≤ 5 ms".into(),
            measured: format!("{mix_p99:.2} ms"),
            met: mix_p99 <= 5.0,
        },
        Goal {
            what: format!(
                "GET-by-id throughput vs pgbench floor, {} connections",
                r.concurrency
            ),
            target: "≥ 50 %".into(),
            measured: format!(
                "{:.0} % ({get_rps:.0}/s vs {floor_tps:.0}/s)",
                ratio * 100.0
            ),
            met: ratio >= 0.5,
        },
        Goal {
            what: format!("create throughput, {} connections", r.concurrency),
            target: "≥ 2,000/s".into(),
            measured: format!("{create_rps:.0}/s"),
            met: create_rps >= 2000.0,
        },
        Goal {
            what: "server peak RSS (VmHWM)".into(),
            target: "≤ 100 MB".into(),
            measured: format!("{rss_mb:.1} MB"),
            met: rss_mb <= 100.0,
        },
    ]
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let kernel = read("/proc/sys/kernel/osrelease");
    format!(
        "{cores} cores (nproc), {model}, {:.1} GiB RAM, Linux {}",
        mem_kib as f64 / 1024.0 / 1024.0,
        kernel.trim()
    )
}

fn runs_list(v: &[f64], unit: &str, digits: usize) -> String {
    v.iter()
        .map(|x| format!("{x:.digits$}{unit}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// The Markdown section for this data size.
pub(crate) fn section(r: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## API benchmark, {} leads\n", thousands(r.leads));
    let _ = writeln!(
        s,
        "Generated by `cargo xtask bench api`; this section is replaced on the next run of the \
         same size.\n"
    );
    let _ = writeln!(
        s,
        "- **Date:** {} (the run took {} min)",
        r.started,
        r.elapsed_secs.div_ceil(60)
    );
    let _ = writeln!(s, "- **Command:** `{}`", r.command);
    let _ = writeln!(s, "- **Code:** `{}`", r.git);
    let _ = writeln!(
        s,
        "- **Machine:** {}; server, PostgreSQL and load generator share it",
        machine()
    );
    let _ = writeln!(
        s,
        "- **PostgreSQL:** {}; {}",
        r.postgres.split(" on ").next().unwrap_or(&r.postgres),
        r.pg_settings
            .iter()
            .map(|(k, v)| format!("`{k}={v}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        s,
        "- **Server:** release build, default configuration (pool of 16, one worker per core, \
         info logging to a file)"
    );
    let _ = writeln!(
        s,
        "- **Method:** every scenario {} s, {} repetitions interleaved, each after a warm-up \
         ({} s of GETs and {} s of list pages over the saturation connections: the previous \
         repetition's clean-up ends with `ANALYZE`, which drops PostgreSQL's cached plans); \
         figures are medians over the repetitions (per-run values in the last column). Latency \
         in ms, throughput in successful requests (pgbench: transactions) per second.\n",
        r.secs,
        r.runs,
        r.secs.min(5),
        r.secs.min(5)
    );

    let _ = writeln!(s, "### Goals\n");
    let _ = writeln!(s, "| goal | target | measured (median) | verdict |");
    let _ = writeln!(s, "|---|---|---|---|");
    for g in goals(r) {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            g.what,
            g.target,
            g.measured,
            if g.met { "met" } else { "**not met**" }
        );
    }
    let ratios = floor_ratios(r);
    let _ = writeln!(
        s,
        "\nGET-by-id / floor per run: {}.\n",
        runs_list(
            &ratios.iter().map(|x| x * 100.0).collect::<Vec<_>>(),
            " %",
            0
        )
    );

    let _ = writeln!(s, "### All scenarios\n");
    let _ = writeln!(
        s,
        "| scenario | p50 | p95 | p99 | per second | errors | p95 per run · rate per run |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---|");
    for (scenario, samples) in &r.samples {
        let (p50, _) = stat(r, *scenario, |x| ms(x.p50_us));
        let (p95, p95s) = stat(r, *scenario, |x| ms(x.p95_us));
        let (p99, _) = stat(r, *scenario, |x| ms(x.p99_us));
        let (rps, rpss) = stat(r, *scenario, |x| x.rps);
        let errors: u64 = samples.iter().map(|x| x.errors).sum();
        let _ = writeln!(
            s,
            "| {} | {p50:.2} | {p95:.2} | {p99:.2} | {rps:.0} | {errors} | {} · {} |",
            name(*scenario, r),
            runs_list(&p95s, "", 2),
            runs_list(&rpss, "", 0),
        );
        if *scenario == Scenario::ReadMixOpen {
            for kind in ["Get", "List"] {
                let q = |i: usize| {
                    median(
                        samples
                            .iter()
                            .filter_map(|x| x.kinds.get(kind))
                            .map(|k| ms([k.0, k.1, k.2][i]))
                            .collect(),
                    )
                };
                let _ = writeln!(
                    s,
                    "| … of which {} | {:.2} | {:.2} | {:.2} | | | |",
                    if kind == "Get" {
                        "GET by id"
                    } else {
                        "list page"
                    },
                    q(0),
                    q(1),
                    q(2)
                );
            }
        }
    }
    let _ = writeln!(
        s,
        "\nServer memory: peak RSS (VmHWM) {:.1} MB, {:.1} MB at the end.\n",
        r.rss_peak_kib as f64 * 1024.0 / 1e6,
        r.rss_end_kib as f64 * 1024.0 / 1e6
    );
    let _ = writeln!(s, "List shapes, in turn: {}.", load::LIST_SHAPES.join("; "));
    s
}

/// The results as JSON (for before/after comparisons).
pub(crate) fn to_json(r: &Results) -> serde_json::Value {
    let scenarios: serde_json::Map<String, serde_json::Value> = r
        .samples
        .iter()
        .map(|(k, v)| {
            (
                format!("{k:?}"),
                json!(v.iter().map(|x| json!({
                    "p50_ms": ms(x.p50_us), "p95_ms": ms(x.p95_us), "p99_ms": ms(x.p99_us),
                    "per_second": x.rps, "ok": x.ok, "errors": x.errors,
                    "kinds": x.kinds.iter().map(|(k, q)| (k.clone(), json!([ms(q.0), ms(q.1), ms(q.2)]))).collect::<serde_json::Map<_, _>>(),
                })).collect::<Vec<_>>()),
            )
        })
        .collect();
    json!({
        "leads": r.leads, "runs": r.runs, "secs": r.secs, "concurrency": r.concurrency,
        "rate": r.rate, "started": r.started, "command": r.command, "git": r.git,
        "rss_peak_kib": r.rss_peak_kib, "rss_end_kib": r.rss_end_kib,
        "floor_ratios": floor_ratios(r),
        "goals": goals(r).iter().map(|g| json!({"goal": g.what, "target": g.target, "measured": g.measured, "met": g.met})).collect::<Vec<_>>(),
        "scenarios": scenarios,
    })
}

const HEADER: &str = "# Benchmarks\n\n\
The API benchmark of issue 3 (`cargo xtask bench api`; `--million` for 1M leads). The sections \
below are generated; notes outside them are kept.\n";

/// Replaces (or appends) this size's generated section of `path`.
pub(crate) fn write(path: &Path, leads: u64, section: &str) -> Result<()> {
    let begin = format!("<!-- bench:api:{leads}:begin -->");
    let end = format!("<!-- bench:api:{leads}:end -->");
    let current = std::fs::read_to_string(path).unwrap_or_else(|_| HEADER.to_owned());
    let block = format!("{begin}\n{section}{end}");
    let updated = match (current.find(&begin), current.find(&end)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{block}{}", &current[..b], &current[e + end.len()..])
        }
        _ => format!("{}\n{block}\n", current.trim_end()),
    };
    std::fs::write(path, updated)?;
    Ok(())
}
