//! What the measurements hand back (one JSON line per child process, read by the parent) and
//! the report `sst-bench state-size` prints: every line starts with `state-size`, so that
//! `grep ^state-size` keeps the figures; keep the labels stable, the README quotes them.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};

use super::args::Pass;
use super::db::{Backend, Side};
use super::payload::{size_label, Section};
use crate::pipeline::stats::{median, ratio};

/// The marker before the JSON line a child prints for the parent.
pub(crate) const RESULT_MARKER: &str = "state-size-result ";

/// One timed sample: `ops` one-field updates in a row, and what they cost.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    /// Updates done.
    pub(crate) ops: usize,
    /// Wall time of the updates.
    pub(crate) wall: Duration,
    /// CPU time of this process (user + system, all threads), `None` where unreadable.
    pub(crate) cpu: Option<Duration>,
    /// CPU time of the database server's processes that served the run (PostgreSQL on this
    /// machine; zero for SQLite, which runs inside the process).
    pub(crate) server_cpu: Duration,
    /// Bytes written (SQLite: to storage by this process, checkpoint included; PostgreSQL:
    /// WAL bytes of the server), `None` where unreadable.
    pub(crate) written: Option<u64>,
    /// Growth of the side's database (bytes; negative when it shrank).
    pub(crate) growth: i64,
    /// Peak resident memory of this process during the updates, `None` where unreadable.
    pub(crate) peak: Option<u64>,
    /// Resident memory just before the updates, `None` where unreadable.
    pub(crate) resident_before: Option<u64>,
}

fn per_op(total: f64, ops: usize) -> f64 {
    total / ops.max(1) as f64
}

impl Sample {
    /// CPU milliseconds per update, this process and the server's together.
    pub(crate) fn cpu_ms(&self) -> Option<f64> {
        self.cpu
            .map(|c| per_op((c + self.server_cpu).as_secs_f64() * 1e3, self.ops))
    }

    /// Wall milliseconds per update.
    pub(crate) fn wall_ms(&self) -> f64 {
        per_op(self.wall.as_secs_f64() * 1e3, self.ops)
    }

    /// KiB written per update.
    pub(crate) fn written_kib(&self) -> Option<f64> {
        self.written.map(|w| per_op(w as f64 / 1024.0, self.ops))
    }

    /// KiB of database growth per update.
    pub(crate) fn growth_kib(&self) -> f64 {
        per_op(self.growth as f64 / 1024.0, self.ops)
    }

    /// How far the peak rose above the memory resident before the updates (bytes).
    pub(crate) fn peak_rise(&self) -> Option<u64> {
        Some(self.peak?.saturating_sub(self.resident_before?))
    }

    fn to_json(&self) -> Value {
        json!({
            "ops": self.ops,
            "wall_ns": u64::try_from(self.wall.as_nanos()).unwrap_or(u64::MAX),
            "cpu_ns": self.cpu.map(|c| u64::try_from(c.as_nanos()).unwrap_or(u64::MAX)),
            "server_cpu_ns": u64::try_from(self.server_cpu.as_nanos()).unwrap_or(u64::MAX),
            "written": self.written,
            "growth": self.growth,
            "peak": self.peak,
            "resident_before": self.resident_before,
        })
    }

    fn from_json(v: &Value) -> anyhow::Result<Sample> {
        let u = |k: &str| {
            v[k].as_u64()
                .with_context(|| format!("sample without `{k}`"))
        };
        Ok(Sample {
            ops: usize::try_from(u("ops")?)?,
            wall: Duration::from_nanos(u("wall_ns")?),
            cpu: v["cpu_ns"].as_u64().map(Duration::from_nanos),
            server_cpu: Duration::from_nanos(u("server_cpu_ns")?),
            written: v["written"].as_u64(),
            growth: v["growth"].as_i64().context("sample without `growth`")?,
            peak: v["peak"].as_u64(),
            resident_before: v["resident_before"].as_u64(),
        })
    }
}

/// One sample of the update measurement: which round, section and side.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    /// Round, from 0.
    pub(crate) round: usize,
    /// Section the updates touched.
    pub(crate) section: Section,
    /// SST or plain.
    pub(crate) side: Side,
    /// What they cost.
    pub(crate) sample: Sample,
}

