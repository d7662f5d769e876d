//! Where a Kafka cluster is and how to reach it: bootstrap servers, TLS, SASL with credential
//! handles. Read from a broker's outputs, its provider id, or the plugin's saved brokers;
//! `host:port` keys for grants, parsed strictly (what is checked is what is dialled).

use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    pub fn parse(s: &str) -> Option<Mechanism> {
        match s.to_ascii_uppercase().as_str() {
            "PLAIN" => Some(Mechanism::Plain),
            "SCRAM-SHA-256" => Some(Mechanism::ScramSha256),
            "SCRAM-SHA-512" => Some(Mechanism::ScramSha512),
            _ => None,
        }
    }
}

/// SASL credentials: the user (a name, or a secret handle) and the password's secret handle.
/// Both empty when the broker was learned from a provider id, which names the mechanism only.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SaslSpec {
    pub mechanism: Mechanism,
    pub user: String,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KafkaEndpoint {
    pub bootstrap: Vec<String>,
    pub tls: bool,
    pub sasl: Option<SaslSpec>,
}

impl KafkaEndpoint {
    /// Kafka's `security.protocol` name for this endpoint.
    pub fn security_protocol(&self) -> &'static str {
        match (self.tls, self.sasl.is_some()) {
            (false, false) => "PLAINTEXT",
            (true, false) => "SSL",
            (false, true) => "SASL_PLAINTEXT",
            (true, true) => "SASL_SSL",
        }
    }

    /// A broker's outputs (`bootstrap_servers`, `security_protocol`, `sasl: {mechanism, user,
    /// password}`), as the component reports them and the plugin saves them.
    pub fn from_json(v: &Value) -> Option<KafkaEndpoint> {
        let bootstrap = server_list(v.get("bootstrap_servers"));
        if bootstrap.is_empty() {
            return None;
        }
        let protocol = v
            .get("security_protocol")
            .and_then(Value::as_str)
            .unwrap_or("PLAINTEXT")
            .to_ascii_uppercase();
        let (tls, wants_sasl) = security(&protocol)?;
        let sasl = v.get("sasl").filter(|s| s.is_object()).and_then(|s| {
            let text = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            Some(SaslSpec {
                mechanism: Mechanism::parse(&text("mechanism"))?,
                user: text("user"),
                password: text("password"),
            })
        });
        if wants_sasl != sasl.is_some() {
            return None;
        }
        Some(KafkaEndpoint {
            bootstrap,
            tls,
            sasl,
        })
    }

    /// The inverse of [`KafkaEndpoint::from_json`], with `"bus": "kafka"`.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "bus": "kafka",
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol(),
        });
        if let Some(s) = &self.sasl {
            v["sasl"] =
                json!({"mechanism": s.mechanism.name(), "user": s.user, "password": s.password});
        }
        v
    }

    /// A provider id `kafka/<name>?bootstrap=h:p,h:p&security=PROTOCOL[&sasl=MECHANISM]`.
    pub fn from_id(provider_id: &str) -> Option<KafkaEndpoint> {
        let (_, query) = provider_id.strip_prefix("kafka/")?.split_once('?')?;
        let (mut bootstrap, mut protocol, mut mechanism) = (vec![], "PLAINTEXT".to_string(), None);
        for part in query.split('&') {
            match part.split_once('=') {
                Some(("bootstrap", v)) => bootstrap = server_list(Some(&json!(v))),
                Some(("security", v)) => protocol = v.to_ascii_uppercase(),
                Some(("sasl", v)) => mechanism = Some(Mechanism::parse(v)?),
                _ => {}
            }
        }
        let (tls, wants_sasl) = security(&protocol)?;
        if bootstrap.is_empty() || wants_sasl != mechanism.is_some() {
            return None;
        }
        Some(KafkaEndpoint {
            bootstrap,
            tls,
            sasl: mechanism.map(|mechanism| SaslSpec {
                mechanism,
                user: String::new(),
                password: String::new(),
            }),
        })
    }
}

/// (TLS, SASL) for a `security_protocol`.
fn security(protocol: &str) -> Option<(bool, bool)> {
    match protocol {
        "PLAINTEXT" => Some((false, false)),
        "SSL" => Some((true, false)),
        "SASL_PLAINTEXT" => Some((false, true)),
        "SASL_SSL" => Some((true, true)),
        _ => None,
    }
}

