//! Subscriptions: which notifications a sink (or an event-stream client) receives
//! ([`Filter`], by contract, method or business-event name, outcome and state-id prefix), and
//! where a sink sends each one ([`TopicTemplate`], e.g. `sst.{contract}.{name}.{outcome}`).
//! Both are validated once, when the configuration is read, with a typed error naming what is
//! wrong.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sst_core::OutcomeKind;

use crate::Notification;

/// A filter as configured: every list that is not empty must match (a notification passes a
/// list when it matches any entry of it); all lists empty = every notification.
///
/// ```toml
/// [sink.filter]
/// contracts = ["real-estate-deal"]        # contract names (without version)
/// names = ["create", "price_agreed"]      # method or business-event names
/// outcomes = ["applied"]                  # applied | rejected
/// state_prefixes = ["deal-"]              # state ids starting with one of these
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterSpec {
    /// Contract names (without version).
    pub contracts: Vec<String>,
    /// Method names (`create`, `change_sections`, a called method) or business-event names.
    pub names: Vec<String>,
    /// `applied` and/or `rejected`.
    pub outcomes: Vec<String>,
    /// State-id prefixes.
    pub state_prefixes: Vec<String>,
}

/// Why a filter or a topic template is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// An entry of a filter list is empty.
    #[error("filter `{field}`: entry {index} is empty")]
    EmptyEntry {
        /// The list (`contracts`, `names`, `outcomes`, `state_prefixes`).
        field: &'static str,
        /// Its position in the list.
        index: usize,
    },
    /// An outcome that is neither `applied` nor `rejected`.
    #[error("filter `outcomes`: `{value}` is neither `applied` nor `rejected`")]
    UnknownOutcome {
        /// What was written.
        value: String,
    },
    /// The topic template is empty.
    #[error("topic template is empty")]
    EmptyTemplate,
    /// A `{placeholder}` the template language does not know.
    #[error(
        "topic template `{template}`: unknown placeholder `{{{name}}}` (known: {{contract}}, \
         {{name}}, {{outcome}}, {{type}}, {{subject}}, {{node}})"
    )]
    UnknownPlaceholder {
        /// The template.
        template: String,
        /// The placeholder's name.
        name: String,
    },
    /// A `{` without its `}`, or a `}` without its `{`.
    #[error("topic template `{template}`: unbalanced brace at byte {at}")]
    UnbalancedBrace {
        /// The template.
        template: String,
        /// Where.
        at: usize,
    },
}

/// A validated filter (see [`FilterSpec`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    contracts: Vec<String>,
    names: Vec<String>,
    outcomes: Vec<OutcomeKind>,
    state_prefixes: Vec<String>,
}

impl Filter {
    /// The filter that lets every notification through.
    pub fn all() -> Self {
        Filter::default()
    }

    /// Validates a configured filter.
    ///
    /// # Errors
    /// [`FilterError::EmptyEntry`] for an empty string in a list;
    /// [`FilterError::UnknownOutcome`] for an outcome other than `applied`/`rejected`.
    pub fn new(spec: &FilterSpec) -> Result<Self, FilterError> {
        let check =
            |field: &'static str, list: &[String]| match list.iter().position(String::is_empty) {
                Some(index) => Err(FilterError::EmptyEntry { field, index }),
                None => Ok(list.to_vec()),
            };
        let outcomes = check("outcomes", &spec.outcomes)?
            .into_iter()
            .map(|o| match o.as_str() {
                "applied" => Ok(OutcomeKind::Applied),
                "rejected" => Ok(OutcomeKind::Rejected),
                _ => Err(FilterError::UnknownOutcome { value: o }),
            })
            .collect::<Result<_, _>>()?;
        Ok(Filter {
            contracts: check("contracts", &spec.contracts)?,
            names: check("names", &spec.names)?,
            outcomes,
            state_prefixes: check("state_prefixes", &spec.state_prefixes)?,
        })
    }

    /// Whether no list restricts anything.
    pub fn is_all(&self) -> bool {
        self.contracts.is_empty()
            && self.names.is_empty()
            && self.outcomes.is_empty()
            && self.state_prefixes.is_empty()
    }

    /// Whether `n` passes the filter.
    pub fn matches(&self, n: &Notification) -> bool {
        let any = |list: &[String], f: &dyn Fn(&str) -> bool| {
            list.is_empty() || list.iter().any(|x| f(x))
        };
        any(&self.contracts, &|c| c == n.sstcontract)
            && any(&self.names, &|name| name == n.name())
            && (self.outcomes.is_empty()
                || self.outcomes.iter().any(|o| o.as_str() == n.sstoutcome))
            && any(&self.state_prefixes, &|p| n.subject.starts_with(p))
    }
}