/// What one update measurement (one backend, one state size) found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Updates {
    /// Backend.
    pub(crate) backend: Backend,
    /// Bytes of the state's JSON.
    pub(crate) state_bytes: usize,
    /// What the measurement was for.
    pub(crate) pass: Pass,
    /// Every sample.
    pub(crate) records: Vec<Record>,
}

/// What one scan measurement (one backend) found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scan {
    /// Backend.
    pub(crate) backend: Backend,
    /// States (rows) scanned on each side.
    pub(crate) states: usize,
    /// Bytes of one state's JSON.
    pub(crate) doc_bytes: usize,
    /// Milliseconds of the SST scan, one per round.
    pub(crate) sst_ms: Vec<f64>,
    /// Milliseconds of the plain scan, one per round.
    pub(crate) plain_ms: Vec<f64>,
    /// Size of the current-state table with its indexes, where known.
    pub(crate) sst_table: Option<u64>,
    /// Size of the plain table with its indexes, where known.
    pub(crate) plain_table: Option<u64>,
    /// The queries timed (SST, plain).
    pub(crate) queries: (String, String),
}

/// What a child process hands back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// An update measurement.
    Updates(Updates),
    /// A scan measurement.
    Scan(Scan),
}

impl Outcome {
    /// The JSON line a child prints (after [`RESULT_MARKER`]).
    pub(crate) fn to_json(&self) -> Value {
        match self {
            Outcome::Updates(u) => json!({
                "kind": "updates",
                "backend": u.backend.name(),
                "state_bytes": u.state_bytes,
                "pass": u.pass.name(),
                "records": u.records.iter().map(|r| json!({
                    "round": r.round,
                    "section": r.section.label(),
                    "side": r.side.label(),
                    "sample": r.sample.to_json(),
                })).collect::<Vec<_>>(),
            }),
            Outcome::Scan(s) => json!({
                "kind": "scan",
                "backend": s.backend.name(),
                "states": s.states,
                "doc_bytes": s.doc_bytes,
                "sst_ms": s.sst_ms,
                "plain_ms": s.plain_ms,
                "sst_table": s.sst_table,
                "plain_table": s.plain_table,
                "queries": [s.queries.0, s.queries.1],
            }),
        }
    }

    /// Reads back [`Outcome::to_json`].
    ///
    /// # Errors
    /// A missing or mistyped field.
    pub(crate) fn from_json(v: &Value) -> anyhow::Result<Outcome> {
        let backend = Backend::parse(v["backend"].as_str().context("no backend")?)?;
        let count = |k: &str| -> anyhow::Result<usize> {
            Ok(usize::try_from(
                v[k].as_u64().with_context(|| format!("no `{k}`"))?,
            )?)
        };
        match v["kind"].as_str() {
            Some("updates") => {
                let records = v["records"]
                    .as_array()
                    .context("no records")?
                    .iter()
                    .map(|r| {
                        Ok(Record {
                            round: usize::try_from(r["round"].as_u64().context("no round")?)?,
                            section: r["section"]
                                .as_str()
                                .and_then(Section::parse)
                                .context("no section")?,
                            side: r["side"]
                                .as_str()
                                .and_then(Side::parse)
                                .context("no side")?,
                            sample: Sample::from_json(&r["sample"])?,
                        })
                    })
                    .collect::<anyhow::Result<_>>()?;
                Ok(Outcome::Updates(Updates {
                    backend,
                    state_bytes: count("state_bytes")?,
                    pass: v["pass"]
                        .as_str()
                        .and_then(Pass::parse)
                        .context("no pass")?,
                    records,
                }))
            }
            Some("scan") => {
                let floats = |k: &str| -> anyhow::Result<Vec<f64>> {
                    v[k].as_array()
                        .with_context(|| format!("no `{k}`"))?
                        .iter()
                        .map(|x| x.as_f64().with_context(|| format!("`{k}` not numbers")))
                        .collect()
                };
                let query = |i: usize| v["queries"][i].as_str().unwrap_or_default().to_owned();
                Ok(Outcome::Scan(Scan {
                    backend,
                    states: count("states")?,
                    doc_bytes: count("doc_bytes")?,
                    sst_ms: floats("sst_ms")?,
                    plain_ms: floats("plain_ms")?,
                    sst_table: v["sst_table"].as_u64(),
                    plain_table: v["plain_table"].as_u64(),
                    queries: (query(0), query(1)),
                }))
            }
            other => anyhow::bail!("unknown result kind {other:?}"),
        }
    }
}

