//! Arguments of `sst-bench state-size` (`--rounds N`, `--scan-states N`, `--backend B`) and of
//! the hidden child command it re-executes itself with, one per measurement.

use anyhow::{bail, Context};

use super::db::Backend;

/// Default rounds (every figure is the median over them).
pub(crate) const DEFAULT_ROUNDS: usize = 3;
/// Default number of ~1 KB states the full-scan query reads.
pub(crate) const DEFAULT_SCAN_STATES: usize = 100_000;
/// The scan's states are written in chunks of this many (so `--scan-states` is a multiple).
pub(crate) const SCAN_CHUNK: usize = 1000;

/// Usage line of the subcommand.
pub(crate) const USAGE: &str =
    "sst-bench state-size [--rounds N] [--scan-states N] [--backend sqlite|postgres|all]";

/// The hidden subcommand a measurement runs in (a fresh process each, so that each peak
/// memory figure is its own).
pub(crate) const CHILD_COMMAND: &str = "state-size-child";

/// Validated options of one benchmark run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Options {
    /// Rounds; every figure is the median over them.
    pub(crate) rounds: usize,
    /// States the full-scan query reads (a multiple of [`SCAN_CHUNK`]).
    pub(crate) scan_states: usize,
    /// Backends measured, in table order.
    pub(crate) backends: Vec<Backend>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rounds: DEFAULT_ROUNDS,
            scan_states: DEFAULT_SCAN_STATES,
            backends: Backend::ALL.to_vec(),
        }
    }
}

/// Reads the value after `flag` as a count.
fn count<I, S>(flag: &str, args: &mut I) -> anyhow::Result<usize>
where
    I: Iterator<Item = S>,
    S: AsRef<str>,
{
    let value = args
        .next()
        .with_context(|| format!("{flag} needs a value"))?;
    let value = value.as_ref();
    value
        .parse()
        .with_context(|| format!("{flag}: `{value}` is not a count"))
}

impl Options {
    /// Parses the words after `state-size`.
    ///
    /// # Errors
    /// An unknown word or backend, a missing or non-numeric value, zero rounds, or a scan
    /// size that is not a positive multiple of [`SCAN_CHUNK`].
    pub(crate) fn parse<I, S>(args: I) -> anyhow::Result<Options>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut options = Options::default();
        let mut args = args.into_iter();
        while let Some(a) = args.next() {
            match a.as_ref() {
                "--rounds" => options.rounds = count("--rounds", &mut args)?,
                "--scan-states" => options.scan_states = count("--scan-states", &mut args)?,
                "--backend" => {
                    let b = args.next().context("--backend needs a value")?;
                    options.backends = match b.as_ref() {
                        "all" => Backend::ALL.to_vec(),
                        name => vec![Backend::parse(name)?],
                    };
                }
                other => bail!("unknown argument `{other}`\nusage: {USAGE}"),
            }
        }
        if options.rounds == 0 {
            bail!("--rounds must be at least 1");
        }
        if options.scan_states == 0 || options.scan_states % SCAN_CHUNK != 0 {
            bail!(
                "--scan-states must be a positive multiple of {SCAN_CHUNK} (got {})",
                options.scan_states
            );
        }
        Ok(options)
    }
}

/// What an update measurement is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    /// CPU and wall time, bytes written, growth: many updates per sample, the process's
    /// allocator as it comes.
    Cost,
    /// Peak memory: one update per sample, in a process whose allocator hands freed large
    /// blocks back to the system ([`MEMORY_PASS_ENV`]), so that resident memory follows what
    /// is live instead of what the allocator kept from earlier work.
    Memory,
}

impl Pass {
    /// Its name in the child's arguments and results.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Pass::Cost => "cost",
            Pass::Memory => "memory",
        }
    }

    /// Parses [`Pass::name`].
    pub(crate) fn parse(name: &str) -> Option<Pass> {
        [Pass::Cost, Pass::Memory]
            .into_iter()
            .find(|p| p.name() == name)
    }
}

/// The environment of a [`Pass::Memory`] child: glibc serves every block from 128 KiB up with
/// its own mapping, returned at `free` (a fixed threshold instead of one that grows with the
/// largest block freed so far), and trims the heap top above 128 KiB.
pub(crate) const MEMORY_PASS_ENV: [(&str, &str); 2] = [
    ("MALLOC_MMAP_THRESHOLD_", "131072"),
    ("MALLOC_TRIM_THRESHOLD_", "131072"),
];

/// One measurement, run in a child process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChildTask {
    /// The updates of one state of `bytes` bytes (SST and plain), `rounds` times.
    Updates {
        /// Backend measured.
        backend: Backend,
        /// Target size of the state's JSON.
        bytes: usize,
        /// Rounds.
        rounds: usize,
        /// What for.
        pass: Pass,
    },
    /// The full-scan query over `states` states (SST and plain), `rounds` times.
    Scan {
        /// Backend measured.
        backend: Backend,
        /// States scanned.
        states: usize,
        /// Rounds.
        rounds: usize,
    },
}

