//! The states the benchmark updates: a real-estate deal whose `common` section is large (a
//! time series of integer readings sized so that the whole state JSON reaches a target size)
//! next to two small sections (`price`, `inspection`), all portable JSON; and the one-field
//! updates, in a small section and inside the large one.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// The state sizes measured (bytes of the state's JSON), in table order.
pub(crate) const SIZES: [usize; 3] = [1_000, 100_000, 5_000_000];

/// Which section a one-field update touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    /// `price.amount`, in a section of a few dozen bytes.
    Small,
    /// `common.revision`, inside the section that holds almost all of the state.
    Large,
}

impl Section {
    /// Both, in table order.
    pub(crate) const BOTH: [Section; 2] = [Section::Small, Section::Large];

    /// Label in the table.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Section::Small => "small",
            Section::Large => "large",
        }
    }

    /// The section's name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Section::Small => "price",
            Section::Large => "common",
        }
    }

    /// The updated field inside the section.
    pub(crate) fn field(self) -> &'static str {
        match self {
            Section::Small => "amount",
            Section::Large => "revision",
        }
    }

    /// Parses [`Section::label`].
    pub(crate) fn parse(label: &str) -> Option<Section> {
        Section::BOTH.into_iter().find(|s| s.label() == label)
    }
}

/// `common.revision` of a new state; updates count up from it.
const FIRST_REVISION: i64 = 1_000_000;
/// `price.amount` of a new state; updates count up from it.
const FIRST_AMOUNT: i64 = 250_000;

/// A human label of a size in bytes, rounded (`1 KB`, `100 KB`, `5 MB`; decimal units).
pub(crate) fn size_label(bytes: usize) -> String {
    if bytes >= 999_500 {
        format!("{} MB", (bytes + 500_000) / 1_000_000)
    } else {
        format!("{} KB", (bytes + 500) / 1_000)
    }
}

/// The readings of the large section: deterministic 6- and 7-digit integers (a linear
/// congruential sequence, so the JSON does not compress to nothing).
fn reading(i: u64) -> u64 {
    100_000
        + i.wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407)
            % 9_900_000
}

/// Decimal digits of `n`.
fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// The sections of one state, kept current as updates are applied.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Payload {
    sections: BTreeMap<String, Value>,
}

impl Payload {
    /// A state whose JSON (`{"common":…,"inspection":…,"price":…}`, compact) is `target`
    /// bytes long, or the smallest such state when `target` is below it.
    pub(crate) fn new(target: usize) -> Payload {
        let mut sections = BTreeMap::from([
            (
                "common".to_owned(),
                json!({"address": "12 Harbour Lane, Lyon", "revision": FIRST_REVISION, "unit": "Bq/m3",
                       "readings": []}),
            ),
            (
                "price".to_owned(),
                json!({"amount": FIRST_AMOUNT, "currency": "EUR"}),
            ),
            (
                "inspection".to_owned(),
                json!({"radon": 1.5, "passed": true, "inspector": "Inès Ørsted"}),
            ),
        ]);
        let base = serde_json::to_string(&sections).map_or(0, |s| s.len());
        let mut readings = Vec::new();
        let mut len = base;
        let mut i = 0u64;
        while len < target {
            let r = reading(i);
            let comma = usize::from(!readings.is_empty());
            if len + comma + digits(r) > target {
                break;
            }
            len += comma + digits(r);
            readings.push(Value::from(r));
            i += 1;
        }
        if let Some(common) = sections.get_mut("common") {
            common["readings"] = Value::Array(readings);
        }
        Payload { sections }
    }

    /// Every section's value, as a create carries them.
    pub(crate) fn sections(&self) -> &BTreeMap<String, Value> {
        &self.sections
    }

    /// The state's JSON as the `data` column holds it (an object of the sections).
    pub(crate) fn data(&self) -> Value {
        Value::Object(
            self.sections
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Map<_, _>>(),
        )
    }

    /// Length of the compact JSON of [`Payload::data`].
    pub(crate) fn data_len(&self) -> usize {
        serde_json::to_string(&self.sections).map_or(0, |s| s.len())
    }

