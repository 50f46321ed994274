//! Arguments of `sst-bench pipeline`: `--events N` and `--rounds N`.

use anyhow::{bail, Context};

/// Default events per node run: one full run (3 rounds) stays under 3 minutes on 2 cores.
pub(crate) const DEFAULT_EVENTS: usize = 8000;
/// Default rounds (the table shows the median of the rounds).
pub(crate) const DEFAULT_ROUNDS: usize = 3;

/// Usage line of the subcommand.
pub(crate) const USAGE: &str = "sst-bench pipeline [--events N] [--rounds N]";

/// Validated options of one benchmark run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Options {
    /// Change events each node run sequences (and each plain insert writes).
    pub(crate) events: usize,
    /// Rounds; every figure is the median over them.
    pub(crate) rounds: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            events: DEFAULT_EVENTS,
            rounds: DEFAULT_ROUNDS,
        }
    }
}

impl Options {
    /// Parses the words after `pipeline`.
    ///
    /// # Errors
    /// An unknown word, a missing or non-numeric value, fewer than 100 events or zero rounds.
    pub(crate) fn parse<I, S>(args: I) -> anyhow::Result<Options>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut options = Options::default();
        let mut args = args.into_iter();
        while let Some(a) = args.next() {
            let a = a.as_ref();
            let slot = match a {
                "--events" => &mut options.events,
                "--rounds" => &mut options.rounds,
                other => bail!("unknown argument `{other}`\nusage: {USAGE}"),
            };
            let value = args.next().with_context(|| format!("{a} needs a value"))?;
            let value = value.as_ref();
            *slot = value
                .parse()
                .with_context(|| format!("{a}: `{value}` is not a count"))?;
        }
        if options.events < 100 {
            bail!("--events must be at least 100 (got {})", options.events);
        }
        if options.rounds == 0 {
            bail!("--rounds must be at least 1");
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_arguments_give_the_defaults() -> anyhow::Result<()> {
        let none: [&str; 0] = [];
        assert_eq!(
            Options::parse(none)?,
            Options {
                events: DEFAULT_EVENTS,
                rounds: DEFAULT_ROUNDS
            }
        );
        Ok(())
    }

    #[test]
    fn events_and_rounds_are_read_in_any_order() -> anyhow::Result<()> {
        let o = Options::parse(["--rounds", "5", "--events", "1000"])?;
        assert_eq!(
            o,
            Options {
                events: 1000,
                rounds: 5
            }
        );
        Ok(())
    }

    #[test]
    fn bad_arguments_are_refused_with_what_is_wrong() {
        let err = |args: &[&str]| match Options::parse(args) {
            Ok(o) => panic!("{args:?} accepted as {o:?}"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err(&["--count", "5"]).contains("unknown argument `--count`"));
        assert!(err(&["--events"]).contains("--events needs a value"));
        assert!(err(&["--rounds", "three"]).contains("`three` is not a count"));
        assert!(err(&["--events", "-5"]).contains("is not a count"));
        assert!(err(&["--events", "99"]).contains("at least 100"));
        assert!(err(&["--rounds", "0"]).contains("at least 1"));
    }
}