impl ChildTask {
    /// The words after [`CHILD_COMMAND`] that [`ChildTask::parse`] reads back.
    pub(crate) fn to_args(self) -> Vec<String> {
        let (what, backend, n, rounds) = match self {
            ChildTask::Updates {
                backend,
                bytes,
                rounds,
                pass: Pass::Cost,
            } => ("updates", backend, bytes, rounds),
            ChildTask::Updates {
                backend,
                bytes,
                rounds,
                pass: Pass::Memory,
            } => ("updates-memory", backend, bytes, rounds),
            ChildTask::Scan {
                backend,
                states,
                rounds,
            } => ("scan", backend, states, rounds),
        };
        [what, backend.name(), &n.to_string(), &rounds.to_string()]
            .map(str::to_owned)
            .to_vec()
    }

    /// Parses the words after [`CHILD_COMMAND`]:
    /// `updates|updates-memory|scan <backend> <n> <rounds>`.
    ///
    /// # Errors
    /// Anything else.
    pub(crate) fn parse<I, S>(args: I) -> anyhow::Result<ChildTask>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let words: Vec<String> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let [what, backend, n, rounds] = words.as_slice() else {
            bail!("{CHILD_COMMAND} takes `updates|scan <backend> <n> <rounds>`, got {words:?}");
        };
        let backend = Backend::parse(backend)?;
        let n: usize = n.parse().with_context(|| format!("`{n}` is not a count"))?;
        let rounds: usize = rounds
            .parse()
            .with_context(|| format!("`{rounds}` is not a count"))?;
        match what.as_str() {
            "updates" => Ok(ChildTask::Updates {
                backend,
                bytes: n,
                rounds,
                pass: Pass::Cost,
            }),
            "updates-memory" => Ok(ChildTask::Updates {
                backend,
                bytes: n,
                rounds,
                pass: Pass::Memory,
            }),
            "scan" => Ok(ChildTask::Scan {
                backend,
                states: n,
                rounds,
            }),
            other => bail!("unknown {CHILD_COMMAND} task `{other}`"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_arguments_give_the_defaults() -> anyhow::Result<()> {
        let none: [&str; 0] = [];
        assert_eq!(Options::parse(none)?, Options::default());
        assert_eq!(Options::default().rounds, 3);
        assert_eq!(Options::default().scan_states, 100_000);
        assert_eq!(
            Options::default().backends,
            [Backend::Sqlite, Backend::Postgres]
        );
        Ok(())
    }

    #[test]
    fn options_are_read_in_any_order() -> anyhow::Result<()> {
        let o = Options::parse([
            "--scan-states",
            "2000",
            "--backend",
            "postgres",
            "--rounds",
            "1",
        ])?;
        assert_eq!(
            o,
            Options {
                rounds: 1,
                scan_states: 2000,
                backends: vec![Backend::Postgres]
            }
        );
        assert_eq!(
            Options::parse(["--backend", "all"])?.backends,
            Backend::ALL.to_vec()
        );
        Ok(())
    }

    #[test]
    fn bad_arguments_are_refused_with_what_is_wrong() {
        let err = |args: &[&str]| match Options::parse(args) {
            Ok(o) => panic!("{args:?} accepted as {o:?}"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err(&["--events", "5"]).contains("unknown argument `--events`"));
        assert!(err(&["--rounds"]).contains("--rounds needs a value"));
        assert!(err(&["--rounds", "0"]).contains("at least 1"));
        assert!(err(&["--scan-states", "1500"]).contains("multiple of 1000"));
        assert!(err(&["--scan-states", "0"]).contains("multiple of 1000"));
        assert!(err(&["--backend", "oracle"]).contains("oracle"));
    }

    #[test]
    fn a_child_task_reads_back_what_it_writes() -> anyhow::Result<()> {
        for task in [
            ChildTask::Updates {
                backend: Backend::Postgres,
                bytes: 5_000_000,
                rounds: 3,
                pass: Pass::Cost,
            },
            ChildTask::Updates {
                backend: Backend::Sqlite,
                bytes: 1_000,
                rounds: 2,
                pass: Pass::Memory,
            },
            ChildTask::Scan {
                backend: Backend::Sqlite,
                states: 2000,
                rounds: 1,
            },
        ] {
            assert_eq!(ChildTask::parse(task.to_args())?, task);
        }
        assert!(ChildTask::parse(["updates", "sqlite", "10"]).is_err());
        assert!(ChildTask::parse(["delete", "sqlite", "10", "1"]).is_err());
        for pass in [Pass::Cost, Pass::Memory] {
            assert_eq!(Pass::parse(pass.name()), Some(pass));
        }
        assert_eq!(Pass::parse("speed"), None);
        Ok(())
    }
}
