//! State integrity properties: tampering with any section value (through the JSON columns a
//! database user can edit), any salt or hash, or any header field makes `State::verify` fail
//! or changes the root; `State::next` re-hashes only the changed sections and the root.

mod common;

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;
use sst_core::canonical;
use sst_core::error::IntegrityError;
use sst_core::model::StateParts;
use sst_core::{Digest, Section, State};

use common::{portable_value, salt, section_name, section_value, state};

// ---------------------------------------------------------------------------------------------
// JSON surgery

/// JSON pointers of every node of `v` (the root included).
fn pointers(v: &Value) -> Vec<String> {
    fn walk(v: &Value, at: String, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    walk(child, format!("{at}/{}", escape(k)), out);
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    walk(child, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
        out.push(at);
    }
    let mut out = Vec::new();
    walk(v, String::new(), &mut out);
    out
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn pick<'a>(candidates: &'a [String], i: &Index) -> &'a str {
    &candidates[i.index(candidates.len())]
}

/// A way to change a JSON value, as someone editing the native column would.
#[derive(Debug, Clone, Copy)]
enum Edit {
    /// Change one number.
    Number,
    /// Change one character of one string.
    StringChar,
    /// Add a member to one object.
    AddKey,
    /// Remove a member from one object.
    RemoveKey,
    /// Rename a member of one object.
    RenameKey,
    /// Replace one node with a value of another type.
    Retype,
    /// Change one byte of the value's canonical text (keeping it valid JSON).
    Byte,
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        Just(Edit::Number),
        Just(Edit::StringChar),
        Just(Edit::AddKey),
        Just(Edit::RemoveKey),
        Just(Edit::RenameKey),
        Just(Edit::Retype),
        Just(Edit::Byte),
    ]
}

/// Applies `edit` somewhere in `v` (chosen by `at`), returning a value with a different
/// canonical form. Section values always hold a number, a string and a non-empty object, so
/// every edit applies.
fn apply(edit: Edit, v: &Value, at: &Index) -> Value {
    let mut out = v.clone();
    let all = pointers(v);
    let of = |pred: &dyn Fn(&Value) -> bool| -> Vec<String> {
        all.iter()
            .filter(|p| pred(v.pointer(p).expect("pointer exists")))
            .cloned()
            .collect()
    };
    match edit {
        Edit::Number => {
            let ptr = pick(&of(&|x| x.is_number()), at).to_owned();
            let n = out.pointer_mut(&ptr).expect("number");
            *n = match (n.as_i64(), n.as_f64()) {
                (Some(i), _) if i > 0 => Value::from(i - 1),
                (Some(i), _) => Value::from(i + 1),
                (None, Some(f)) => Value::from(f + 1.0),
                _ => unreachable!("numbers are i64 or f64 here"),
            };
        }
        Edit::StringChar => {
            let ptr = pick(&of(&|x| x.is_string()), at).to_owned();
            let s = out.pointer_mut(&ptr).expect("string");
            let old = s.as_str().expect("string").to_owned();
            let mut chars: Vec<char> = old.chars().collect();
            if chars.is_empty() {
                chars.push('x');
            } else {
                let i = at.index(chars.len());
                chars[i] = if chars[i] == 'x' { 'y' } else { 'x' };
            }
            *s = Value::String(chars.into_iter().collect());
        }
        Edit::AddKey | Edit::RemoveKey | Edit::RenameKey => {
            let objects = of(&|x| x.as_object().is_some_and(|m| !m.is_empty()));
            let ptr = pick(&objects, at).to_owned();
            let m = out
                .pointer_mut(&ptr)
                .and_then(Value::as_object_mut)
                .expect("object");
            let key = m.keys().nth(at.index(m.len())).expect("key").clone();
            let fresh = (0..)
                .map(|i| format!("added_{i}"))
                .find(|k| !m.contains_key(k))
                .expect("a fresh key");
            match edit {
                Edit::AddKey => {
                    m.insert(fresh, Value::Null);
                }
                Edit::RemoveKey => {
                    m.remove(&key);
                }
                _ => {
                    let x = m.remove(&key).expect("present");
                    m.insert(fresh, x);
                }
            }
        }
        Edit::Retype => {
            let ptr = pick(&all, at).to_owned();
            let x = out.pointer_mut(&ptr).expect("node");
            *x = if x.is_null() {
                Value::Bool(false)
            } else {
                Value::Null
            };
        }
        Edit::Byte => return flip_byte(v, at),
    }
    out
}

