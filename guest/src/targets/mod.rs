//! Deploy targets: where a broker runs and what endpoint it yields. Adding one is a file
//! here and a line in `drivers.rs`.

pub mod digitalocean;
pub mod kubernetes;
pub mod self_hosted;

use crate::bindings::eventbus::iac::capability_types::CapError;
use crate::bindings::eventbus::iac::cloud::{self, Request, Response};
use crate::error::{Error, Result};
use crate::model::{Json, Output};
use serde_json::Value;
use std::time::Duration;

/// The identity a broker's last apply or read recorded (`outputs.identity`), which every
/// target's diff compares the desired one with; empty when none was recorded.
pub fn recorded_identity(current: &Output) -> Json {
    current
        .outputs
        .get("identity")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// How a target retries one cloud API call.
pub struct Retry {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The first wait; it doubles after every attempt up to `max`.
    pub first: Duration,
    pub max: Duration,
    /// The longest `Retry-After` honoured.
    pub max_after: Duration,
}

/// One cloud API call to `account`, retried with exponential backoff while it is rate
/// limited (429, honouring `Retry-After`), failing on the platform's side (5xx) or
/// unreachable; when that persists, the last failure as wfctl's rate-limited or transient
/// sentinel, saying how many attempts were made. A call outside the grant, to an account the
/// operator did not configure, or refused as malformed by the host fails at once. Any other
/// answer, successful or not, is the target's to interpret. `what` names the call in errors
/// and logs, and `describe` turns a failed answer into its platform's message.
pub fn call_with_retry(
    account: &str,
    req: &Request,
    what: &str,
    policy: &Retry,
    describe: impl Fn(&Response) -> String,
) -> Result<Response> {
    let mut delay = policy.first;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (wait, why) = match cloud::call(account, req) {
            Err(CapError::Denied(m)) => return Err(Error::Forbidden(format!("{what}: {m}"))),
            Err(CapError::Unknown(m)) => {
                return Err(Error::Forbidden(format!(
                    "{what}: {m} (the account is not configured under cloud_accounts in the iac.provider module)"
                )));
            }
            Err(CapError::Invalid(m)) => return Err(Error::Internal(format!("{what}: {m}"))),
            Err(CapError::Unavailable(m)) => (delay, Error::Transient(format!("{what}: {m}"))),
            Ok(resp) if resp.status == 429 || (500..=599).contains(&resp.status) => {
                let after = header(&resp.headers, "retry-after")
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .map(|s| Duration::from_secs(s).min(policy.max_after));
                let msg = format!("{what}: {} {}", resp.status, describe(&resp));
                if resp.status == 429 {
                    (after.unwrap_or(delay), Error::RateLimited(msg))
                } else {
                    (after.unwrap_or(delay), Error::Transient(msg))
                }
            }
            Ok(resp) => return Ok(resp),
        };
        if attempt >= policy.attempts {
            let tried = format!(" (gave up after {attempt} attempts)");
            return Err(match why {
                Error::RateLimited(m) => Error::RateLimited(m + &tried),
                Error::Transient(m) => Error::Transient(m + &tried),
                other => other,
            });
        }
        crate::log::info(
            "retrying a cloud API call",
            &[
                ("call", what),
                ("attempt", &attempt.to_string()),
                ("wait_ms", &wait.as_millis().to_string()),
                ("reason", &why.to_string()),
            ],
        );
        std::thread::sleep(wait);
        delay = (delay * 2).min(policy.max);
    }
}

/// A response header's value, the name compared case-insensitively.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}