    /// Sets the field of `section` to `value`.
    pub(crate) fn set(&mut self, section: Section, value: i64) {
        let v = self
            .sections
            .entry(section.name().to_owned())
            .or_insert_with(|| json!({}));
        v[section.field()] = Value::from(value);
    }

    /// The current value of `section` (what a change event of it carries).
    pub(crate) fn section_value(&self, section: Section) -> Value {
        self.sections
            .get(section.name())
            .cloned()
            .unwrap_or_else(|| json!({}))
    }

    /// The value of `section`'s field at update number `k` (from 0): every update changes
    /// it, and keeps its length (6 and 7 digits for the first 750,000 updates), so that the
    /// plain `UPDATE` rewrites a row of the same size, which engines can do in place.
    pub(crate) fn value_for(section: Section, k: usize) -> i64 {
        let k = i64::try_from(k).unwrap_or(0);
        match section {
            Section::Small => FIRST_AMOUNT + 1 + k,
            Section::Large => FIRST_REVISION + 1 + k,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_reach_their_target_size_within_a_few_bytes() {
        for target in SIZES {
            let p = Payload::new(target);
            let len = p.data_len();
            assert!(len <= target && len + 8 >= target, "{target}: {len}");
            assert_eq!(
                serde_json::to_string(&p.data()).map(|s| s.len()).ok(),
                Some(len)
            );
        }
        // Below the fixed part: the smallest state, with no readings.
        let tiny = Payload::new(10);
        assert_eq!(tiny.sections()["common"]["readings"], json!([]));
    }

    #[test]
    fn the_large_section_holds_almost_all_of_a_big_state() {
        let p = Payload::new(100_000);
        let common = serde_json::to_string(&p.sections()["common"]).map_or(0, |s| s.len());
        let price = serde_json::to_string(&p.sections()["price"]).map_or(0, |s| s.len());
        assert!(common > 99_000, "{common}");
        assert!(price < 50, "{price}");
    }

    #[test]
    fn readings_are_portable_integers_of_six_or_seven_digits() {
        for i in [0, 1, 2, 1000, u64::MAX / 3] {
            let r = reading(i);
            assert!((100_000..10_000_000).contains(&r), "{r}");
            assert!(r < 1 << 53);
        }
        assert_ne!(reading(1), reading(2));
        assert_eq!(digits(0), 1);
        assert_eq!(digits(9), 1);
        assert_eq!(digits(100_000), 6);
        assert_eq!(digits(9_999_999), 7);
    }

    #[test]
    fn an_update_changes_one_field_and_returns_its_section() {
        let mut p = Payload::new(1_000);
        let before = p.clone();
        p.set(Section::Small, Payload::value_for(Section::Small, 0));
        assert_eq!(
            p.section_value(Section::Small),
            json!({"amount": 250_001, "currency": "EUR"})
        );
        p.set(Section::Large, Payload::value_for(Section::Large, 4));
        let v = p.section_value(Section::Large);
        assert_eq!(v["revision"], json!(1_000_005));
        // Updates keep the field's length.
        let width = |v: i64| v.to_string().len();
        for section in Section::BOTH {
            let first = width(Payload::value_for(section, 0));
            assert_eq!(width(Payload::value_for(section, 700_000)), first);
        }
        assert_eq!(
            width(FIRST_AMOUNT),
            width(Payload::value_for(Section::Small, 0))
        );
        assert_eq!(
            width(FIRST_REVISION),
            width(Payload::value_for(Section::Large, 0))
        );
        assert_eq!(v["readings"], before.sections()["common"]["readings"]);
        assert_eq!(p.sections()["inspection"], before.sections()["inspection"]);
        assert_eq!(p.data()["price"]["amount"], json!(250_001));
    }

    #[test]
    fn labels_name_sizes_and_sections() {
        assert_eq!(size_label(1_000), "1 KB");
        assert_eq!(size_label(100_000), "100 KB");
        assert_eq!(size_label(5_000_000), "5 MB");
        // Built states fall a few bytes short of their target.
        assert_eq!(size_label(998), "1 KB");
        assert_eq!(size_label(99_997), "100 KB");
        assert_eq!(size_label(4_999_998), "5 MB");
        for s in Section::BOTH {
            assert_eq!(Section::parse(s.label()), Some(s));
        }
        assert_eq!(Section::parse("medium"), None);
    }
}