/// Changes one byte of the canonical text of `v` so that the text is still JSON but means
/// something else.
fn flip_byte(v: &Value, at: &Index) -> Value {
    let text = canonical::to_vec(v);
    let start = at.index(text.len());
    let before = canonical::to_string(v);
    for offset in 0..text.len() {
        let pos = (start + offset) % text.len();
        for cand in b"0123456789axyzAXYZ -_{}[]\",:" {
            if *cand == text[pos] {
                continue;
            }
            let mut t = text.clone();
            t[pos] = *cand;
            if let Ok(parsed) = serde_json::from_slice::<Value>(&t) {
                if canonical::to_string(&parsed) != before {
                    return parsed;
                }
            }
        }
    }
    panic!("no single-byte edit of {before} is valid JSON");
}

fn root_mismatch(r: &Result<(), IntegrityError>) -> bool {
    matches!(r, Err(IntegrityError::Root { .. }))
}

fn parts_round_trip(parts: StateParts) -> State {
    State::from_parts(parts).expect("tampered columns still reassemble")
}

// ---------------------------------------------------------------------------------------------
// Header tampering

/// A header field of a stored state, and a way to change it.
#[derive(Debug, Clone, Copy)]
enum HeaderEdit {
    Id,
    ContractName,
    ContractVersion,
    Version,
    PartiesAddActor,
    PartiesRemoveActor,
    PartiesAddRole,
    PartiesRenameRole,
    PrevRoot,
    LastEvent,
    UpdatedAt,
    Alg,
}

fn header_edit() -> impl Strategy<Value = HeaderEdit> {
    use HeaderEdit::*;
    prop_oneof![
        Just(Id),
        Just(ContractName),
        Just(ContractVersion),
        Just(Version),
        Just(PartiesAddActor),
        Just(PartiesRemoveActor),
        Just(PartiesAddRole),
        Just(PartiesRenameRole),
        Just(PrevRoot),
        Just(LastEvent),
        Just(UpdatedAt),
        Just(Alg),
    ]
}

fn flip_digest(d: Digest, at: &Index) -> Digest {
    let mut b = *d.bytes();
    b[at.index(32)] ^= 1 << (at.index(8) as u8);
    Digest::from_parts(d.alg(), b)
}

fn flip_digest_str(s: &str, at: &Index) -> String {
    flip_digest(s.parse().expect("digest"), at).to_string()
}

