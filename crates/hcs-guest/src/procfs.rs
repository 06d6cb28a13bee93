//! `ListProcesses`: the guest's processes as `/proc` shows them.

use hcs_guest_protocol::ProcessEntry;
use std::path::Path;

/// Every process in `/proc` (kernel threads included, as `ps` shows them). A process that
/// ends while being read is left out.
pub fn list() -> Vec<ProcessEntry> {
    list_in(Path::new("/proc"))
}

fn list_in(proc: &Path) -> Vec<ProcessEntry> {
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|t| *t > 0)
        .unwrap_or(100) as u64;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .filter(|p| *p > 0)
        .unwrap_or(4096) as u64;
    let Ok(dir) = std::fs::read_dir(proc) else {
        return Vec::new();
    };
    let mut out: Vec<ProcessEntry> = dir
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let name = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            parse_stat(pid, name.trim_end(), &stat, ticks, page)
        })
        .collect();
    out.sort_by_key(|p| p.pid);
    out
}

/// Reads utime, stime (fields 14, 15, in clock ticks) and rss (field 24, in pages) from a
/// `/proc/<pid>/stat` line; the name in parentheses may hold spaces or `)`.
fn parse_stat(pid: u32, name: &str, stat: &str, ticks: u64, page: u64) -> Option<ProcessEntry> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let rss: i64 = fields.get(21)?.parse().ok()?;
    let per_tick = 10_000_000 / ticks;
    Some(ProcessEntry {
        pid,
        name: name.to_string(),
        user_time_100ns: utime * per_tick,
        kernel_time_100ns: stime * per_tick,
        resident_bytes: rss.max(0) as u64 * page,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_even_with_odd_names() {
        let line = "42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5 1000 25 18446744073709551615";
        let entry = parse_stat(42, "a) b", line, 100, 4096).expect("parses");
        assert_eq!(entry.user_time_100ns, 7 * 100_000);
        assert_eq!(entry.kernel_time_100ns, 3 * 100_000);
        assert_eq!(entry.resident_bytes, 25 * 4096);
    }

    #[test]
    fn this_process_is_listed() {
        let me = std::process::id();
        assert!(list().iter().any(|p| p.pid == me));
    }
}