/// A figure or `n/a`.
fn figure(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.decimals$}"))
}

/// Medians of the SST and plain figures and of their same-round ratios.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Compared {
    /// Median of the SST figures.
    pub(crate) sst: Option<f64>,
    /// Median of the plain figures.
    pub(crate) plain: Option<f64>,
    /// Median of the same-round ratios SST / plain.
    pub(crate) ratio: Option<f64>,
}

/// Compares same-round pairs `(sst, plain)` of one figure. The ratio is `None` unless every
/// round has one (a plain figure of zero in some round would otherwise leave the median of
/// the other rounds, chosen by chance).
pub(crate) fn compare(pairs: &[(Option<f64>, Option<f64>)]) -> Compared {
    let sst: Vec<f64> = pairs.iter().filter_map(|p| p.0).collect();
    let plain: Vec<f64> = pairs.iter().filter_map(|p| p.1).collect();
    let ratios: Option<Vec<f64>> = pairs.iter().map(|p| ratio(p.0?, p.1?)).collect();
    Compared {
        sst: median(&sst),
        plain: median(&plain),
        ratio: ratios.as_deref().and_then(median),
    }
}

/// The same-round `(sst, plain)` pairs of `figure` for one section.
fn pairs(
    u: &Updates,
    section: Section,
    figure: impl Fn(&Sample) -> Option<f64>,
) -> Vec<(Option<f64>, Option<f64>)> {
    let rounds = u.records.iter().map(|r| r.round + 1).max().unwrap_or(0);
    (0..rounds)
        .map(|round| {
            let of = |side| {
                u.records
                    .iter()
                    .find(|r| r.round == round && r.section == section && r.side == side)
                    .and_then(|r| figure(&r.sample))
            };
            (of(Side::Sst), of(Side::Plain))
        })
        .collect()
}

/// Column header of the update table.
pub(crate) const UPDATE_HEADER: &str = "state-size update   backend  state   section |  sst cpu ms | plain cpu ms |   cpu x |  sst wall ms | plain wall ms |  wall x | sst written KiB | plain written KiB | written x | sst growth KiB | plain growth KiB | growth x | updates sst/plain";

/// One line of the update table.
pub(crate) fn update_line(u: &Updates, section: Section) -> String {
    let cpu = compare(&pairs(u, section, Sample::cpu_ms));
    let wall = compare(&pairs(u, section, |s| Some(s.wall_ms())));
    let written = compare(&pairs(u, section, Sample::written_kib));
    let growth = compare(&pairs(u, section, |s| Some(s.growth_kib())));
    let ops = |side| {
        u.records
            .iter()
            .find(|r| r.section == section && r.side == side)
            .map_or(0, |r| r.sample.ops)
    };
    format!(
        "state-size update   {:<8} {:<7} {:<7} | {:>11} | {:>12} | {:>7} | {:>12} | {:>13} | {:>7} | {:>15} | {:>17} | {:>9} | {:>14} | {:>16} | {:>8} | {}/{}",
        u.backend.name(),
        size_label(u.state_bytes),
        section.label(),
        figure(cpu.sst, 3),
        figure(cpu.plain, 3),
        figure(cpu.ratio, 1),
        figure(wall.sst, 3),
        figure(wall.plain, 3),
        figure(wall.ratio, 1),
        figure(written.sst, 2),
        figure(written.plain, 2),
        figure(written.ratio, 1),
        figure(growth.sst, 2),
        figure(growth.plain, 2),
        figure(growth.ratio, 1),
        ops(Side::Sst),
        ops(Side::Plain),
    )
}

const MIB: f64 = 1024.0 * 1024.0;