/// Servers as a list, or as one comma-separated string (`"h:p,h:p"`).
pub fn server_list(v: Option<&Value>) -> Vec<String> {
    let split = |s: &str| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    match v {
        Some(Value::String(s)) => split(s),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).flat_map(split).collect(),
        _ => vec![],
    }
}

/// `host:port` as dialled: a DNS name or IPv4 address (letters, digits, `.`, `-`, `_`) or a
/// bracketed IPv6 address, lowercased, and a port (9092 when none is given). Anything else
/// (user info, paths, schemes, spaces) is not a Kafka server address.
pub fn parse_server(s: &str) -> Option<(String, u16)> {
    let s = s.trim();
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        if h.is_empty()
            || !h
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return None;
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (format!("[{}]", h.to_ascii_lowercase()), port)
    } else {
        let (h, port) = match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
        if h.is_empty() || !h.chars().all(ok) || h.starts_with(['.', '-']) {
            return None;
        }
        (h.to_ascii_lowercase(), port)
    };
    let port = match port {
        None => 9092,
        Some(p) if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => p.parse().ok()?,
        Some(_) => return None,
    };
    (port != 0).then_some((host, port))
}

/// The grant key of a server address (`host:port`), or None if it is not one.
pub fn grant_key(s: &str) -> Option<String> {
    parse_server(s).map(|(h, p)| format!("{h}:{p}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_are_parsed_strictly() {
        assert_eq!(
            grant_key("Kafka-1.example.com:9093").unwrap(),
            "kafka-1.example.com:9093"
        );
        assert_eq!(grant_key("127.0.0.1").unwrap(), "127.0.0.1:9092");
        assert_eq!(grant_key("[::1]:19092").unwrap(), "[::1]:19092");
        for bad in [
            "",
            "h:",
            "h:x",
            "h:0",
            "h:99999",
            "user@h:9092",
            "h/x:9092",
            "PLAINTEXT://h:9092",
            "h 1:9092",
            "[::1",
            "[evil.com]:1",
            "-h:1",
        ] {
            assert!(grant_key(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn outputs_ids_and_saved_forms_round_trip() {
        let out = json!({"bus": "kafka", "bootstrap_servers": "a:9092, b:9093",
            "security_protocol": "sasl_ssl",
            "sasl": {"mechanism": "SCRAM-SHA-512", "user": "admin", "password": "{{secret:k/credentials.password}}"},
            "cluster_id": "x"});
        let e = KafkaEndpoint::from_json(&out).unwrap();
        assert_eq!(e.bootstrap, vec!["a:9092", "b:9093"]);
        assert!(e.tls);
        assert_eq!(e.sasl.as_ref().unwrap().mechanism, Mechanism::ScramSha512);
        assert_eq!(KafkaEndpoint::from_json(&e.to_json()).unwrap(), e);
        // SASL named by the protocol but missing (or the reverse) is not an endpoint.
        assert!(
            KafkaEndpoint::from_json(
                &json!({"bootstrap_servers": ["a:1"], "security_protocol": "SASL_PLAINTEXT"})
            )
            .is_none()
        );
        assert!(
            KafkaEndpoint::from_json(
                &json!({"bootstrap_servers": ["a:1"], "security_protocol": "TLS"})
            )
            .is_none()
        );

        let id = KafkaEndpoint::from_id(
            "kafka/k?bootstrap=a:9092,b:9093&security=SASL_PLAINTEXT&sasl=SCRAM-SHA-256",
        )
        .unwrap();
        assert_eq!(id.bootstrap.len(), 2);
        assert!(!id.tls);
        assert_eq!(id.sasl.unwrap().mechanism, Mechanism::ScramSha256);
        assert!(
            KafkaEndpoint::from_id("kafka/k?bootstrap=a:9092")
                .unwrap()
                .sasl
                .is_none()
        );
        for bad in [
            "self_hosted/k?urls=nats://a:4222",
            "kafka/k",
            "kafka/k?security=PLAINTEXT",
            "kafka/k?bootstrap=a:1&security=SASL_SSL",
            "kafka/k?bootstrap=a:1&sasl=GSSAPI",
        ] {
            assert!(KafkaEndpoint::from_id(bad).is_none(), "{bad}");
        }
    }
}
