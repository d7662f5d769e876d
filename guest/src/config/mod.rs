//! Strict, typed resource configuration. Each resource type declares its fields as data
//! (`FieldSpec` tables); the same table drives parsing, defaults, normalisation of what the
//! server reports, diffing, rendering and the JSON Schema.

pub mod broker;
pub mod duration;

use crate::error::FieldDiag;
use crate::model::Json;
use serde_json::{Value, json};

/// Keys every resource module may carry: routing, ordering and guards read by wfctl or us.
pub const COMMON_KEYS: [&str; 6] = [
    "iac_provider",
    "provider",
    "depends_on",
    "protected",
    "adopt_existing",
    "size",
];

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Str,
    Int,
    Bool,
    /// Nanoseconds on the wire, "30s" for people.
    Duration,
    Enum(&'static [&'static str]),
    StrList,
    DurationList,
    StrMap,
    Placement,
    /// Passed through as written, in the server's own JSON shape (mirror, sources, ...).
    Json,
}

/// How an absent (or zero) value is filled in, as the server itself would.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Default {
    /// The field has no default: absent stays absent (and is not sent).
    None,
    Str(&'static str),
    Int(i64),
    Bool(bool),
    /// 0 and anything below -1 mean "unlimited" (-1), as nats-server normalises them.
    Unlimited,
    /// The default depends on other fields; the resource's own `derive_defaults` fills it.
    Derived,
}

#[derive(Debug, Clone, Copy)]
pub struct FieldSpec {
    /// The key users write.
    pub key: &'static str,
    /// Other accepted spellings (compatibility with the original plugin).
    pub aliases: &'static [&'static str],
    /// The JSON key on the JetStream wire.
    pub wire: &'static str,
    pub kind: Kind,
    pub default: Default,
    pub doc: &'static str,
    /// The first nats-server version that knows the field (major, minor, patch).
    pub since: (u32, u32, u32),
}

impl FieldSpec {
    pub const fn new(
        key: &'static str,
        wire: &'static str,
        kind: Kind,
        default: Default,
        doc: &'static str,
    ) -> Self {
        FieldSpec {
            key,
            aliases: &[],
            wire,
            kind,
            default,
            doc,
            since: (2, 2, 0),
        }
    }
    pub const fn since(mut self, major: u32, minor: u32) -> Self {
        self.since = (major, minor, 0);
        self
    }
    pub const fn alias(mut self, aliases: &'static [&'static str]) -> Self {
        self.aliases = aliases;
        self
    }
}

/// Reads one resource's config object, recording every problem with its field path and
/// remembering which keys it consumed so the unknown ones can be reported.
pub struct Fields<'a> {
    resource: &'a str,
    prefix: String,
    obj: &'a Json,
    /// Keys read or deliberately ignored; any other key is unknown.
    used: Vec<&'a str>,
    pub diags: Vec<FieldDiag>,
}

impl<'a> Fields<'a> {
    pub fn new(resource: &'a str, obj: &'a Json) -> Self {
        Fields {
            resource,
            prefix: "config".into(),
            obj,
            used: Vec::new(),
            diags: Vec::new(),
        }
    }

    fn nested(resource: &'a str, prefix: String, obj: &'a Json) -> Self {
        Fields {
            resource,
            prefix,
            obj,
            used: Vec::new(),
            diags: Vec::new(),
        }
    }

    pub fn path(&self, key: &str) -> String {
        format!("{}.{key}", self.prefix)
    }

    pub fn error(&mut self, key: &str, message: impl Into<String>, fix: impl Into<String>) {
        let path = self.path(key);
        self.diags
            .push(FieldDiag::new(self.resource, &path, message, fix));
    }

    /// The raw value of `key` (or one of its aliases), marking it used.
    pub fn raw(&mut self, key: &str, aliases: &[&str]) -> Option<(&'a Value, &'a str)> {
        for k in std::iter::once(key).chain(aliases.iter().copied()) {
            if let Some((k, v)) = self.obj.get_key_value(k) {
                self.used.push(k);
                if v.is_null() {
                    return None;
                }
                return Some((v, k));
            }
        }
        None
    }

    pub fn ignore(&mut self, key: &str) {
        if let Some((k, _)) = self.obj.get_key_value(key) {
            self.used.push(k);
        }
    }

    pub fn str(&mut self, key: &str) -> Option<String> {
        let (v, k) = self.raw(key, &[])?;
        self.as_str(v, k)
    }