/// The memory line of one update measurement and section: the process's peak resident
/// memory during an SST update (median over rounds), in MiB and over the state size, and how
/// far it rose above the memory resident before it; the same rise for the plain `UPDATE`.
pub(crate) fn memory_line(u: &Updates, section: Section) -> String {
    let state = u.state_bytes.max(1) as f64;
    let med = |side: Side, f: &dyn Fn(&Sample) -> Option<u64>| {
        let v: Vec<f64> = u
            .records
            .iter()
            .filter(|r| r.section == section && r.side == side)
            .filter_map(|r| f(&r.sample).map(|b| b as f64))
            .collect();
        median(&v)
    };
    let peak = med(Side::Sst, &|s| s.peak);
    let rise = med(Side::Sst, &|s| s.peak_rise());
    let plain_rise = med(Side::Plain, &|s| s.peak_rise());
    format!(
        "state-size memory   {:<8} {:<7} {:<7} | sst peak {} MiB = {}x state | sst peak rise {} MiB = {}x state | plain peak rise {} MiB = {}x state",
        u.backend.name(),
        size_label(u.state_bytes),
        section.label(),
        figure(peak.map(|p| p / MIB), 1),
        figure(peak.map(|p| p / state), 1),
        figure(rise.map(|p| p / MIB), 1),
        figure(rise.map(|p| p / state), 1),
        figure(plain_rise.map(|p| p / MIB), 1),
        figure(plain_rise.map(|p| p / state), 1),
    )
}

/// The scan line of one backend.
pub(crate) fn scan_line(s: &Scan) -> String {
    let pairs: Vec<_> = s
        .sst_ms
        .iter()
        .zip(&s.plain_ms)
        .map(|(a, b)| (Some(*a), Some(*b)))
        .collect();
    let time = compare(&pairs);
    let size = |b: Option<u64>| b.map(|b| b as f64 / MIB);
    let size_ratio = match (s.sst_table, s.plain_table) {
        (Some(a), Some(b)) => ratio(a as f64, b as f64),
        _ => None,
    };
    format!(
        "state-size scan     {:<8} {} states of {} bytes | sst {} ms | plain {} ms | scan x {} | table sst {} MiB | plain {} MiB | size x {}",
        s.backend.name(),
        s.states,
        s.doc_bytes,
        figure(time.sst, 1),
        figure(time.plain, 1),
        figure(time.ratio, 3),
        figure(size(s.sst_table), 1),
        figure(size(s.plain_table), 1),
        figure(size_ratio, 3),
    )
}

