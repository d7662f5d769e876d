//! `infra.eventbus.stream`: a JetStream stream. The table is the StreamConfig fields a user
//! manages (nats-server server/stream.go), with the server's own defaults.

use crate::config::{Common, Default as D, FieldSpec, Fields, Kind, apply_defaults, read_common};
use crate::error::FieldDiag;
use crate::model::Json;
use serde_json::{Value, json};

pub const FIELDS: &[FieldSpec] = &[
    FieldSpec::new(
        "name",
        "name",
        Kind::Str,
        D::None,
        "the JetStream stream name (no spaces, dots, * or >)",
    ),
    FieldSpec::new(
        "description",
        "description",
        Kind::Str,
        D::None,
        "free text shown by the server",
    ),
    FieldSpec::new(
        "subjects",
        "subjects",
        Kind::StrList,
        D::None,
        "subjects the stream captures, wildcards allowed",
    ),
    FieldSpec::new(
        "retention_policy",
        "retention",
        Kind::Enum(&["limits", "interest", "workqueue"]),
        D::Str("limits"),
        "when messages are removed",
    )
    .alias(&["retention"]),
    FieldSpec::new(
        "storage",
        "storage",
        Kind::Enum(&["file", "memory"]),
        D::Str("file"),
        "file or memory storage",
    ),
    FieldSpec::new(
        "num_replicas",
        "num_replicas",
        Kind::Int,
        D::Int(1),
        "replicas in a cluster (1..5)",
    )
    .alias(&["replicas"]),
    FieldSpec::new(
        "max_consumers",
        "max_consumers",
        Kind::Int,
        D::Unlimited,
        "-1 for unlimited",
    ),
    FieldSpec::new(
        "max_msgs",
        "max_msgs",
        Kind::Int,
        D::Unlimited,
        "-1 for unlimited",
    ),
    FieldSpec::new(
        "max_bytes",
        "max_bytes",
        Kind::Int,
        D::Unlimited,
        "-1 for unlimited",
    ),
    FieldSpec::new(
        "max_age",
        "max_age",
        Kind::Duration,
        D::Int(0),
        "oldest message kept, e.g. 168h; 0 keeps forever",
    ),
    FieldSpec::new(
        "max_msgs_per_subject",
        "max_msgs_per_subject",
        Kind::Int,
        D::Unlimited,
        "-1 for unlimited",
    ),
    FieldSpec::new(
        "max_msg_size",
        "max_msg_size",
        Kind::Int,
        D::Unlimited,
        "largest message in bytes, -1 for unlimited",
    ),
    FieldSpec::new(
        "discard",
        "discard",
        Kind::Enum(&["old", "new"]),
        D::Str("old"),
        "what to drop when a limit is hit",
    ),
    FieldSpec::new(
        "duplicate_window",
        "duplicate_window",
        Kind::Duration,
        D::Derived,
        "de-duplication window; defaults to 2m or max_age if smaller",
    ),
    FieldSpec::new(
        "no_ack",
        "no_ack",
        Kind::Bool,
        D::Bool(false),
        "do not acknowledge publishes",
    ),
    FieldSpec::new(
        "allow_rollup_hdrs",
        "allow_rollup_hdrs",
        Kind::Bool,
        D::Bool(false),
        "allow Nats-Rollup headers",
    ),
    FieldSpec::new(
        "deny_delete",
        "deny_delete",
        Kind::Bool,
        D::Bool(false),
        "forbid deleting messages (cannot be undone)",
    ),
    FieldSpec::new(
        "deny_purge",
        "deny_purge",
        Kind::Bool,
        D::Bool(false),
        "forbid purging (cannot be undone)",
    ),
    FieldSpec::new(
        "allow_direct",
        "allow_direct",
        Kind::Bool,
        D::Bool(false),
        "allow direct get",
    ),
    FieldSpec::new(
        "sealed",
        "sealed",
        Kind::Bool,
        D::Bool(false),
        "seal the stream (cannot be undone)",
    ),
    FieldSpec::new(
        "compression",
        "compression",
        Kind::Enum(&["none", "s2"]),
        D::Str("none"),
        "on-disk compression (2.10+)",
    )
    .since(2, 10),
    FieldSpec::new(
        "placement",
        "placement",
        Kind::Placement,
        D::None,
        "cluster and tags to place the stream on",
    ),
    FieldSpec::new(
        "metadata",
        "metadata",
        Kind::StrMap,
        D::None,
        "user metadata (keys starting _nats. belong to the server)",
    )
    .since(2, 10),
    FieldSpec::new(
        "mirror_direct",
        "mirror_direct",
        Kind::Bool,
        D::Bool(false),
        "direct get from a mirror",
    )
    .since(2, 9),
    FieldSpec::new(
        "republish",
        "republish",
        Kind::Json,
        D::None,
        "{src, dest, headers_only}: republish stored messages",
    )
    .since(2, 9),
    FieldSpec::new(
        "subject_transform",
        "subject_transform",
        Kind::Json,
        D::None,
        "{src, dest}: transform subjects on the way in",
    )
    .since(2, 10),
    FieldSpec::new(
        "consumer_limits",
        "consumer_limits",
        Kind::Json,
        D::None,
        "{inactive_threshold (ns), max_ack_pending}: consumer defaults",
    )
    .since(2, 10),
    FieldSpec::new(
        "mirror",
        "mirror",
        Kind::Json,
        D::None,
        "{name, ...}: make this stream a mirror (cannot change later)",
    ),
    FieldSpec::new(
        "sources",
        "sources",
        Kind::Json,
        D::None,
        "[{name, ...}]: streams to source from",
    ),
    FieldSpec::new(
        "allow_msg_ttl",
        "allow_msg_ttl",
        Kind::Bool,
        D::Bool(false),
        "per-message TTL headers (cannot be disabled later)",
    )
    .since(2, 11),
    FieldSpec::new(
        "subject_delete_marker_ttl",
        "subject_delete_marker_ttl",
        Kind::Duration,
        D::None,
        "leave delete markers this long",
    )
    .since(2, 11),
    FieldSpec::new(
        "allow_msg_counter",
        "allow_msg_counter",
        Kind::Bool,
        D::Bool(false),
        "counter streams (fixed at creation)",
    )
    .since(2, 12),
    FieldSpec::new(
        "allow_atomic",
        "allow_atomic",
        Kind::Bool,
        D::Bool(false),
        "atomic batch publish",
    )
    .since(2, 12),
    FieldSpec::new(
        "allow_msg_schedules",
        "allow_msg_schedules",
        Kind::Bool,
        D::Bool(false),
        "message schedules (cannot be disabled later)",
    )
    .since(2, 12),
    FieldSpec::new(
        "persist_mode",
        "persist_mode",
        Kind::Enum(&["default", "async"]),
        D::Str("default"),
        "file persistence mode (fixed at creation)",
    )
    .since(2, 12),
    FieldSpec::new(
        "allow_batched",
        "allow_batched",
        Kind::Bool,
        D::Bool(false),
        "batched publish",
    )
    .since(2, 14),
];