    fn as_str(&mut self, v: &Value, k: &str) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            other => {
                self.error(
                    k,
                    format!("expected a string, got {}", type_name(other)),
                    "write a plain string value",
                );
                None
            }
        }
    }

    pub fn required_str(&mut self, key: &str, fix: &str) -> Option<String> {
        match self.str(key) {
            Some(s) if !s.trim().is_empty() => Some(s),
            Some(_) => {
                // The likeliest cause under wfctl: it expands `${module.field}` outside
                // env_vars as an environment variable, which is unset, so the ref arrives empty.
                self.error(
                    key,
                    "must not be empty",
                    format!("{fix} (wfctl resolves a ${{module.field}} reference only inside env_vars; elsewhere it arrives empty, so write the value itself)"),
                );
                None
            }
            None => {
                self.error(key, "is required", fix);
                None
            }
        }
    }

    pub fn bool(&mut self, key: &str) -> Option<bool> {
        let (v, k) = self.raw(key, &[])?;
        self.as_bool(v, k)
    }

    fn as_bool(&mut self, v: &Value, k: &str) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
            other => {
                self.error(
                    k,
                    format!("expected true or false, got {other}"),
                    "write true or false",
                );
                None
            }
        }
    }

    fn as_int(&mut self, v: &Value, k: &str) -> Option<i64> {
        let parsed = match v {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        if parsed.is_none() {
            self.error(
                k,
                format!("expected a whole number, got {v}"),
                "write an integer such as 1000 (or -1 for unlimited)",
            );
        }
        parsed
    }

    fn as_duration(&mut self, v: &Value, k: &str) -> Option<i64> {
        match v {
            Value::String(s) => match duration::parse(s) {
                Ok(ns) => Some(ns),
                Err(e) => {
                    self.error(
                        k,
                        e,
                        "use a duration with a unit, such as 30s, 15m, 2h or 168h",
                    );
                    None
                }
            },
            Value::Number(n) if n.as_i64() == Some(0) => Some(0),
            other => {
                self.error(
                    k,
                    format!("expected a duration such as \"30s\", got {other}"),
                    "quote a duration with a unit, such as \"30s\" or \"168h\"",
                );
                None
            }
        }
    }

    fn as_str_list(&mut self, v: &Value, k: &str) -> Option<Vec<String>> {
        match v {
            Value::String(s) => Some(vec![s.clone()]),
            Value::Array(items) => {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        other => {
                            self.error(
                                k,
                                format!("expected a list of strings, found {other}"),
                                "quote every entry",
                            );
                            return None;
                        }
                    }
                }
                Some(out)
            }
            other => {
                self.error(
                    k,
                    format!("expected a list of strings, got {}", type_name(other)),
                    "write a YAML list, e.g. [\"a.>\", \"b.*\"]",
                );
                None
            }
        }
    }

    pub fn str_list(&mut self, key: &str) -> Option<Vec<String>> {
        let (v, k) = self.raw(key, &[])?;
        self.as_str_list(v, k)
    }

    pub fn object(&mut self, key: &str) -> Option<Fields<'a>> {
        let (v, k) = self.raw(key, &[])?;
        match v {
            Value::Object(o) => Some(Fields::nested(self.resource, self.path(k), o)),
            other => {
                self.error(
                    k,
                    format!("expected a mapping, got {}", type_name(other)),
                    "write a YAML mapping of keys to values",
                );
                None
            }
        }
    }

    /// Reads one table field into its wire value (None when absent or invalid).
    pub fn field(&mut self, spec: &FieldSpec) -> Option<Value> {
        let (v, k) = self.raw(spec.key, spec.aliases)?;
        match spec.kind {
            Kind::Str => self.as_str(v, k).map(Value::String),
            Kind::Int => self.as_int(v, k).map(Value::from),
            Kind::Bool => self.as_bool(v, k).map(Value::Bool),
            Kind::Duration => self.as_duration(v, k).map(Value::from),
            Kind::Enum(allowed) => {
                let s = self.as_str(v, k)?;
                let norm = s.trim().to_ascii_lowercase().replace('-', "_");
                if allowed.contains(&norm.as_str()) {
                    Some(Value::String(norm))
                } else {
                    self.error(
                        k,
                        format!("{s:?} is not one of {}", allowed.join(", ")),
                        format!("use one of: {}", allowed.join(", ")),
                    );
                    None
                }
            }
            Kind::StrList => self.as_str_list(v, k).map(|l| json!(l)),
            Kind::DurationList => {
                let Value::Array(items) = v else {
                    self.error(
                        k,
                        "expected a list of durations",
                        "write a list such as [\"1s\", \"5s\", \"30s\"]",
                    );
                    return None;
                };
                let mut out = Vec::new();
                for item in items {
                    out.push(self.as_duration(item, k)?);
                }
                Some(json!(out))
            }
            Kind::StrMap => match v {
                Value::Object(o) => {
                    let mut out = Json::new();
                    for (mk, mv) in o {
                        let s = self.as_str(mv, &format!("{k}.{mk}"))?;
                        out.insert(mk.clone(), Value::String(s));
                    }
                    Some(Value::Object(out))
                }
                other => {
                    self.error(
                        k,
                        format!("expected a mapping of strings, got {}", type_name(other)),
                        "write key: value pairs",
                    );
                    None
                }
            },
            Kind::Placement => {
                let Value::Object(o) = v else {
                    self.error(
                        k,
                        "expected a mapping with cluster and/or tags",
                        "write placement: {cluster: NAME, tags: [TAG]}",
                    );
                    return None;
                };
                let mut sub = Fields::nested(self.resource, self.path(k), o);
                let mut out = Json::new();
                if let Some(c) = sub.str("cluster").filter(|c| !c.is_empty()) {
                    out.insert("cluster".into(), Value::String(c));
                }
                if let Some(t) = sub.str_list("tags").filter(|t| !t.is_empty()) {
                    out.insert("tags".into(), json!(t));
                }
                if sub.obj.contains_key("preferred") {
                    sub.ignore("preferred");
                    sub.error(
                        "preferred",
                        "the server refuses a preferred server in placement",
                        "remove placement.preferred",
                    );
                }
                let diags = sub.finish(&["cluster", "tags", "preferred"]);
                self.diags.extend(diags);
                Some(Value::Object(out))
            }
            Kind::Json => Some(v.clone()),
        }
    }

    /// Reports every key that no reader consumed, suggesting the nearest known key.
    pub fn finish(mut self, known: &[&str]) -> Vec<FieldDiag> {
        let unknown: Vec<String> = self
            .obj
            .keys()
            .filter(|k| !self.used.contains(&k.as_str()))
            .cloned()
            .collect();
        for key in unknown {
            let fix = match nearest(&key, known.iter().copied().chain(self.used.iter().copied())) {
                Some(near) => format!("did you mean `{near}`? Otherwise remove it"),
                None => "remove it; `eventbus schema` lists the accepted keys".to_string(),
            };
            self.error(&key, "unknown key", fix);
        }
        self.diags
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn nearest<'k>(key: &str, candidates: impl Iterator<Item = &'k str>) -> Option<&'k str> {
    candidates
        .map(|c| (edit_distance(key, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Fills a table's static defaults into a wire config, and normalises what a server
/// reports (zero limits as -1, absent as default) so equal configs compare equal.
pub fn apply_defaults(table: &[FieldSpec], wire: &mut Json) {
    // One map lookup per field in the common case (this runs for every resource of a plan,
    // on the desired config and on the recorded one).
    for f in table {
        match wire.get_mut(f.wire) {
            None => {
                let filled = match f.default {
                    Default::Unlimited => Some(json!(-1)),
                    Default::Int(d) => Some(json!(d)),
                    Default::Str(d) => Some(json!(d)),
                    Default::Bool(d) => Some(json!(d)),
                    Default::None | Default::Derived => None,
                };
                if let Some(v) = filled {
                    wire.insert(f.wire.to_string(), v);
                }
            }
            Some(cur) => {
                let filled = match (f.default, &*cur) {
                    (Default::Unlimited, Value::Number(n))
                        if n.as_i64().is_some_and(|v| v == 0 || v < -1) =>
                    {
                        Some(json!(-1))
                    }
                    (Default::Int(d), Value::Number(n)) if n.as_i64() == Some(0) => Some(json!(d)),
                    (Default::Str(d), Value::String(s)) if s.is_empty() => Some(json!(d)),
                    _ => None,
                };
                if let Some(v) = filled {
                    *cur = v;
                }
                // Empty collections and strings, and zero or false without a default, are absent.
                let none = f.default == Default::None;
                let empty = match &*cur {
                    Value::Array(a) => a.is_empty(),
                    Value::Object(o) => o.is_empty(),
                    Value::String(s) => s.is_empty() && none,
                    Value::Number(n) => none && n.as_f64() == Some(0.0),
                    Value::Bool(b) => none && !b,
                    Value::Null => true,
                };
                if empty {
                    wire.remove(f.wire);
                }
            }
        }
    }
}

/// A wire value rendered for people: durations as "30s", everything else as JSON.
pub fn display_value(kind: Kind, v: &Value) -> Value {
    match (kind, v) {
        (Kind::Duration, Value::Number(n)) => {
            Value::String(duration::format(n.as_i64().unwrap_or(0)))
        }
        (Kind::DurationList, Value::Array(items)) => Value::Array(
            items
                .iter()
                .map(|i| display_value(Kind::Duration, i))
                .collect(),
        ),
        _ => v.clone(),
    }
}

/// JSON Schema for a table, plus the common keys.
pub fn schema(title: &str, table: &[FieldSpec], required: &[&str], extra: Json) -> Value {
    let mut props = Json::new();
    for f in table {
        let s = match f.kind {
            Kind::Str => json!({"type": "string"}),
            Kind::Int => json!({"type": ["integer", "string"]}),
            Kind::Bool => json!({"type": "boolean"}),
            Kind::Duration => {
                json!({"type": "string", "pattern": "^([0-9.]+(ns|us|µs|ms|s|m|h|d))+$|^0$"})
            }
            Kind::Enum(v) => json!({"type": "string", "enum": v}),
            Kind::StrList => json!({"type": "array", "items": {"type": "string"}}),
            Kind::DurationList => json!({"type": "array", "items": {"type": "string"}}),
            Kind::StrMap => json!({"type": "object", "additionalProperties": {"type": "string"}}),
            Kind::Placement => {
                json!({"type": "object", "properties": {"cluster": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}}, "additionalProperties": false})
            }
            Kind::Json => json!({"type": ["object", "array"]}),
        };
        let mut s = s.as_object().cloned().unwrap_or_default();
        s.insert("description".into(), json!(f.doc));
        props.insert(f.key.to_string(), Value::Object(s.clone()));
        for a in f.aliases {
            props.insert(
                a.to_string(),
                json!({"$ref": format!("#/properties/{}", f.key), "deprecated": true}),
            );
        }
    }
    for k in COMMON_KEYS {
        props.entry(k.to_string()).or_insert(match k {
            "depends_on" => json!({"type": "array", "items": {"type": "string"}, "description": "resources applied before this one"}),
            "protected" | "adopt_existing" => json!({"type": "boolean"}),
            _ => json!({"type": "string"}),
        });
    }
    for (k, v) in extra {
        props.insert(k, v);
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": false,
    })
}

/// The keys common to every resource, read off its config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Common {
    pub depends_on: Vec<String>,
    pub protected: bool,
    pub adopt_existing: bool,
}