/// One piece of a topic template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Contract,
    Name,
    Outcome,
    Type,
    Subject,
    Node,
}

/// Where a sink sends a notification (Kafka topic, RabbitMQ routing key, NATS subject, MQTT
/// topic, PostgreSQL channel, Redis stream key), written with placeholders:
/// `{contract}` (contract name), `{name}` (method or business-event name), `{outcome}`
/// (`applied`/`rejected`), `{type}` (the whole CloudEvents type), `{subject}` (state id),
/// `{node}` (publishing node id). Example: `sst.{contract}.{name}.{outcome}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    text: String,
    parts: Vec<Part>,
}

impl TopicTemplate {
    /// The default: `sst.{contract}.{name}.{outcome}` (the CloudEvents type).
    pub const DEFAULT: &'static str = "sst.{contract}.{name}.{outcome}";

    /// Parses a template.
    ///
    /// # Errors
    /// [`FilterError::EmptyTemplate`], [`FilterError::UnknownPlaceholder`] or
    /// [`FilterError::UnbalancedBrace`].
    pub fn parse(text: &str) -> Result<Self, FilterError> {
        if text.is_empty() {
            return Err(FilterError::EmptyTemplate);
        }
        let unbalanced = |at| FilterError::UnbalancedBrace {
            template: text.to_owned(),
            at,
        };
        let mut parts = Vec::new();
        let mut rest = text;
        let mut offset = 0;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    parts.push(Part::Literal(rest.to_owned()));
                    break;
                }
                Some(i) if rest.as_bytes()[i] == b'}' => return Err(unbalanced(offset + i)),
                Some(i) => {
                    if i > 0 {
                        parts.push(Part::Literal(rest[..i].to_owned()));
                    }
                    let after = &rest[i + 1..];
                    let close = after.find('}').ok_or_else(|| unbalanced(offset + i))?;
                    let name = &after[..close];
                    if name.contains('{') {
                        return Err(unbalanced(offset + i));
                    }
                    parts.push(match name {
                        "contract" => Part::Contract,
                        "name" => Part::Name,
                        "outcome" => Part::Outcome,
                        "type" => Part::Type,
                        "subject" => Part::Subject,
                        "node" => Part::Node,
                        _ => {
                            return Err(FilterError::UnknownPlaceholder {
                                template: text.to_owned(),
                                name: name.to_owned(),
                            })
                        }
                    });
                    let used = i + 1 + close + 1;
                    offset += used;
                    rest = &rest[used..];
                }
            }
        }
        Ok(TopicTemplate {
            text: text.to_owned(),
            parts,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the template has no placeholder (every notification goes to one place).
    pub fn is_fixed(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// The topic of `n`.
    pub fn render(&self, n: &Notification) -> String {
        let mut out = String::with_capacity(self.text.len() + 32);
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Contract => out.push_str(&n.sstcontract),
                Part::Name => out.push_str(n.name()),
                Part::Outcome => out.push_str(&n.sstoutcome),
                Part::Type => out.push_str(&n.kind),
                Part::Subject => out.push_str(&n.subject),
                Part::Node => out.push_str(n.source.strip_prefix("sst://").unwrap_or(&n.source)),
            }
        }
        out
    }
}

