//! CPU time and resident memory of a process, from `/proc`.
//!
//! Read on the main thread only (it blocks on `std::fs`), never on a monoio worker.

use std::time::Duration;

/// Which process to read.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pid {
    /// This load generator (`/proc/self`).
    Me,
    /// Another process, e.g. the server.
    Other(u32),
}

impl Pid {
    fn path(self, file: &str) -> String {
        match self {
            Pid::Me => format!("/proc/self/{file}"),
            Pid::Other(pid) => format!("/proc/{pid}/{file}"),
        }
    }
}

/// CPU time a process (all its threads) has used so far.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuTime {
    pub(crate) user: Duration,
    pub(crate) system: Duration,
}

/// CPU time `pid` has used so far.
pub(crate) fn cpu_time(pid: Pid) -> Option<CpuTime> {
    let stat = std::fs::read_to_string(pid.path("stat")).ok()?;
    let (utime, stime) = parse_stat(&stat)?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = u64::try_from(ticks).ok().filter(|t| *t > 0)?;
    let time = |t: u64| {
        Duration::from_secs(t / ticks) + Duration::from_nanos(t % ticks * 1_000_000_000 / ticks)
    };
    Some(CpuTime {
        user: time(utime),
        system: time(stime),
    })
}

/// `utime` and `stime` (clock ticks) from a `/proc/PID/stat` line.
fn parse_stat(stat: &str) -> Option<(u64, u64)> {
    // The command name (field 2) is in parentheses and may contain spaces or parentheses;
    // the fields after the last ')' start at field 3 (state). utime is field 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime = fields.next()?.parse().ok()?;
    let stime = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// `VmRSS` in bytes.
pub(crate) fn rss(pid: Pid) -> Option<u64> {
    let status = std::fs::read_to_string(pid.path("status")).ok()?;
    parse_rss(&status)
}

fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "1234 (zero cast) (x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 4";
        assert_eq!(parse_stat(stat), Some((250, 75)));
        assert_eq!(
            parse_rss("Name:\tx\nVmRSS:\t   51200 kB\n"),
            Some(51200 * 1024)
        );
        assert!(cpu_time(Pid::Me).is_some());
        assert!(rss(Pid::Me).is_some_and(|r| r > 0));
    }
}
