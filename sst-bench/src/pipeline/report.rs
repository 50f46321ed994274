//! The table `sst-bench pipeline` prints. Its layout is quoted by the README: keep the
//! columns and labels stable.

use std::fmt::Write as _;

use super::stats::{median, median_of_present, ratio, Sample};

/// Which other rows a row is divided by in the ratio columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ratios {
    /// No ratio columns (the bounds (a) and (b) themselves).
    None,
    /// This row over (a) all cores and over the (b) row at `plain`.
    Against {
        /// Index of the (b) row of the same `synchronous` setting.
        plain: usize,
    },
}

/// One line of the table: its samples, one per round.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// What was measured.
    pub(crate) label: String,
    /// `FULL`, `NORMAL` or `-`.
    pub(crate) sync: &'static str,
    /// One sample per round (empty when the row could not be measured).
    pub(crate) samples: Vec<Sample>,
    /// Ratio columns.
    pub(crate) ratios: Ratios,
}

impl Row {
    /// A row without samples yet.
    pub(crate) fn new(label: impl Into<String>, sync: &'static str, ratios: Ratios) -> Row {
        Row {
            label: label.into(),
            sync,
            samples: Vec::new(),
            ratios,
        }
    }

    fn rates(&self) -> Vec<f64> {
        self.samples.iter().map(Sample::rate).collect()
    }
}

/// Per-round ratios of `row` over `bound` (same round), as far as both have samples.
fn same_run_ratios(row: &Row, bound: &Row) -> Vec<f64> {
    row.samples
        .iter()
        .zip(&bound.samples)
        .filter_map(|(r, b)| ratio(r.rate(), b.rate()))
        .collect()
}

/// A figure or `n/a`.
fn figure(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.decimals$}"))
}

/// The column header of [`render`].
pub(crate) const HEADER: [&str; 7] = [
    "measurement",
    "sync",
    "events/s",
    "cores",
    "/(a)",
    "/(b)",
    "events/s per round",
];

/// Renders `rows`: median events/s, median cores used, and the medians of the same-round
/// ratios to `rows[all_cores]` (the (a) row of every core) and to the row's (b) row.
pub(crate) fn render(rows: &[Row], all_cores: usize) -> String {
    let width = rows
        .iter()
        .map(|r| r.label.chars().count())
        .chain([HEADER[0].len()])
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    let line = |out: &mut String, cells: [&str; 7]| {
        let [label, sync, rate, cores, a, b, rounds] = cells;
        let pad = width.saturating_sub(label.chars().count());
        let _ = writeln!(
            out,
            "{label}{:pad$} | {sync:<6} | {rate:>9} | {cores:>5} | {a:>6} | {b:>6} | {rounds}",
            ""
        );
    };
    line(&mut out, HEADER);
    let _ = writeln!(out, "{}", "-".repeat(width + 62));
    for row in rows {
        let (vs_a, vs_b) = match row.ratios {
            Ratios::None => (String::new(), String::new()),
            Ratios::Against { plain } => {
                let of = |bound: Option<&Row>| {
                    figure(bound.and_then(|b| median(&same_run_ratios(row, b))), 3)
                };
                (of(rows.get(all_cores)), of(rows.get(plain)))
            }
        };
        let rounds = row
            .rates()
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(" ");
        let cores: Vec<Option<f64>> = row.samples.iter().map(Sample::cores).collect();
        line(
            &mut out,
            [
                &row.label,
                row.sync,
                &figure(median(&row.rates()), 0),
                &figure(median_of_present(&cores), 2),
                &vs_a,
                &vs_b,
                if rounds.is_empty() { "n/a" } else { &rounds },
            ],
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn sample(events: usize, millis: u64, cpu_millis: u64) -> Sample {
        Sample {
            events,
            wall: Duration::from_millis(millis),
            cpu: Some(Duration::from_millis(cpu_millis)),
        }
    }

    fn table() -> Vec<Row> {
        let mut a = Row::new("(a) verify", "-", Ratios::None);
        a.samples = vec![
            sample(1000, 100, 200),
            sample(1000, 50, 100),
            sample(1000, 200, 400),
        ];
        let mut b = Row::new("(b) plain", "FULL", Ratios::None);
        b.samples = vec![
            sample(100, 100, 50),
            sample(100, 100, 50),
            sample(100, 50, 50),
        ];
        let mut c = Row::new("(c) home", "FULL", Ratios::Against { plain: 1 });
        c.samples = vec![
            sample(100, 100, 150),
            sample(100, 200, 150),
            sample(100, 100, 170),
        ];
        vec![a, b, c]
    }

    #[test]
    fn ratios_are_medians_of_same_round_ratios_not_ratios_of_medians() {
        let rows = table();
        // Rounds: (c) 1000, 500, 1000; (a) 10000, 20000, 5000 → 0.1, 0.025, 0.2 → 0.1.
        assert_eq!(median(&same_run_ratios(&rows[2], &rows[0])), Some(0.1));
        // (b) 1000, 1000, 2000 → 1.0, 0.5, 0.5 → 0.5 (the ratio of medians would be 1.0).
        assert_eq!(median(&same_run_ratios(&rows[2], &rows[1])), Some(0.5));
    }

    #[test]
    fn the_table_shows_medians_cores_ratios_and_every_round() {
        let out = render(&table(), 0);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 5, "{out}");
        let cells = |l: &str| {
            l.split('|')
                .map(str::trim)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(cells(lines[0]), HEADER);
        assert_eq!(
            cells(lines[2]),
            [
                "(a) verify",
                "-",
                "10000",
                "2.00",
                "",
                "",
                "10000 20000 5000"
            ]
        );
        // Cores: 1.5, 0.75, 1.7 → 1.5.
        assert_eq!(
            cells(lines[4]),
            [
                "(c) home",
                "FULL",
                "1000",
                "1.50",
                "0.100",
                "0.500",
                "1000 500 1000"
            ]
        );
    }

    #[test]
    fn a_row_without_samples_says_not_available() {
        let mut rows = table();
        rows[2].samples.clear();
        let out = render(&rows, 0);
        let last = out.lines().last().unwrap_or_default();
        assert_eq!(last.matches("n/a").count(), 5, "{last}");
    }
}
