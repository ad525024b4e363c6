//! The load bench: `cargo bench --bench load [-- OPTIONS]`.
//!
//! Boots a minimal upstream and, per scenario, the gateway in this process,
//! drives closed-loop HTTP/1.1 keep-alive load at them for a bounded time
//! and prints one table (requests/s, p50/p99/p99.9 latency from an HDR
//! histogram, errors) plus one `bench-json:` line per row for scripts.
//!
//! The gateway and the upstream share one tokio runtime, the load generator
//! has its own, so their worker threads are distinct; they still share the
//! machine's cores. `--target URL` aims the same generator at an external
//! server (nginx, a `taskset`-pinned `revgate`) for pinned comparisons.
//! `docs/benchmarks.md` has every option, the caveats and the nginx recipe.

#[path = "support/admin_client.rs"]
mod admin_client;
#[path = "support/idle.rs"]
mod idle;
#[path = "support/loadgen.rs"]
mod loadgen;
#[path = "support/options.rs"]
mod options;
#[path = "support/scenarios.rs"]
mod scenarios;
#[path = "support/upstream.rs"]
mod upstream;

use loadgen::{Measurement, Plan, Target};
use options::Options;
use revgate::app::App;
use revgate::config::Config;
use scenarios::{Env, Scenario, SetupCtx};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

/// Prefix of the machine-readable lines: `grep '^bench-json: ' | cut -c13-`.
const JSON_PREFIX: &str = "bench-json: ";

/// One row of the output.
struct Row {
    name: String,
    expect: u16,
    target: String,
    result: RowResult,
}

enum RowResult {
    Measured(Measurement, Extra),
    /// Not run, with the reason.
    Skipped(String),
    /// Could not be run (bad config, failed setup...).
    Failed(String),
}

