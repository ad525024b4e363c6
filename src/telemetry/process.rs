//! Process metrics in the names Prometheus client libraries use
//! (`process_resident_memory_bytes`, `process_open_fds`,
//! `process_cpu_seconds_total`, `process_start_time_seconds`), read from
//! `/proc/self` at scrape time. Elsewhere than Linux only the start time is
//! exported.

use std::fmt::Write as _;

/// `/proc/PID/stat` counts CPU time in clock ticks of `USER_HZ`, which the
/// kernel fixes at 100 for user space on every architecture Linux ships.
const USER_HZ: f64 = 100.0;

/// Appends the process metrics to a Prometheus text exposition.
pub(crate) fn render(out: &mut String, started: f64) {
    let mut gauge = |name: &str, help: &str, kind: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    gauge(
        "process_start_time_seconds",
        "Start time of the process since the UNIX epoch, in seconds",
        "gauge",
        started,
    );
    if let Some(rss) = resident_bytes() {
        gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            "gauge",
            rss as f64,
        );
    }
    if let Some(fds) = open_fds() {
        gauge(
            "process_open_fds",
            "Number of open file descriptors",
            "gauge",
            fds as f64,
        );
    }
    if let Some(cpu) = cpu_seconds() {
        gauge(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent, in seconds",
            "counter",
            cpu,
        );
    }
}

/// `VmRSS` from `/proc/self/status` (reported in kB).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn open_fds() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

/// `utime + stime` from `/proc/self/stat`.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_cpu_ticks(&stat).map(|t| t as f64 / USER_HZ)
}

/// Fields 14 and 15 of `/proc/PID/stat`, counted after the command name,
/// which is in parentheses and may itself hold spaces or parentheses.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace();
    // After `comm`: state is field 3, so utime (14) is the 12th from here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_ticks_past_a_command_with_spaces() {
        let stat =
            "1234 (rev gate (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 1 2 3";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn parses_vm_rss_in_kilobytes() {
        assert_eq!(
            parse_vm_rss("Name:\trevgate\nVmRSS:\t  2048 kB\n"),
            Some(2 * 1024 * 1024)
        );
        assert_eq!(parse_vm_rss("Name:\trevgate\n"), None);
    }

    #[test]
    fn renders_the_process_metrics_of_this_process() {
        let mut out = String::new();
        render(&mut out, 1.0);
        assert!(out.contains("process_start_time_seconds 1"), "{out}");
        if cfg!(target_os = "linux") {
            assert!(out.contains("process_resident_memory_bytes "), "{out}");
            assert!(out.contains("process_open_fds "), "{out}");
            assert!(out.contains("process_cpu_seconds_total "), "{out}");
        }
    }
}
