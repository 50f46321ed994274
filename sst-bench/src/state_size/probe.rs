//! What the benchmark reads from `/proc` (Linux): bytes this process wrote to storage, its
//! peak resident memory (and resetting that peak), and the CPU time of another process (a
//! PostgreSQL backend serving this benchmark). Each reader returns `None` where the file is
//! missing or does not parse; the pure parsers are tested on sample text.

use std::time::Duration;

/// `write_bytes` of `/proc/self/io`: bytes this process caused to be sent to storage
/// (page-cache pages it dirtied), whichever thread wrote them.
pub(crate) fn written_bytes() -> Option<u64> {
    parse_io_field(
        &std::fs::read_to_string("/proc/self/io").ok()?,
        "write_bytes",
    )
}

/// The value of `field` in `/proc/<pid>/io` text (`name: value` lines).
fn parse_io_field(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        (name.trim() == field).then(|| value.trim().parse().ok())?
    })
}

/// `VmHWM` of `/proc/self/status`: the peak resident set size since the process started or
/// since the last [`reset_peak_memory`], in bytes.
pub(crate) fn peak_memory() -> Option<u64> {
    parse_status_kb(&std::fs::read_to_string("/proc/self/status").ok()?, "VmHWM")
}

/// `VmRSS` of `/proc/self/status`: the resident set size now, in bytes.
pub(crate) fn resident_memory() -> Option<u64> {
    parse_status_kb(&std::fs::read_to_string("/proc/self/status").ok()?, "VmRSS")
}

/// The value of a `Name:   1234 kB` line of `/proc/<pid>/status`, in bytes.
fn parse_status_kb(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        if name.trim() != field {
            return None;
        }
        let kb: u64 = value.trim().strip_suffix("kB")?.trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// Resets this process's peak resident set size to its current size (writing `5` to
/// `/proc/self/clear_refs`, Linux 4.0+), so that the next [`peak_memory`] is the peak of
/// what ran in between. Returns whether the reset took.
pub(crate) fn reset_peak_memory() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The CPU time process `pid` (a single-threaded PostgreSQL backend) has run, from the first
/// field of `/proc/<pid>/schedstat` (nanoseconds).
pub(crate) fn process_run_time(pid: u32) -> Option<Duration> {
    parse_schedstat(&std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?)
}

/// The first field of a `/proc/<pid>/schedstat` line (time on the CPU, nanoseconds).
fn parse_schedstat(line: &str) -> Option<Duration> {
    Some(Duration::from_nanos(
        line.split_whitespace().next()?.parse().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_fields_are_read_by_name() {
        let text = "rchar: 6976\nwchar: 12\nsyscr: 10\nsyscw: 1\nread_bytes: 0\n\
                    write_bytes: 40960\ncancelled_write_bytes: 4096\n";
        assert_eq!(parse_io_field(text, "write_bytes"), Some(40960));
        assert_eq!(parse_io_field(text, "wchar"), Some(12));
        assert_eq!(parse_io_field(text, "nothing"), None);
        assert_eq!(parse_io_field("write_bytes: x", "write_bytes"), None);
    }

    #[test]
    fn status_sizes_are_read_in_bytes() {
        let text = "Name:\tsst-bench\nVmPeak:\t  900 kB\nVmHWM:\t    2200 kB\nVmRSS:\t 2100 kB\n";
        assert_eq!(parse_status_kb(text, "VmHWM"), Some(2200 * 1024));
        assert_eq!(parse_status_kb(text, "VmRSS"), Some(2100 * 1024));
        assert_eq!(parse_status_kb(text, "VmSwap"), None);
        assert_eq!(parse_status_kb("VmHWM: 12 MB", "VmHWM"), None);
    }

    #[test]
    fn schedstat_gives_the_run_time_in_nanoseconds() {
        assert_eq!(
            parse_schedstat("265561593 84163362 63\n"),
            Some(Duration::from_nanos(265_561_593))
        );
        assert_eq!(parse_schedstat(""), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reports_its_writes_and_peak_memory() -> anyhow::Result<()> {
        let before = written_bytes().unwrap_or_default();
        let dir = std::env::temp_dir().join(format!("sst-probe-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("f");
        {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&file)?;
            f.write_all(&vec![7u8; 1 << 20])?;
            f.sync_all()?;
        }
        std::fs::remove_dir_all(&dir)?;
        let after = written_bytes();
        assert!(after.is_some(), "/proc/self/io readable");
        // tmpfs does not count block writes; a disk-backed temp dir counts the 1 MiB.
        assert!(after.unwrap_or_default() >= before);

        assert!(resident_memory().is_some_and(|r| r > 0));
        assert!(reset_peak_memory(), "/proc/self/clear_refs writable");
        let low = peak_memory().unwrap_or_default();
        let big = std::hint::black_box(vec![1u8; 64 << 20]);
        let high = peak_memory().unwrap_or_default();
        assert_eq!(big.iter().map(|b| u64::from(*b)).sum::<u64>(), 64 << 20);
        assert!(high >= low + (60 << 20), "{low} -> {high}");
        drop(big);
        assert!(reset_peak_memory());
        assert!(peak_memory().unwrap_or(u64::MAX) < high);
        Ok(())
    }
}