fn main() -> ExitCode {
    let opts = match Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) if e.is_empty() => {
            println!("{}", options::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("load bench: {e}");
            return ExitCode::from(2);
        }
    };
    if let (Some(n), Some(pid), Some(url)) = (opts.idle, opts.pid, &opts.target) {
        return idle_main(&opts, n, pid, url);
    }
    if opts.list {
        for s in scenarios::all() {
            match s.pending {
                Some(why) => println!("{}  (pending: {why})", s.name),
                None => println!("{}", s.name),
            }
        }
        return ExitCode::SUCCESS;
    }
    let rows = match run(&opts) {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("load bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    print_report(&opts, &rows);
    let failed = rows.iter().any(|r| match &r.result {
        RowResult::Failed(_) => true,
        // Under `cargo test`, a wrong answer fails the run.
        RowResult::Measured(m, _) => opts.smoke && (m.error_count() > 0 || m.requests() == 0),
        RowResult::Skipped(_) => false,
    });
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `--idle N --pid PID --target URL`: resident bytes per idle connection.
fn idle_main(opts: &Options, n: usize, pid: u32, url: &str) -> ExitCode {
    let run = || -> Result<idle::IdleReport, String> {
        let expect = hyper::StatusCode::from_u16(opts.expect)
            .map_err(|_| format!("expect: {} is not a status", opts.expect))?;
        let target = Target::from_url(url, &opts.headers, expect)?;
        let rt = client_runtime(opts.client_threads)?;
        rt.block_on(idle::run(Arc::new(target), n, pid))
    };
    match run() {
        Ok(r) => {
            println!(
                "idle {url} (pid {pid}): {} of {} connections open; VmRSS {} -> {} KiB: {:.0} bytes per connection",
                r.open,
                r.connections,
                r.rss_before / 1024,
                r.rss_after / 1024,
                r.bytes_per_connection()
            );
            let json = serde_json::json!({
                "scenario": "idle connections",
                "target": url,
                "pid": pid,
                "connections": r.connections,
                "open": r.open,
                "rss_before_kib": r.rss_before / 1024,
                "rss_after_kib": r.rss_after / 1024,
                "bytes_per_connection": round(r.bytes_per_connection(), 0),
            });
            println!("{JSON_PREFIX}{json}");
            if r.open == r.connections {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("load bench: idle: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A multi-threaded runtime with `threads` workers of its own, for the
/// gateway and upstream: they serve while the calling thread waits.
fn server_runtime(threads: usize) -> Result<Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("bench-server")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the server runtime: {e}"))
}

/// The load generator's runtime. With one thread it runs on the calling
/// thread (current-thread scheduler: no cross-thread wake-ups), otherwise on
/// `threads` workers of its own.
fn client_runtime(threads: usize) -> Result<Runtime, String> {
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads).thread_name("bench-load");
        b
    };
    builder
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the load generator runtime: {e}"))
}

fn run(opts: &Options) -> Result<Vec<Row>, String> {
    let plan = Plan {
        connections: opts.connections,
        warmup: opts.warmup,
        duration: opts.duration,
    };
    let client_rt = client_runtime(opts.client_threads)?;
    eprintln!(
        "revgate load bench: {} connections, {:?} warm-up + {:?} measured per row{}",
        plan.connections,
        plan.warmup,
        plan.duration,
        if opts.smoke {
            " (smoke run: no --bench flag)"
        } else {
            ""
        }
    );
    if let Some(url) = &opts.target {
        let expect = hyper::StatusCode::from_u16(opts.expect)
            .map_err(|_| format!("expect: {} is not a status", opts.expect))?;
        let target = Target::from_url(url, &opts.headers, expect)?;
        eprintln!(
            "  driving external target {url} with {} load thread(s)",
            opts.client_threads
        );
        let m = client_rt.block_on(loadgen::run(Arc::new(target), plan));
        return Ok(vec![Row {
            name: format!("target {url}"),
            expect: opts.expect,
            target: url.clone(),
            result: RowResult::Measured(m, Extra::default()),
        }]);
    }
    if !opts.headers.is_empty() || opts.expect != 200 {
        eprintln!("  note: --header and --expect apply to --target only; scenarios set their own");
    }
    eprintln!(
        "  runtimes: gateway+upstream {} thread(s), load generator {} thread(s), on {} core(s)",
        opts.server_threads,
        opts.client_threads,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let server_rt = server_runtime(opts.server_threads)?;
    let listener = server_rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| format!("cannot bind the upstream: {e}"))?;
    let upstream_addr = listener.local_addr().map_err(|e| e.to_string())?;
    server_rt.spawn(upstream::serve(listener));
    let mut env = Env::new(upstream_addr);
    // A private redis-server for the `store = "redis"` row (kept until exit).
    let _redis = revgate::revocation::redis::testing::RedisServer::start();
    env.redis_port = _redis.as_ref().map(|r| r.port());

    let mut rows = Vec::new();
    for scenario in scenarios::all() {
        if !opts.selects(scenario.name) {
            continue;
        }
        let result = match scenario.pending {
            Some(why) if !opts.include_pending => {
                RowResult::Skipped(format!("{why}; --include-pending runs it anyway"))
            }
            _ => {
                eprintln!("  running {} ...", scenario.name);
                match run_scenario(&scenario, env, plan, &server_rt, &client_rt) {
                    Ok((m, extra)) => RowResult::Measured(m, extra),
                    Err(e) => RowResult::Failed(e),
                }
            }
        };
        rows.push(Row {
            name: scenario.name.to_string(),
            expect: scenario.expect.as_u16(),
            target: "in-process".to_string(),
            result,
        });
    }
    server_rt.shutdown_timeout(Duration::from_secs(1));
    Ok(rows)
}

fn run_scenario(
    scenario: &Scenario,
    env: Env,
    plan: Plan,
    server_rt: &Runtime,
    client_rt: &Runtime,
) -> Result<(Measurement, Extra), String> {
    let spec = (scenario.request)(&env)?;
    let Some(gateway_toml) = scenario.gateway else {
        let target = spec.target(env.upstream, scenario.expect)?;
        let m = client_rt.block_on(loadgen::run(Arc::new(target), plan));
        return Ok((m, Extra::default()));
    };
    let config = Config::from_toml(&gateway_toml(&env), scenario.name)
        .map_err(|e| format!("gateway config: {e}"))?;
    let rss_before = resident_bytes();
    let (main, admin, app) = server_rt.block_on(async {
        let main = TcpListener::bind("127.0.0.1:0").await;
        let admin = TcpListener::bind("127.0.0.1:0").await;
        let app = App::build(config).await;
        (main, admin, app)
    });
    let main = main.map_err(|e| format!("cannot bind the gateway: {e}"))?;
    let admin = admin.map_err(|e| format!("cannot bind the admin listener: {e}"))?;
    let app = app.map_err(|e| format!("gateway start: {e}"))?;
    let gateway_addr = main.local_addr().map_err(|e| e.to_string())?;
    let admin_addr = admin.local_addr().map_err(|e| e.to_string())?;
    let revocations = app.revocations.clone();
    let gateway = app.gateway.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = server_rt.spawn(app.run(main, Some(admin), async move {
        let _ = stopped.await;
    }));

    let result = (|| {
        if let Some(setup) = scenario.setup {
            let ctx = SetupCtx {
                env,
                admin: admin_addr,
                revocations: revocations.clone(),
            };
            client_rt
                .block_on(setup(ctx))
                .map_err(|e| format!("setup: {e}"))?;
        }
        let target = spec.target(gateway_addr, scenario.expect)?;
        Ok(client_rt.block_on(loadgen::run(Arc::new(target), plan)))
    })();
    let extra = Extra {
        cache_hits: Some(gateway.current().cache_hits()),
        rss_before,
        rss_after: resident_bytes(),
    };

    let _ = stop.send(());
    server_rt
        .block_on(serving)
        .map_err(|e| format!("gateway task: {e}"))?;
    result.map(|m| (m, extra))
}

/// What a row learns besides its load figures.
#[derive(Debug, Default, Clone, Copy)]
struct Extra {
    /// Verified-token cache hits during the row (setup, warm-up, window).
    cache_hits: Option<u64>,
    /// This process's resident bytes before the gateway was built, and
    /// after the run (the row's tokens are built before either).
    rss_before: Option<u64>,
    rss_after: Option<u64>,
}

/// `VmRSS` of this process, in bytes (Linux; `None` elsewhere).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn print_report(opts: &Options, rows: &[Row]) {
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(8).max(8);
    println!();
    println!(
        "{:<width$}  {:>10}  {:>8}  {:>8}  {:>8}  {:>8}  {:>10}  {:>11}",
        "scenario", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "errors", "cache hits", "RSS MB"
    );
    for row in rows {
        match &row.result {
            RowResult::Measured(m, extra) => println!(
                "{:<width$}  {:>10.0}  {:>8.3}  {:>8.3}  {:>8.3}  {:>8}  {:>10}  {:>11}",
                row.name,
                m.rps(),
                m.quantile_ms(0.5),
                m.quantile_ms(0.99),
                m.quantile_ms(0.999),
                m.error_count(),
                extra
                    .cache_hits
                    .map_or_else(|| "-".to_string(), |h| h.to_string()),
                match (extra.rss_before, extra.rss_after) {
                    (Some(b), Some(a)) => format!("{}->{}", b >> 20, a >> 20),
                    _ => "-".to_string(),
                }
            ),
            RowResult::Skipped(why) => println!("{:<width$}  skipped: {why}", row.name),
            RowResult::Failed(why) => println!("{:<width$}  FAILED: {why}", row.name),
        }
    }
    for row in rows {
        if let RowResult::Measured(m, _) = &row.result {
            if m.error_count() > 0 {
                let kinds: Vec<String> = m
                    .errors
                    .iter()
                    .map(|(kind, n)| format!("{kind} x{n}"))
                    .collect();
                println!(
                    "  errors in {} (expected status {}): {}",
                    row.name,
                    row.expect,
                    kinds.join(", ")
                );
            }
        }
    }
    println!();
    for row in rows {
        if let RowResult::Measured(m, extra) = &row.result {
            let json = serde_json::json!({
                "scenario": row.name,
                "rps": round(m.rps(), 1),
                "p50_ms": round(m.quantile_ms(0.5), 3),
                "p99_ms": round(m.quantile_ms(0.99), 3),
                "p999_ms": round(m.quantile_ms(0.999), 3),
                "max_ms": round(m.max_ms(), 3),
                "mean_ms": round(m.mean_ms(), 3),
                "requests": m.requests(),
                "errors": m.error_count(),
                "expected_status": row.expect,
                "connections": opts.connections,
                "duration_s": m.window.as_secs_f64(),
                "warmup_s": opts.warmup.as_secs_f64(),
                "server_threads": if row.target == "in-process" { Some(opts.server_threads) } else { None },
                "client_threads": opts.client_threads,
                "target": row.target,
                "cache_hits": extra.cache_hits,
                "rss_before_mb": extra.rss_before.map(|b| round(b as f64 / 1048576.0, 1)),
                "rss_after_mb": extra.rss_after.map(|b| round(b as f64 / 1048576.0, 1)),
            });
            println!("{JSON_PREFIX}{json}");
        }
    }
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}