pub fn read_common(f: &mut Fields) -> Common {
    f.ignore("iac_provider");
    f.ignore("size");
    Common {
        depends_on: f.str_list("depends_on").unwrap_or_default(),
        protected: f.bool("protected").unwrap_or(false),
        adopt_existing: f.bool("adopt_existing").unwrap_or(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_reported_with_the_nearest_known_key() {
        // A typo must name the field and suggest the intended one.
        let obj: Json = serde_json::from_str(r#"{"max_delivr": 5}"#).unwrap();
        let f = Fields::new("orders", &obj);
        let diags = f.finish(&["max_deliver", "ack_wait"]);
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].path, "config.max_delivr");
        assert!(diags[0].fix.contains("max_deliver"), "{:?}", diags[0]);
    }

    #[test]
    fn numbers_and_booleans_coerce_from_strings() {
        // wfctl users write `max_deliver: "5"` after ${ENV} expansion; it must still be a number.
        let obj: Json = serde_json::from_str(r#"{"n": "5", "b": "true"}"#).unwrap();
        let mut f = Fields::new("r", &obj);
        let n = f.field(&FieldSpec::new("n", "n", Kind::Int, Default::None, ""));
        assert_eq!(n, Some(json!(5)));
        assert_eq!(f.bool("b"), Some(true));
        assert!(f.diags.is_empty());
    }

    #[test]
    fn defaults_normalise_zero_limits_to_unlimited() {
        // nats-server stores 0 limits as -1; both must compare equal after normalisation.
        let table = [FieldSpec::new(
            "max_msgs",
            "max_msgs",
            Kind::Int,
            Default::Unlimited,
            "",
        )];
        let mut a: Json = serde_json::from_str(r#"{"max_msgs": 0}"#).unwrap();
        let mut b = Json::new();
        apply_defaults(&table, &mut a);
        apply_defaults(&table, &mut b);
        assert_eq!(a, b);
        assert_eq!(a["max_msgs"], json!(-1));
    }
}