impl Default for TopicTemplate {
    fn default() -> Self {
        TopicTemplate {
            text: Self::DEFAULT.to_owned(),
            parts: vec![
                Part::Literal("sst.".into()),
                Part::Contract,
                Part::Literal(".".into()),
                Part::Name,
                Part::Literal(".".into()),
                Part::Outcome,
            ],
        }
    }
}

impl FromStr for TopicTemplate {
    type Err = FilterError;
    fn from_str(s: &str) -> Result<Self, FilterError> {
        TopicTemplate::parse(s)
    }
}

impl fmt::Display for TopicTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for TopicTemplate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        TopicTemplate::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for TopicTemplate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Notification {
        Notification {
            specversion: "1.0".into(),
            id: "e1".into(),
            source: "sst://acme".into(),
            kind: "sst.real-estate-deal.create.applied".into(),
            subject: "deal-1".into(),
            time: "2026-11-30T05:29:10.123Z".into(),
            datacontenttype: "application/json".into(),
            data: serde_json::json!({}),
            sstlogpos: 3,
            sstcontract: "real-estate-deal".into(),
            sstoutcome: "applied".into(),
        }
    }

    #[test]
    fn templates_render_every_placeholder() -> Result<(), FilterError> {
        let t = TopicTemplate::parse("x/{node}/{contract}/{name}/{outcome}/{subject}:{type}")?;
        assert_eq!(
            t.render(&sample()),
            "x/acme/real-estate-deal/create/applied/deal-1:sst.real-estate-deal.create.applied"
        );
        assert_eq!(
            TopicTemplate::default().render(&sample()),
            TopicTemplate::parse(TopicTemplate::DEFAULT)?.render(&sample())
        );
        assert!(TopicTemplate::parse("fixed")?.is_fixed());
        Ok(())
    }

    #[test]
    fn bad_templates_are_typed_errors() {
        assert_eq!(TopicTemplate::parse(""), Err(FilterError::EmptyTemplate));
        assert!(matches!(
            TopicTemplate::parse("sst.{contrct}"),
            Err(FilterError::UnknownPlaceholder { name, .. }) if name == "contrct"
        ));
        assert!(matches!(
            TopicTemplate::parse("sst.{contract"),
            Err(FilterError::UnbalancedBrace { at: 4, .. })
        ));
        assert!(matches!(
            TopicTemplate::parse("sst.}x"),
            Err(FilterError::UnbalancedBrace { at: 4, .. })
        ));
    }

    #[test]
    fn filters_match_on_every_field() -> Result<(), FilterError> {
        let n = sample();
        assert!(Filter::all().matches(&n));
        let only = |spec: FilterSpec| Filter::new(&spec).map(|f| f.matches(&n));
        assert!(only(FilterSpec {
            contracts: vec!["rfq".into(), "real-estate-deal".into()],
            names: vec!["create".into()],
            outcomes: vec!["applied".into()],
            state_prefixes: vec!["deal-".into()],
        })?);
        assert!(!only(FilterSpec {
            contracts: vec!["rfq".into()],
            ..Default::default()
        })?);
        assert!(!only(FilterSpec {
            names: vec!["change_sections".into()],
            ..Default::default()
        })?);
        assert!(!only(FilterSpec {
            outcomes: vec!["rejected".into()],
            ..Default::default()
        })?);
        assert!(!only(FilterSpec {
            state_prefixes: vec!["rfq-".into()],
            ..Default::default()
        })?);
        assert_eq!(
            Filter::new(&FilterSpec {
                outcomes: vec!["done".into()],
                ..Default::default()
            }),
            Err(FilterError::UnknownOutcome {
                value: "done".into()
            })
        );
        assert_eq!(
            Filter::new(&FilterSpec {
                names: vec!["a".into(), String::new()],
                ..Default::default()
            }),
            Err(FilterError::EmptyEntry {
                field: "names",
                index: 1
            })
        );
        Ok(())
    }
}