/// Keys the original plugin accepted that JetStream streams do not have.
const LEGACY_IGNORED: [&str; 1] = ["ack_wait"];

#[derive(Debug, Clone, PartialEq)]
pub struct StreamCfg {
    pub name: String,
    pub broker_ref: Option<String>,
    /// The StreamConfig to send, defaults filled.
    pub wire: Json,
    pub common: Common,
}

impl StreamCfg {
    /// The subjects it captures.
    pub fn subjects(&self) -> Vec<&str> {
        self.wire
            .get("subjects")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }
}

pub fn parse(resource: &str, config: &Json) -> Result<StreamCfg, Vec<FieldDiag>> {
    let mut f = Fields::new(resource, config);
    let common = read_common(&mut f);
    let broker_ref = f.str("broker_ref");
    if let Some(p) = f.str("provider").filter(|p| p != "nats") {
        f.error(
            "provider",
            format!("streams are implemented for nats only, not {p:?}"),
            "remove provider or set it to nats",
        );
    }
    let mut wire = Json::new();
    for spec in FIELDS {
        if let Some(v) = f.field(spec) {
            wire.insert(spec.wire.to_string(), v);
        }
    }
    for k in LEGACY_IGNORED {
        f.ignore(k);
    }
    let name = wire
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !config.contains_key("name") {
        f.error(
            "name",
            "is required",
            "set name to the JetStream stream name, e.g. ORDERS",
        );
    } else if let Some(bad) = invalid_name(&name) {
        f.error("name", bad, "use letters, digits, - and _ only");
    }
    match wire.get("subjects").and_then(Value::as_array) {
        None if !config.contains_key("subjects") => f.error(
            "subjects",
            "at least one subject is required",
            "set subjects, e.g. [\"orders.>\"]",
        ),
        Some(s) if s.is_empty() => f.error(
            "subjects",
            "at least one subject is required",
            "set subjects, e.g. [\"orders.>\"]",
        ),
        Some(s) => {
            for subj in s.iter().filter_map(Value::as_str) {
                if let Some(bad) = invalid_subject(subj) {
                    f.error(
                        "subjects",
                        format!("{subj:?}: {bad}"),
                        "use dot-separated tokens; * and > only as whole tokens, > last",
                    );
                }
            }
        }
        None => {}
    }
    if let Some(r) = wire.get("num_replicas").and_then(Value::as_i64)
        && !(0..=5).contains(&r)
    {
        f.error(
            "num_replicas",
            format!("{r} is out of range"),
            "use 1 to 5 replicas",
        );
    }
    let age = wire.get("max_age").and_then(Value::as_i64).unwrap_or(0);
    if age != 0 && age < 100_000_000 {
        f.error(
            "max_age",
            "must be at least 100ms when set",
            "use 0 to keep messages forever, or 100ms or more",
        );
    }
    if let Some(dw) = wire.get("duplicate_window").and_then(Value::as_i64)
        && age > 0
        && dw > age
    {
        f.error(
            "duplicate_window",
            "can not be larger than max_age",
            "shorten duplicate_window or lengthen max_age",
        );
    }
    let mut known: Vec<&str> = FIELDS.iter().map(|s| s.key).collect();
    known.extend(["broker_ref", "provider"]);
    let diags = f.finish(&known);
    if !diags.is_empty() {
        return Err(diags);
    }
    normalise(&mut wire);
    Ok(StreamCfg {
        name,
        broker_ref,
        wire,
        common,
    })
}

