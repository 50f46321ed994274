//! The arithmetic of the pipeline benchmark: rates, medians and same-run ratios, and the
//! process CPU clock that gives "cores used" (process CPU time / wall time).

use std::time::{Duration, Instant};

/// One timed measurement: how many events in how long, and how much CPU the whole process
/// used meanwhile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    /// Events (or signatures, or rows) done.
    pub(crate) events: usize,
    /// Wall time.
    pub(crate) wall: Duration,
    /// Process CPU time (user + system, all threads), `None` where it cannot be read.
    pub(crate) cpu: Option<Duration>,
}

impl Sample {
    /// Events per second.
    pub(crate) fn rate(&self) -> f64 {
        per_second(self.events, self.wall)
    }

    /// Process CPU time divided by wall time: how many cores the process kept busy.
    pub(crate) fn cores(&self) -> Option<f64> {
        self.cpu
            .map(|c| c.as_secs_f64() / self.wall.as_secs_f64().max(1e-9))
    }
}

/// `n` per second over `d` (a zero duration counts as one nanosecond).
pub(crate) fn per_second(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

/// The median of `values` (the mean of the two middle values for an even count); `None` for
/// no values. NaN sorts last and so never hides a real figure in a set of three.
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// The median of the optional values that are present (`None` when none is).
pub(crate) fn median_of_present(values: &[Option<f64>]) -> Option<f64> {
    median(&values.iter().flatten().copied().collect::<Vec<_>>())
}

/// `numerator / denominator`, `None` when the denominator is not a positive figure.
pub(crate) fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    (denominator > 0.0 && denominator.is_finite()).then(|| numerator / denominator)
}

/// The user + system CPU time of this process (all its threads, finished ones included),
/// from the process CPU clock (`CLOCK_PROCESS_CPUTIME_ID`, nanosecond resolution: a sample
/// of a few updates is measured as precisely as a long one); `None` if the clock cannot be
/// read.
pub(crate) fn process_cpu_time() -> Option<Duration> {
    cpu_time::ProcessTime::try_now()
        .ok()
        .map(|t| t.as_duration())
}

/// The 1-minute load average of the machine (`/proc/loadavg`): beyond what the benchmark
/// itself runs, other processes competed with it for the cores. `None` off Linux.
pub(crate) fn load_average() -> Option<f64> {
    parse_loadavg(&std::fs::read_to_string("/proc/loadavg").ok()?)
}

/// The first field of a `/proc/loadavg` line.
fn parse_loadavg(line: &str) -> Option<f64> {
    line.split_whitespace().next()?.parse().ok()
}

/// A running measurement: wall clock and process CPU clock started together.
pub(crate) struct Stopwatch {
    wall: Instant,
    cpu: Option<Duration>,
}

impl Stopwatch {
    /// Starts both clocks.
    pub(crate) fn start() -> Self {
        Stopwatch {
            cpu: process_cpu_time(),
            wall: Instant::now(),
        }
    }

    /// The sample of `events` done since [`Stopwatch::start`].
    pub(crate) fn stop(&self, events: usize) -> Sample {
        let wall = self.wall.elapsed();
        let cpu = match (self.cpu, process_cpu_time()) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        Sample { events, wall, cpu }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_an_odd_count_is_the_middle_value_whatever_the_order() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[10.0]), Some(10.0));
        assert_eq!(median(&[5.0, 100.0, 4.0, 6.0, 1.0]), Some(5.0));
    }

    #[test]
    fn median_of_an_even_count_is_the_mean_of_the_two_middle_values() {
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn median_of_nothing_is_none_and_missing_values_are_skipped() {
        assert_eq!(median(&[]), None);
        assert_eq!(median_of_present(&[None, None]), None);
        assert_eq!(median_of_present(&[Some(1.0), None, Some(3.0)]), Some(2.0));
    }

    #[test]
    fn ratio_divides_and_refuses_a_zero_or_non_finite_denominator() {
        assert_eq!(ratio(1.0, 4.0), Some(0.25));
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(1.0, -2.0), None);
        assert_eq!(ratio(1.0, f64::INFINITY), None);
    }

    #[test]
    fn a_sample_gives_events_per_second_and_cores_used() {
        let s = Sample {
            events: 3000,
            wall: Duration::from_millis(1500),
            cpu: Some(Duration::from_millis(2400)),
        };
        assert!((s.rate() - 2000.0).abs() < 1e-9);
        assert!((s.cores().unwrap_or(0.0) - 1.6).abs() < 1e-9);
        assert_eq!(Sample { cpu: None, ..s }.cores(), None);
        assert!(per_second(5, Duration::ZERO) > 1e9);
    }

    #[test]
    fn the_load_average_is_the_first_field_of_proc_loadavg() {
        assert_eq!(parse_loadavg("5.55 4.82 3.16 3/412 9999\n"), Some(5.55));
        assert_eq!(parse_loadavg(""), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_stopwatch_sees_cpu_spent_by_this_process() {
        let w = Stopwatch::start();
        let start = process_cpu_time();
        assert!(start.is_some(), "the process CPU clock is readable");
        // Spin until the process clock has moved by 50 ms (a loaded machine may preempt us,
        // so wall time alone proves nothing), giving up after 10 s of wall time.
        let t = Instant::now();
        let mut x = 0u64;
        while process_cpu_time()
            .unwrap_or_default()
            .saturating_sub(start.unwrap_or_default())
            < Duration::from_millis(50)
            && t.elapsed() < Duration::from_secs(10)
        {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
        let s = w.stop(1);
        let cpu = s.cpu.unwrap_or_default();
        assert!(cpu >= Duration::from_millis(50), "{cpu:?}");
        assert!(s.wall <= t.elapsed() + Duration::from_secs(1));
    }
}