fn edit_header(parts: &mut StateParts, edit: HeaderEdit, at: &Index) {
    use HeaderEdit::*;
    let parties = parts.parties.as_object_mut().expect("parties object");
    match edit {
        Id => parts.id.0.push('x'),
        ContractName => parts.contract.name.push('x'),
        ContractVersion => parts.contract.version += 1,
        Version => parts.version += 1 + at.index(3) as u64,
        PartiesAddActor => {
            let role = parties
                .keys()
                .nth(at.index(parties.len()))
                .expect("role")
                .clone();
            parties[&role]
                .as_array_mut()
                .expect("actors")
                .push(Value::from("zz/intruder"));
        }
        PartiesRemoveActor => {
            let role = parties
                .keys()
                .nth(at.index(parties.len()))
                .expect("role")
                .clone();
            let actors = parties[&role].as_array_mut().expect("actors");
            actors.remove(at.index(actors.len()));
        }
        PartiesAddRole => {
            parties.insert("zz-role".into(), serde_json::json!(["zz/intruder"]));
        }
        PartiesRenameRole => {
            let role = parties
                .keys()
                .nth(at.index(parties.len()))
                .expect("role")
                .clone();
            let actors = parties.remove(&role).expect("present");
            parties.insert(format!("{role}-x"), actors);
        }
        PrevRoot => {
            parts.prev_root = Some(match &parts.prev_root {
                Some(r) => flip_digest_str(r, at),
                None => flip_digest_str(&parts.root, at),
            })
        }
        LastEvent => {
            parts.last_event = match &parts.last_event {
                Some(e) if at.index(2) == 0 => Some(flip_digest_str(e, at)),
                Some(_) => None,
                None => Some(flip_digest_str(&parts.root, at)),
            }
        }
        UpdatedAt => parts.updated_at += 1 + at.index(1000) as i64,
        Alg => {
            // Relabel the root's algorithm: same bytes, other hash function.
            let (alg, hex) = parts.root.split_once(':').expect("alg:hex");
            let other = if alg == "blake3" { "sha256" } else { "blake3" };
            parts.root = format!("{other}:{hex}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any edit of a section value in the queryable `data` column is caught by `verify`,
    /// which names exactly that section.
    #[test]
    fn editing_a_section_value_in_the_data_column_fails_verify(
        s in state(), which in any::<Index>(), e in edit(), at in any::<Index>(),
    ) {
        prop_assert_eq!(s.verify(), Ok(()));
        let name = s.sections.keys().nth(which.index(s.sections.len())).expect("section").clone();
        let mut parts = s.to_parts();
        let old = parts.data[&name].clone();
        let new = apply(e, &old, &at);
        prop_assert_ne!(canonical::to_string(&new), canonical::to_string(&old));
        parts.data[&name] = new;
        let tampered = parts_round_trip(parts);
        prop_assert_eq!(
            tampered.verify(),
            Err(IntegrityError::SectionHash { section: name.clone() })
        );
        // The root itself is still that of the untouched header and hashes: only the section
        // hash check can see a value edit, and it does.
        prop_assert_eq!(tampered.compute_root(), s.root);
    }

    /// Changing any bit of a salt or of a section hash in the seals column fails `verify`.
    #[test]
    fn editing_a_salt_or_section_hash_fails_verify(
        s in state(), which in any::<Index>(), at in any::<Index>(), hash_not_salt in any::<bool>(),
    ) {
        let name = s.sections.keys().nth(which.index(s.sections.len())).expect("section").clone();
        let mut parts = s.to_parts();
        let seal = parts.seals[&name].as_object_mut().expect("seal");
        if hash_not_salt {
            let h = seal["hash"].as_str().expect("hash").to_owned();
            seal["hash"] = Value::String(flip_digest_str(&h, &at));
        } else {
            let mut b = hex::decode(seal["salt"].as_str().expect("salt")).expect("hex");
            b[at.index(32)] ^= 1 << (at.index(8) as u8);
            seal["salt"] = Value::String(hex::encode(b));
        }
        let tampered = parts_round_trip(parts);
        prop_assert_eq!(
            tampered.verify(),
            Err(IntegrityError::SectionHash { section: name.clone() })
        );
        // Redacted, the same forged hash still changes the root.
        if hash_not_salt {
            let redacted = tampered.redact(|_| false);
            prop_assert!(root_mismatch(&redacted.verify()), "{:?}", redacted.verify());
            prop_assert_ne!(redacted.compute_root(), s.root);
        }
    }

    /// Any change of a header field (id, contract, version, parties, prev_root, last_event,
    /// updated_at, algorithm) changes the recomputed root, so `verify` fails.
    #[test]
    fn editing_a_header_field_changes_the_root(
        s in state(), e in header_edit(), at in any::<Index>(),
    ) {
        let mut parts = s.to_parts();
        edit_header(&mut parts, e, &at);
        let tampered = parts_round_trip(parts);
        prop_assert_ne!(canonical::to_string(&tampered.header()), canonical::to_string(&s.header()));
        prop_assert!(
            root_mismatch(&tampered.verify()),
            "{:?} not detected: {:?}", e, tampered.verify()
        );
        // Even re-sealed by someone who recomputes the root, the root differs from the
        // original, so peers comparing roots see it.
        prop_assert_ne!(tampered.compute_root(), s.root);
    }

    /// Changing any bit of the stored root fails `verify`.
    #[test]
    fn editing_the_root_fails_verify(s in state(), at in any::<Index>()) {
        let mut parts = s.to_parts();
        parts.root = flip_digest_str(&parts.root, &at);
        let tampered = parts_round_trip(parts);
        prop_assert!(root_mismatch(&tampered.verify()), "{:?}", tampered.verify());
    }

    /// Adding a section (with a valid hash of its own) or dropping one changes the root.
    #[test]
    fn adding_or_dropping_a_section_changes_the_root(
        s in state(), which in any::<Index>(), v in portable_value(), salt in salt(), add in any::<bool>(),
    ) {
        let mut t = s.clone();
        if add {
            let fresh = (0..).map(|i| format!("extra_{i}")).find(|n| !t.sections.contains_key(n)).expect("name");
            let sec = Section::with_salt(s.alg(), &fresh, salt, v);
            t.sections.insert(fresh, sec);
        } else {
            let name = t.sections.keys().nth(which.index(t.sections.len())).expect("section").clone();
            t.sections.remove(&name);
        }
        prop_assert!(root_mismatch(&t.verify()), "{:?}", t.verify());
        prop_assert_ne!(t.compute_root(), s.root);
    }

    /// Moving a sealed value to another section name breaks its hash (names are hashed).
    #[test]
    fn swapping_section_values_between_names_fails_verify(s in state(), v in section_value(), salt in salt()) {
        let mut t = s.clone();
        t.sections.insert("aaa".into(), Section::with_salt(s.alg(), "aaa", salt, v.clone()));
        t.sections.insert("bbb".into(), Section::with_salt(s.alg(), "bbb", salt, v));
        t.root = t.compute_root();
        prop_assert_eq!(t.verify(), Ok(()));
        let a = t.sections["aaa"].clone();
        let b = t.sections["bbb"].clone();
        prop_assert_ne!(a.hash, b.hash);
        t.sections.insert("aaa".into(), b);
        t.sections.insert("bbb".into(), a);
        prop_assert!(t.verify().is_err());
    }

    /// `State::next` re-hashes only the changed sections: every other section keeps its hash
    /// (and its disclosure) bit for bit; the root, version and prev_root move on.
    #[test]
    fn next_rehashes_only_the_changed_sections_and_the_root(
        s in state(),
        changes in prop::collection::btree_map(section_name(), (section_value(), salt()), 1..3),
        ts in any::<i64>(),
    ) {
        let alg = s.alg();
        let sealed: BTreeMap<String, Section> = changes
            .into_iter()
            .map(|(n, (v, salt))| { let sec = Section::with_salt(alg, &n, salt, v); (n, sec) })
            .collect();
        let next = s.next(sealed.clone(), s.last_event, sst_core::Timestamp(ts));
        prop_assert_eq!(next.verify(), Ok(()));
        prop_assert_eq!(next.version, s.version + 1);
        prop_assert_eq!(next.prev_root, Some(s.root));
        prop_assert_ne!(next.root, s.root);
        for (name, sec) in &s.sections {
            if !sealed.contains_key(name) {
                prop_assert_eq!(&next.sections[name], sec, "untouched section {} changed", name);
            }
        }
        for (name, sec) in &sealed {
            prop_assert_eq!(&next.sections[name], sec);
        }
        let names: Vec<&String> = next.sections.keys().collect();
        let mut expected: Vec<&String> = s.sections.keys().chain(sealed.keys()).collect();
        expected.sort();
        expected.dedup();
        prop_assert_eq!(names, expected);

        // The unchanged sections' plaintext is not needed: a holder that sees only their
        // hashes computes the same next root.
        let blind = s.redact(|n| sealed.contains_key(n));
        let blind_next = blind.next(sealed, s.last_event, sst_core::Timestamp(ts));
        prop_assert_eq!(blind_next.root, next.root);
        prop_assert_eq!(blind_next.verify(), Ok(()));
    }
}

#[test]
fn byte_edits_and_key_edits_reach_nested_values() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let v = serde_json::json!({"n": 1, "s": "ab", "deep": {"list": [1, {"k": "v"}]}});
    let mut runner = TestRunner::deterministic();
    for _ in 0..64 {
        let at = any::<Index>()
            .new_tree(&mut runner)
            .expect("index")
            .current();
        for e in [
            Edit::Number,
            Edit::StringChar,
            Edit::AddKey,
            Edit::RemoveKey,
            Edit::RenameKey,
            Edit::Retype,
            Edit::Byte,
        ] {
            let out = apply(e, &v, &at);
            assert_ne!(
                canonical::to_string(&out),
                canonical::to_string(&v),
                "{e:?}"
            );
        }
    }
    // A nested change is reached: some pointer goes three levels down.
    assert!(pointers(&v).iter().any(|p| p == "/deep/list/1/k"));
}

// ---------------------------------------------------------------------------------------------
// the section hash memo

/// The hash of a freshly built disclosure of `salt` and `value` (no memo).
fn fresh_hash(
    alg: sst_core::HashAlg,
    name: &str,
    salt: sst_core::Salt,
    value: &Value,
) -> sst_core::SectionHash {
    sst_core::Disclosure::new(salt, std::sync::Arc::new(value.clone())).hash(alg, name)
}

proptest! {
    /// A disclosure hashed once (as when it is sealed) and then changed in any way — its salt,
    /// its value replaced, hashed under another name or algorithm, cloned first — hashes
    /// exactly as a fresh disclosure of what it holds: the memo never answers for something
    /// it did not cover (nor its encoded length).
    #[test]
    fn a_remembered_hash_is_only_reused_for_exactly_what_it_covered(
        name in section_name(),
        other_name in section_name(),
        (v1, v2) in (section_value(), section_value()),
        (s1, s2) in (salt(), salt()),
        alg in common::alg(),
        other_alg in common::alg(),
    ) {
        let section = Section::with_salt(alg, &name, s1, v1.clone());
        let mut d = section.disclosure.clone().expect("sealed");
        prop_assert_eq!(d.hash(alg, &name), section.hash);
        prop_assert_eq!(d.hash(alg, &name), fresh_hash(alg, &name, s1, &v1));
        prop_assert_eq!(d.hash(alg, &other_name), fresh_hash(alg, &other_name, s1, &v1));
        prop_assert_eq!(d.hash(other_alg, &name), fresh_hash(other_alg, &name, s1, &v1));
        let copy = d.clone();
        d.salt = s2;
        prop_assert_eq!(d.hash(alg, &name), fresh_hash(alg, &name, s2, &v1));
        d.value = std::sync::Arc::new(v2.clone());
        prop_assert_eq!(d.hash(alg, &name), fresh_hash(alg, &name, s2, &v2));
        prop_assert_eq!(copy.hash(alg, &name), section.hash);
        // A value edited in place is a new value: the memo holds the old one.
        let mut edited = copy.clone();
        std::sync::Arc::make_mut(&mut edited.value)
            .as_object_mut()
            .map(|o| o.insert("tampered".into(), Value::Bool(true)));
        prop_assert_eq!(edited.hash(alg, &name), fresh_hash(alg, &name, s1, &edited.value));
        // The remembered encoded length follows the same rule.
        for x in [&d, &copy, &edited] {
            prop_assert_eq!(x.encoded_len(), canonical::encoded_len(&x.value));
        }
        // So does the portable verdict, shared by clones: a value found portable once, then
        // replaced (in a clone) by one that is not, is checked again and refused.
        prop_assert!(copy.check_portable(|| "$".into()).is_ok());
        let mut bad = copy.clone();
        bad.value = std::sync::Arc::new(serde_json::json!({"$set": v1.clone()}));
        let err = bad.check_portable(|| "$.sections.x".into()).expect_err("a $ key");
        prop_assert_eq!(err.path, r#"$.sections.x["$set"]"#);
        prop_assert!(copy.check_portable(|| "$".into()).is_ok());
        let mut edited_bad = copy.clone();
        std::sync::Arc::make_mut(&mut edited_bad.value)
            .as_object_mut()
            .map(|o| o.insert("$x".into(), Value::Bool(true)));
        prop_assert!(edited_bad.check_portable(|| "$".into()).is_err());
    }
}