/// The server refuses to create a sealed stream; only an existing one can be sealed.
pub fn sealed_at_create(resource: &str, c: &StreamCfg) -> Option<FieldDiag> {
    (c.wire.get("sealed") == Some(&json!(true))).then(|| {
        FieldDiag::new(
            resource,
            "config.sealed",
            "a stream cannot be created sealed",
            "create it unsealed, then set sealed: true in a later apply",
        )
    })
}

/// Applies the server's defaults (to what we send, and to what the server reports).
pub fn normalise(wire: &mut Json) {
    apply_defaults(FIELDS, wire);
    if wire.get("sealed") == Some(&json!(true)) {
        // Sealing makes the server rewrite these; desire what it will report.
        wire.insert("max_age".into(), json!(0));
        wire.insert("discard".into(), json!("new"));
        wire.insert("deny_delete".into(), json!(true));
        wire.insert("deny_purge".into(), json!(true));
        wire.insert("allow_rollup_hdrs".into(), json!(false));
    }
    let age = wire.get("max_age").and_then(Value::as_i64).unwrap_or(0);
    let dw = wire
        .get("duplicate_window")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if dw == 0 {
        const TWO_MIN: i64 = 120_000_000_000;
        let d = if age > 0 && age < TWO_MIN {
            age
        } else {
            TWO_MIN
        };
        wire.insert("duplicate_window".into(), json!(d));
    }
    if let Some(Value::Object(meta)) = wire.get_mut("metadata") {
        meta.retain(|k, _| !k.starts_with("_nats."));
        if meta.is_empty() {
            wire.remove("metadata");
        }
    }
}

pub fn invalid_name(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.len() > 255 {
        return Some("is longer than 255 characters".into());
    }
    name.chars()
        .find(|c| matches!(c, '.' | '*' | '>' | '/' | '\\') || c.is_whitespace() || c.is_control())
        .map(|c| format!("{name:?} contains {c:?}, which the server refuses"))
}

pub fn invalid_subject(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("empty subject".into());
    }
    let tokens: Vec<&str> = s.split('.').collect();
    for (i, t) in tokens.iter().enumerate() {
        if t.is_empty() {
            return Some("empty token".into());
        }
        if t.chars().any(char::is_whitespace) {
            return Some("contains whitespace".into());
        }
        if t.contains('>') && (*t != ">" || i != tokens.len() - 1) {
            return Some("> must be the whole last token".into());
        }
        if t.contains('*') && *t != "*" {
            return Some("* must be a whole token".into());
        }
    }
    None
}

/// The subjects streams on one broker claim, indexed by first token: two subjects can only
/// overlap when their first tokens are equal or one is a wildcard, so a new stream is
/// checked against those, not against every stream (a plan may declare thousands).
#[derive(Debug, Default)]
pub struct Claims {
    by_first: std::collections::HashMap<String, Vec<(String, usize)>>,
    /// Subjects starting with `*` or `>`: they may overlap anything.
    wild: Vec<(String, usize)>,
}

impl Claims {
    /// A claimed subject that overlaps `subject`, with its owner.
    pub fn overlapping(&self, subject: &str) -> Option<(&str, usize)> {
        let first = subject.split('.').next().unwrap_or("");
        let candidates: Box<dyn Iterator<Item = &(String, usize)>> = if is_wild(first) {
            Box::new(self.by_first.values().flatten().chain(&self.wild))
        } else {
            Box::new(
                self.by_first
                    .get(first)
                    .into_iter()
                    .flatten()
                    .chain(&self.wild),
            )
        };
        candidates
            .filter(|(s, _)| subjects_overlap(subject, s))
            .map(|(s, owner)| (s.as_str(), *owner))
            .next()
    }

