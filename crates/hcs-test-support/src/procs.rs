//! Finding processes on this host from outside, by their command line.

/// Process ids of every process on this host whose command line (arguments joined by
/// spaces) contains each of `needles`: how tests and benchmarks find the QEMU
/// (`["qemu-system", id]`), vsock backend or hcsd worker of a VM from outside.
pub fn pids_with_cmdline(needles: &[&str]) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let line = String::from_utf8_lossy(&raw).replace('\0', " ");
        if needles.iter().all(|needle| line.contains(needle)) {
            pids.push(pid);
        }
    }
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_this_process_by_its_program() {
        let me = std::process::id();
        let program = std::env::args().next().expect("argv[0]");
        assert!(pids_with_cmdline(&[&program]).contains(&me));
        assert!(pids_with_cmdline(&[]).contains(&me));
    }
}
