//! Options of the load bench: environment variables, overridden by flags
//! given after `--` (`cargo bench --bench load -- --connections 8`).

use hyper::header::{HeaderName, HeaderValue};
use revgate::config::parse_duration;
use std::time::Duration;

/// Clients held open at once when nothing else is asked for (wrk's `-c64`
/// in the published comparison).
pub const DEFAULT_CONNECTIONS: usize = 64;
/// Measured time per scenario.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// Unmeasured time per scenario first: connections open, pools fill, caches warm.
pub const DEFAULT_WARMUP: Duration = Duration::from_secs(2);

/// Settings for a quick run under `cargo test --benches` (cargo runs a
/// `harness = false` bench without `--bench` there): prove that every row
/// works, measure nothing.
const SMOKE_CONNECTIONS: usize = 2;
const SMOKE_DURATION: Duration = Duration::from_millis(300);
const SMOKE_WARMUP: Duration = Duration::from_millis(100);

/// Everything the bench can be told.
#[derive(Debug, Clone)]
pub struct Options {
    /// Concurrent keep-alive connections, one task each.
    pub connections: usize,
    /// Measured time per scenario.
    pub duration: Duration,
    /// Unmeasured warm-up per scenario.
    pub warmup: Duration,
    /// Case-insensitive substrings; a scenario runs if its name contains one.
    pub filter: Vec<String>,
    /// Worker threads of the runtime serving the gateway and the upstream.
    pub server_threads: usize,
    /// Worker threads of the load generator's runtime.
    pub client_threads: usize,
    /// Drive this external server instead of the in-process scenarios.
    pub target: Option<String>,
    /// Status the external target must answer.
    pub expect: u16,
    /// Extra request headers for the external target.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Also run rows whose library support has not landed yet.
    pub include_pending: bool,
    /// Only list the scenarios.
    pub list: bool,
    /// With `target` and `pid`: open this many idle keep-alive connections
    /// and report the server's resident bytes per connection.
    pub idle: Option<usize>,
    /// The process whose `VmRSS` `idle` measures.
    pub pid: Option<u32>,
    /// Run by `cargo test`: tiny durations, failing on errors.
    pub smoke: bool,
}

/// Usage text for `--help`.
pub const USAGE: &str = "\
revgate load bench: cargo bench --bench load [-- OPTIONS] [FILTER...]

  -c, --connections N      keep-alive connections             REVGATE_BENCH_CONNECTIONS (64)
  -d, --duration D         measured time per scenario         REVGATE_BENCH_DURATION (10s)
  -w, --warmup D           unmeasured warm-up per scenario    REVGATE_BENCH_WARMUP (2s)
  -f, --filter S[,S...]    run scenarios whose name contains  REVGATE_BENCH_FILTER (all)
                           one of S (case-insensitive); bare
                           FILTER arguments add to it
      --server-threads N   gateway+upstream runtime threads   REVGATE_BENCH_SERVER_THREADS (cores/2)
      --client-threads N   load generator runtime threads     REVGATE_BENCH_CLIENT_THREADS (cores-server)
      --target URL         drive an external server on        REVGATE_BENCH_TARGET
                           127.0.0.1 (e.g. nginx or a pinned
                           revgate) instead of the scenarios
      --expect STATUS      status the target must answer      REVGATE_BENCH_EXPECT (200)
  -H, --header 'N: V'      extra header for --target          REVGATE_BENCH_HEADERS ('|'-separated)
      --include-pending    also run rows whose library        REVGATE_BENCH_INCLUDE_PENDING=1
                           support has not landed yet
      --idle N --pid PID   with --target: open N idle keep-alive connections
                           (one request each) and report PID's resident
                           bytes per connection (VmRSS before and after)
      --list               list the scenarios and exit
  -h, --help               this text

D is a duration such as 500ms, 10s, 1m. Flags override environment variables.
Without --bench (that is, under `cargo test --benches`) the defaults shrink to
a smoke run of 2 connections for 300ms, and any error fails the run.";