    pub fn add(&mut self, subject: &str, owner: usize) {
        let first = subject.split('.').next().unwrap_or("");
        let entry = (subject.to_string(), owner);
        if is_wild(first) {
            self.wild.push(entry);
        } else {
            self.by_first
                .entry(first.to_string())
                .or_default()
                .push(entry);
        }
    }
}

fn is_wild(token: &str) -> bool {
    token == "*" || token == ">"
}

/// True when two subject filters can match the same subject.
pub fn subjects_overlap(a: &str, b: &str) -> bool {
    // Token by token, without collecting.
    let (mut ta, mut tb) = (a.split('.'), b.split('.'));
    loop {
        match (ta.next(), tb.next()) {
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some(x), Some(y)) if x == "*" || y == "*" || x == y => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Json {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn pilot_stream_parses_with_server_defaults() {
        // The pilot's stream becomes the StreamConfig the server will echo back.
        let c = parse("bmw-stream", &cfg(r#"{"iac_provider":"eventbus","broker_ref":"bmw-eventbus","name":"BMW_FULFILLMENT","subjects":["bmw.>"],"retention_policy":"limits","max_age":"168h"}"#)).unwrap();
        assert_eq!(c.wire["max_age"], json!(604_800_000_000_000i64));
        assert_eq!(c.wire["retention"], json!("limits"));
        assert_eq!(c.wire["max_msgs"], json!(-1));
        assert_eq!(c.wire["duplicate_window"], json!(120_000_000_000i64));
        assert_eq!(c.wire["num_replicas"], json!(1));
        assert_eq!(c.broker_ref.as_deref(), Some("bmw-eventbus"));
    }

    #[test]
    fn duplicate_window_defaults_to_max_age_when_shorter() {
        // The server shrinks the 2-minute default to max_age; so must we, or plans never settle.
        let c = parse("s", &cfg(r#"{"name":"S","subjects":["s"],"max_age":"1m"}"#)).unwrap();
        assert_eq!(c.wire["duplicate_window"], json!(60_000_000_000i64));
    }

    #[test]
    fn server_metadata_keys_are_ignored() {
        // `_nats.*` keys are the server's; a config without metadata equals one the server annotated.
        let mut live = cfg(r#"{"metadata":{"_nats.req.level":"0","_nats.ver":"2.15.1"}}"#);
        normalise(&mut live);
        assert!(live.get("metadata").is_none());
    }

    #[test]
    fn missing_subjects_and_bad_names_are_field_errors() {
        // Each problem names its field.
        let d = parse("s", &cfg(r#"{"name":"A.B"}"#)).unwrap_err();
        let paths: Vec<_> = d.iter().map(|d| d.path.as_str()).collect();
        assert!(paths.contains(&"config.name"), "{paths:?}");
        assert!(paths.contains(&"config.subjects"), "{paths:?}");
    }

    #[test]
    fn subject_overlap_follows_wildcard_rules() {
        // Overlapping stream subjects are refused by the server (10065); we catch them first.
        assert!(subjects_overlap("bmw.>", "bmw.orders.created"));
        assert!(subjects_overlap("a.*.c", "a.b.*"));
        assert!(!subjects_overlap("a.b", "a.c"));
        assert!(!subjects_overlap("a.*", "a.b.c"));
        assert!(!subjects_overlap("a", "a.b"));
        assert!(subjects_overlap("a.b", "a.b"));
        assert!(subjects_overlap(">", "x.y"));
        assert!(!subjects_overlap("a.b.c", "a.b"));
    }

    #[test]
    fn claims_find_the_same_overlaps_as_comparing_every_pair() {
        // The index only skips pairs whose first tokens differ and are both literal.
        let subjects = [
            "bmw.>",
            "orders.created",
            "orders.*",
            "*.paid",
            ">",
            "a.b",
            "a.c",
            "x.*.z",
            "x.y.*",
        ];
        for (i, s) in subjects.iter().enumerate() {
            let mut claims = Claims::default();
            for (j, other) in subjects.iter().enumerate().filter(|(j, _)| *j != i) {
                claims.add(other, j);
            }
            let by_pairs = subjects
                .iter()
                .enumerate()
                .any(|(j, o)| j != i && subjects_overlap(s, o));
            assert_eq!(claims.overlapping(s).is_some(), by_pairs, "{s}");
            if let Some((o, j)) = claims.overlapping(s) {
                assert!(subjects_overlap(s, o) && subjects[j] == o);
            }
        }
        let mut literal = Claims::default();
        literal.add("a.b", 0);
        assert_eq!(literal.overlapping("c.b"), None);
        assert_eq!(literal.overlapping("*.b"), Some(("a.b", 0)));
    }
}
