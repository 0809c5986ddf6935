//! The contract's types against the table in `docs/SUBJECTS.md`: every example round-trips
//! through its type, the documented fields are exactly the type's fields, optional fields may be
//! left out and required ones may not, and the docs table is the one the registry generates.
//!
//! After changing the contract, regenerate the table with
//! `ROSEY_BLESS=1 cargo test -p rosey-plugin-api --test contract`.

use rosey_plugin_api::registry::{self, SubjectSpec};
use serde_json::Value;
use std::path::PathBuf;

const BEGIN: &str = "<!-- subjects:begin (generated from plugin-api/src/registry.rs) -->\n";
const END: &str = "<!-- subjects:end -->";

fn fields(spec: &SubjectSpec) -> Vec<(&'static str, bool)> {
    spec.fields
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(|f| match f.strip_suffix('?') {
            Some(name) => (name, true),
            None => (f, false),
        })
        .collect()
}

#[test]
fn every_example_round_trips_through_its_type() {
    for spec in registry::all() {
        let example = (spec.example)();
        let back = (spec.roundtrip)(&example)
            .unwrap_or_else(|e| panic!("{}: example does not decode: {e}", spec.subject));
        assert_eq!(
            back, example,
            "{}: payload changed in a round trip",
            spec.subject
        );
        if let (Some(reply), Some(rt)) = (spec.reply_example, spec.reply_roundtrip) {
            let reply = reply();
            let back = rt(&reply)
                .unwrap_or_else(|e| panic!("{}: reply example does not decode: {e}", spec.subject));
            assert_eq!(
                back, reply,
                "{}: reply changed in a round trip",
                spec.subject
            );
        }
        assert_eq!(
            spec.reply.is_some(),
            spec.reply_example.is_some(),
            "{}",
            spec.subject
        );
    }
}

#[test]
fn documented_fields_are_the_type_fields() {
    for spec in registry::all() {
        let example = (spec.example)();
        let Value::Object(map) = &example else {
            assert!(
                spec.fields.is_empty(),
                "{}: fields listed for a non-object",
                spec.subject
            );
            continue;
        };
        if spec.payload == "serde_json::Value" {
            continue;
        }
        let mut documented: Vec<&str> = fields(&spec).iter().map(|(n, _)| *n).collect();
        let mut actual: Vec<&str> = map.keys().map(String::as_str).collect();
        documented.sort_unstable();
        actual.sort_unstable();
        assert_eq!(
            documented, actual,
            "{}: documented fields differ",
            spec.subject
        );
    }
}

#[test]
fn optional_fields_may_be_omitted_and_required_ones_may_not() {
    for spec in registry::all() {
        let example = (spec.example)();
        for (name, optional) in fields(&spec) {
            let mut without = example.clone();
            if let Some(map) = without.as_object_mut() {
                map.remove(name);
            }
            let decoded = (spec.roundtrip)(&without);
            if optional {
                assert!(
                    decoded.is_ok(),
                    "{}: optional {name} is required",
                    spec.subject
                );
            } else {
                assert!(
                    decoded.is_err(),
                    "{}: required {name} is optional",
                    spec.subject
                );
            }
        }
    }
}

#[test]
fn payloads_of_the_wrong_shape_are_rejected() {
    for spec in registry::all() {
        if spec.payload == "serde_json::Value" {
            continue;
        }
        for bad in [
            Value::Null,
            Value::from("text"),
            Value::from(7),
            Value::Array(vec![]),
        ] {
            assert!(
                (spec.roundtrip)(&bad).is_err(),
                "{}: accepted {bad}",
                spec.subject
            );
        }
    }
}

#[test]
fn docs_table_matches_the_registry() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/SUBJECTS.md");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let table = registry::markdown_table();
    let (Some(start), Some(end)) = (text.find(BEGIN), text.find(END)) else {
        panic!("{} lacks the generated-table markers", path.display());
    };
    let current = &text[start + BEGIN.len()..end];
    if current != table {
        if std::env::var_os("ROSEY_BLESS").is_some() {
            let updated = format!("{}{BEGIN}{table}{}", &text[..start], &text[end..]);
            std::fs::write(&path, updated).expect("write docs/SUBJECTS.md");
            return;
        }
        panic!(
            "docs/SUBJECTS.md is out of date with plugin-api/src/registry.rs; regenerate with \
             ROSEY_BLESS=1 cargo test -p rosey-plugin-api --test contract"
        );
    }
}

#[test]
fn every_row_names_a_real_subject() {
    for spec in registry::all() {
        // Fill the placeholders with valid names; the result must be a valid, concrete subject.
        let concrete = spec
            .subject
            .replace("<platform>", "cytube")
            .replace("<event>", "chatMsg")
            .replace("<name>", "quote")
            .replace("<plugin>", "quotes")
            .replace("<channel>", "lounge")
            .replace("<write>", "message.log");
        assert!(concrete.starts_with("rosey."), "{}", spec.subject);
        assert!(
            concrete
                .split('.')
                .all(|t| !t.is_empty() && !t.contains(['*', '>', ' ', '<'])),
            "{}",
            spec.subject
        );
    }
}

const NATS_BEGIN: &str = "<!-- nats-config:begin (generated: rosey nats-config) -->\n";
const NATS_END: &str = "<!-- nats-config:end -->";

/// `docs/NATS_SETUP.md` shows exactly what `rosey nats-config` prints.
#[test]
fn nats_setup_shows_the_generated_authorization_block() {
    use rosey_plugin_api::access::{authorization_block, Password};
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/NATS_SETUP.md");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let block = authorization_block(&[], |_| Password::FromEnv).unwrap();
    let generated = format!("```\n{block}```\n");
    let (Some(start), Some(end)) = (text.find(NATS_BEGIN), text.find(NATS_END)) else {
        panic!("{} lacks the nats-config markers", path.display());
    };
    if text[start + NATS_BEGIN.len()..end] != generated {
        if std::env::var_os("ROSEY_BLESS").is_some() {
            let updated = format!("{}{NATS_BEGIN}{generated}{}", &text[..start], &text[end..]);
            std::fs::write(&path, updated).expect("write docs/NATS_SETUP.md");
            return;
        }
        panic!(
            "docs/NATS_SETUP.md's authorization block is out of date with the contract; \
             regenerate with ROSEY_BLESS=1 cargo test -p rosey-plugin-api --test contract"
        );
    }
}