impl Options {
    /// Reads the environment, then the command line (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let args: Vec<String> = args.into_iter().collect();
        // cargo passes `--bench` to harness = false benches under `cargo bench`
        // and nothing under `cargo test`.
        let smoke = !args.iter().any(|a| a == "--bench");
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut opts = Options {
            connections: if smoke {
                SMOKE_CONNECTIONS
            } else {
                DEFAULT_CONNECTIONS
            },
            duration: if smoke {
                SMOKE_DURATION
            } else {
                DEFAULT_DURATION
            },
            warmup: if smoke { SMOKE_WARMUP } else { DEFAULT_WARMUP },
            filter: Vec::new(),
            server_threads: 0,
            client_threads: 0,
            target: None,
            expect: 200,
            headers: Vec::new(),
            include_pending: false,
            list: false,
            idle: None,
            pid: None,
            smoke,
        };
        opts.apply_env()?;
        opts.apply_args(&args)?;
        if opts.server_threads == 0 {
            opts.server_threads = (cores / 2).max(1);
        }
        if opts.client_threads == 0 {
            opts.client_threads = cores.saturating_sub(opts.server_threads).max(1);
        }
        if opts.connections == 0 {
            return Err("connections: must be at least 1".into());
        }
        if opts.idle.is_some() && (opts.target.is_none() || opts.pid.is_none()) {
            return Err("--idle needs --target URL and --pid PID".into());
        }
        if opts.duration.is_zero() {
            return Err("duration: must be more than 0".into());
        }
        Ok(opts)
    }

    fn apply_env(&mut self) -> Result<(), String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if let Some(v) = var("REVGATE_BENCH_CONNECTIONS") {
            self.connections = number("REVGATE_BENCH_CONNECTIONS", &v)?;
        }
        if let Some(v) = var("REVGATE_BENCH_DURATION") {
            self.duration = duration("REVGATE_BENCH_DURATION", &v)?;
        }
        if let Some(v) = var("REVGATE_BENCH_WARMUP") {
            self.warmup = duration("REVGATE_BENCH_WARMUP", &v)?;
        }
        if let Some(v) = var("REVGATE_BENCH_FILTER") {
            self.filter.extend(split_filter(&v));
        }
        if let Some(v) = var("REVGATE_BENCH_SERVER_THREADS") {
            self.server_threads = number("REVGATE_BENCH_SERVER_THREADS", &v)?;
        }
        if let Some(v) = var("REVGATE_BENCH_CLIENT_THREADS") {
            self.client_threads = number("REVGATE_BENCH_CLIENT_THREADS", &v)?;
        }
        if let Some(v) = var("REVGATE_BENCH_TARGET") {
            self.target = Some(v);
        }
        if let Some(v) = var("REVGATE_BENCH_EXPECT") {
            self.expect = number("REVGATE_BENCH_EXPECT", &v)?;
        }
        if let Some(v) = var("REVGATE_BENCH_HEADERS") {
            for h in v.split('|').filter(|h| !h.trim().is_empty()) {
                self.headers.push(header("REVGATE_BENCH_HEADERS", h)?);
            }
        }
        if let Some(v) = var("REVGATE_BENCH_INCLUDE_PENDING") {
            self.include_pending = !matches!(v.as_str(), "0" | "false" | "no");
        }
        Ok(())
    }

    fn apply_args(&mut self, args: &[String]) -> Result<(), String> {
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            // `--name=value` or `--name value`.
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
                _ => (arg.as_str(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| it.next().cloned())
                    .ok_or_else(|| format!("{flag}: needs a value (see --help)"))
            };
            match flag {
                "--bench" => {}
                "-c" | "--connections" => self.connections = number(flag, &value()?)?,
                "-d" | "--duration" => self.duration = duration(flag, &value()?)?,
                "-w" | "--warmup" => self.warmup = duration(flag, &value()?)?,
                "-f" | "--filter" => self.filter.extend(split_filter(&value()?)),
                "--server-threads" => self.server_threads = number(flag, &value()?)?,
                "--client-threads" => self.client_threads = number(flag, &value()?)?,
                "--target" => self.target = Some(value()?),
                "--expect" => self.expect = number(flag, &value()?)?,
                "-H" | "--header" => self.headers.push(header(flag, &value()?)?),
                "--include-pending" => self.include_pending = true,
                "--list" => self.list = true,
                "--idle" => self.idle = Some(number(flag, &value()?)?),
                "--pid" => self.pid = Some(number(flag, &value()?)?),
                "-h" | "--help" => return Err(String::new()),
                other if other.starts_with('-') => {
                    return Err(format!("unknown option {other:?} (see --help)"))
                }
                filter => self.filter.extend(split_filter(filter)),
            }
        }
        Ok(())
    }

    /// Whether the filter selects a scenario of this name.
    pub fn selects(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        self.filter.is_empty() || self.filter.iter().any(|f| name.contains(f.as_str()))
    }
}

fn split_filter(v: &str) -> impl Iterator<Item = String> + '_ {
    v.split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
}

fn number<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("{key}: {v:?} is not a number"))
}

fn duration(key: &str, v: &str) -> Result<Duration, String> {
    parse_duration(v).map_err(|e| format!("{key}: {e}"))
}

fn header(key: &str, v: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = v
        .split_once(':')
        .ok_or_else(|| format!("{key}: {v:?} is not a header; write 'Name: value'"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("{key}: {name:?} is not a header name"))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("{key}: the value of {name} is not a valid header value"))?;
    Ok((name, value))
}
