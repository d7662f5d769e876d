//! What one cloud account allows: methods and path prefixes, and for an AWS account the
//! operations (`X-Amz-Target`) too. Paths that a server could normalise out of a granted
//! prefix are refused before any grant is asked.

/// Methods, path prefixes and (AWS) operations one grant allows.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub methods: Vec<String>,
    pub paths: Vec<String>,
    /// `X-Amz-Target` values (`Kinesis_20131202.CreateStream`). Empty: requests without one.
    pub targets: Vec<String>,
}

impl Grant {
    /// A request's method and path are granted, and its operation (`target`, the
    /// `X-Amz-Target` header) is one the grant lists; a grant listing none allows only
    /// requests that name no operation.
    pub fn allows(&self, method: &str, path: &str, target: Option<&str>) -> bool {
        self.methods
            .iter()
            .any(|m| m.eq_ignore_ascii_case(method) || m == "*")
            && self.paths.iter().any(|p| path_under(path, p))
            && match target {
                None => self.targets.is_empty(),
                Some(t) => self.targets.iter().any(|g| g == t),
            }
    }
}

/// `path` is `prefix` or below it (on a segment boundary).
fn path_under(path: &str, prefix: &str) -> bool {
    if prefix.ends_with('/') {
        return path.starts_with(prefix) || path == prefix.trim_end_matches('/');
    }
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// An `X-Amz-Target` as AWS writes them: `Service_Version.Operation`, letters, digits and `_`.
pub fn valid_target(t: &str) -> bool {
    let word = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    t.split_once('.').is_some_and(|(s, op)| word(s) && word(op))
}

/// Refuses paths that could climb out of a granted prefix once a server normalises them.
pub fn check_path(path: &str) -> Result<(), String> {
    let lower = path.to_ascii_lowercase();
    if !path.starts_with('/') {
        return Err("must start with /".into());
    }
    if path.contains("//")
        || path.contains('\\')
        || path.chars().any(|c| c.is_control() || c.is_whitespace())
        || lower.contains("%2e")
        || lower.contains("%2f")
        || lower.contains("%5c")
    {
        return Err(
            "contains an empty segment, a backslash, whitespace or an encoded dot or slash".into(),
        );
    }
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return Err("contains . or .. segments".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(targets: &[&str]) -> Grant {
        Grant {
            methods: vec!["GET".into(), "POST".into()],
            paths: vec!["/v2/apps".into()],
            targets: targets.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn grants_match_on_segment_boundaries() {
        // /v2/apps covers /v2/apps/123 but not /v2/appsX or /v2/other.
        let g = grant(&[]);
        assert!(g.allows("GET", "/v2/apps", None));
        assert!(g.allows("post", "/v2/apps/123/deployments", None));
        assert!(!g.allows("GET", "/v2/appsX", None));
        assert!(!g.allows("DELETE", "/v2/apps/123", None));
        assert!(!g.allows("GET", "/v2/droplets", None));
    }

    #[test]
    fn an_operation_is_allowed_only_by_a_grant_that_lists_it() {
        // A grant without targets does not cover a request naming an operation, and one with
        // targets covers exactly those (no prefix or case games).
        let plain = grant(&[]);
        assert!(!plain.allows("POST", "/v2/apps", Some("Kinesis_20131202.ListStreams")));
        let ops = grant(&["Kinesis_20131202.ListStreams"]);
        assert!(ops.allows("POST", "/v2/apps", Some("Kinesis_20131202.ListStreams")));
        assert!(!ops.allows("POST", "/v2/apps", Some("Kinesis_20131202.ListStreamsX")));
        assert!(!ops.allows("POST", "/v2/apps", Some("kinesis_20131202.liststreams")));
        assert!(!ops.allows("POST", "/v2/apps", None));
    }

    #[test]
    fn targets_are_service_dot_operation() {
        // Anything else (spaces, two dots, empty parts) cannot name an AWS operation.
        assert!(valid_target("Kinesis_20131202.CreateStream"));
        for bad in [
            "Kinesis_20131202",
            ".CreateStream",
            "Kinesis_20131202.",
            "Kinesis_20131202.Create Stream",
            "a.b.c",
            "Kinesis_20131202.*",
        ] {
            assert!(!valid_target(bad), "{bad}");
        }
    }

    #[test]
    fn paths_that_could_climb_out_are_refused() {
        // Dot segments and encoded separators would escape a prefix after normalisation.
        for bad in [
            "/v2/apps/../droplets",
            "/v2/apps/%2e%2e/x",
            "/v2/apps/%2F..",
            "/v2//apps",
            "v2/apps",
            "/v2/apps/./x",
            "/v2/apps\\..\\x",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
        assert!(check_path("/api/v1/namespaces/eventbus/services/nats").is_ok());
    }
}