/// The whole report of `outcomes`: the update lines (of the [`Pass::Cost`] measurements),
/// the memory lines (of the [`Pass::Memory`] ones), the scan lines.
pub(crate) fn render(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    let (mut costs, mut memories, mut scans) = (Vec::new(), Vec::new(), Vec::new());
    for o in outcomes {
        match o {
            Outcome::Updates(u) if u.pass == Pass::Cost => costs.push(u),
            Outcome::Updates(u) => memories.push(u),
            Outcome::Scan(s) => scans.push(s),
        }
    }
    if !costs.is_empty() {
        let _ = writeln!(out, "{UPDATE_HEADER}");
    }
    for u in &costs {
        for section in Section::BOTH {
            let _ = writeln!(out, "{}", update_line(u, section));
        }
    }
    for u in &memories {
        for section in Section::BOTH {
            let _ = writeln!(out, "{}", memory_line(u, section));
        }
    }
    for s in &scans {
        let _ = writeln!(out, "{}", scan_line(s));
    }
    for s in &scans {
        let _ = writeln!(
            out,
            "state-size scan-sql {:<8} sst: {} | plain: {}",
            s.backend.name(),
            s.queries.0,
            s.queries.1
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ops: usize, cpu_ms: u64, written: u64, growth: i64) -> Sample {
        Sample {
            ops,
            wall: Duration::from_millis(2 * cpu_ms),
            cpu: Some(Duration::from_millis(cpu_ms)),
            server_cpu: Duration::from_millis(cpu_ms / 10),
            written: Some(written),
            growth,
            peak: Some(300 << 20),
            resident_before: Some(100 << 20),
        }
    }

    fn updates() -> Updates {
        let mut records = Vec::new();
        for round in 0..3 {
            let k = round as u64 + 1;
            for section in Section::BOTH {
                records.push(Record {
                    round,
                    section,
                    side: Side::Sst,
                    sample: sample(2, 100 * k, 10240 * k, 20480),
                });
                records.push(Record {
                    round,
                    section,
                    side: Side::Plain,
                    sample: sample(10, 50 * k, 1024 * k, 0),
                });
            }
        }
        Updates {
            backend: Backend::Sqlite,
            state_bytes: 100_000,
            pass: Pass::Cost,
            records,
        }
    }

    #[test]
    fn figures_are_per_update_and_include_the_server_cpu() {
        let s = sample(4, 100, 8192, -4096);
        assert_eq!(s.cpu_ms(), Some(27.5));
        assert_eq!(s.wall_ms(), 50.0);
        assert_eq!(s.written_kib(), Some(2.0));
        assert_eq!(s.growth_kib(), -1.0);
        assert_eq!(s.peak_rise(), Some(200 << 20));
        assert_eq!(
            Sample {
                cpu: None,
                ..s.clone()
            }
            .cpu_ms(),
            None
        );
        assert_eq!(Sample { peak: None, ..s }.peak_rise(), None);
    }

    #[test]
    fn ratios_are_medians_of_same_round_ratios() {
        let c = compare(&[
            (Some(10.0), Some(1.0)),
            (Some(30.0), Some(2.0)),
            (Some(20.0), Some(4.0)),
        ]);
        assert_eq!(c.sst, Some(20.0));
        assert_eq!(c.plain, Some(2.0));
        // Ratios 10, 15, 5: median 10 (not 20 / 2).
        assert_eq!(c.ratio, Some(10.0));
        let none = compare(&[(Some(1.0), Some(0.0)), (None, Some(1.0))]);
        assert_eq!(none.ratio, None);
        assert_eq!(none.sst, Some(1.0));
        // One round without a ratio: no ratio at all.
        let partial = compare(&[
            (Some(10.0), Some(1.0)),
            (Some(30.0), Some(0.0)),
            (Some(20.0), Some(4.0)),
        ]);
        assert_eq!(partial.ratio, None);
    }

    #[test]
    fn the_update_line_shows_per_update_medians_and_ratios() {
        let line = update_line(&updates(), Section::Large);
        assert!(
            line.starts_with("state-size update   sqlite   100 KB  large"),
            "{line}"
        );
        // SST: 110, 220, 330 ms over 2 updates → median 110 ms; plain 55/110/165 over 10
        // → 11 ms; ratio 10.
        assert!(
            line.contains("|     110.000 |       11.000 |    10.0 |"),
            "{line}"
        );
        // Growth: plain 0 → no ratio.
        assert!(
            line.contains("|          10.00 |             0.00 |      n/a |"),
            "{line}"
        );
        assert!(line.ends_with("| 2/10"), "{line}");
        assert_eq!(
            UPDATE_HEADER.split('|').count(),
            line.split('|').count(),
            "{UPDATE_HEADER}\n{line}"
        );
    }

    #[test]
    fn the_memory_line_relates_the_peak_to_the_state_size() {
        let line = memory_line(&updates(), Section::Small);
        assert!(
            line.contains("sst peak 300.0 MiB = 3145.7x state | sst peak rise 200.0 MiB"),
            "{line}"
        );
    }

    #[test]
    fn outcomes_read_back_what_children_print() -> anyhow::Result<()> {
        let u = Outcome::Updates(updates());
        assert_eq!(Outcome::from_json(&u.to_json())?, u);
        let m = Outcome::Updates(Updates {
            pass: Pass::Memory,
            ..updates()
        });
        assert_eq!(Outcome::from_json(&m.to_json())?, m);
        let s = Outcome::Scan(Scan {
            backend: Backend::Postgres,
            states: 2000,
            doc_bytes: 1024,
            sst_ms: vec![12.5, 13.0],
            plain_ms: vec![10.0, 10.0],
            sst_table: Some(3 << 20),
            plain_table: None,
            queries: ("SELECT 1".into(), "SELECT 2".into()),
        });
        assert_eq!(Outcome::from_json(&s.to_json())?, s);
        let report = render(&[u, m, s]);
        assert!(
            report.lines().all(|l| l.starts_with("state-size")),
            "{report}"
        );
        // Update lines from the cost pass, memory lines from the memory pass only.
        assert_eq!(report.matches("state-size update   sqlite").count(), 2);
        assert_eq!(report.matches("state-size memory   sqlite").count(), 2);
        assert!(report.contains("scan x 1.275"), "{report}");
        assert!(report.contains("size x n/a"), "{report}");
        assert!(Outcome::from_json(&json!({"kind": "x", "backend": "sqlite"})).is_err());
        Ok(())
    }
}
