//! A role's temporary keys for a web identity token (EKS service accounts, CI OIDC tokens):
//! STS AssumeRoleWithWebIdentity, which AWS takes unsigned (the token is the proof). The token
//! file is read again at every renewal, since whoever writes it rotates it.

use super::credentials::{Env, Keys};
use crate::caps::secrets::SecretStore;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct WebIdentity {
    pub token_file: String,
    pub role_arn: String,
    pub session_name: String,
    /// STS's endpoint: `AWS_ENDPOINT_URL_STS`, else `AWS_ENDPOINT_URL`, else the region's.
    pub sts_url: String,
}

impl WebIdentity {
    pub fn new(
        token_file: String,
        role_arn: String,
        session_name: Option<String>,
        region: &str,
        env: &Env,
    ) -> Result<WebIdentity, String> {
        let sts_url = env
            .get("AWS_ENDPOINT_URL_STS")
            .or_else(|| env.get("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"))
            .trim_end_matches('/')
            .to_string();
        if !super::secure_url(&sts_url) {
            return Err(format!(
                "the STS endpoint {sts_url} is not https:// (plain http only to a loopback address)"
            ));
        }
        let session_name = session_name.unwrap_or_else(|| {
            let secs = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            format!("eventbus-{secs}")
        });
        Ok(WebIdentity {
            token_file,
            role_arn,
            session_name,
            sts_url,
        })
    }

    /// Exchanges the token for the role's keys.
    pub async fn assume(
        &self,
        client: &reqwest::Client,
        secrets: &SecretStore,
        account: &str,
    ) -> Result<Keys, String> {
        let token = std::fs::read_to_string(&self.token_file).map_err(|e| {
            format!(
                "cannot read the web identity token {}: {e}",
                self.token_file
            )
        })?;
        let token = token.trim().to_string();
        secrets.remember(
            &format!("cloud/{account}/web_identity_token"),
            token.clone(),
        );
        let body = [
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", self.role_arn.as_str()),
            ("RoleSessionName", self.session_name.as_str()),
            ("WebIdentityToken", token.as_str()),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}", form_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
        let resp = client
            .post(format!("{}/", self.sts_url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                secrets.redact(&format!(
                    "STS AssumeRoleWithWebIdentity at {}: {e}",
                    self.sts_url
                ))
            })?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| format!("STS AssumeRoleWithWebIdentity: reading the answer: {e}"))?;
        if status != 200 {
            return Err(secrets.redact(&format!(
                "STS refused AssumeRoleWithWebIdentity for {} (HTTP {status}: {}: {})",
                self.role_arn,
                tag(&text, "Code").unwrap_or("no error code"),
                tag(&text, "Message").unwrap_or(""),
            )));
        }
        let need = |t: &str| {
            tag(&text, t)
                .map(String::from)
                .ok_or_else(|| format!("STS answered AssumeRoleWithWebIdentity without {t}"))
        };
        Ok(Keys {
            access_key_id: need("AccessKeyId")?,
            secret_access_key: need("SecretAccessKey")?,
            session_token: Some(need("SessionToken")?),
            // Without a readable expiry, the keys are asked for again in 15 minutes (the
            // shortest duration STS issues).
            expires: Some(
                tag(&text, "Expiration")
                    .and_then(parse_time)
                    .unwrap_or_else(|| SystemTime::now() + Duration::from_secs(900)),
            ),
        })
    }
}

/// The text of the first `<name>...</name>` in an XML answer (STS's answers are flat enough).
fn tag<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(xml[start..end].trim())
}

/// `application/x-www-form-urlencoded`: unreserved characters as they are, the rest %XX.
fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `2026-12-02T15:04:05Z` (fractions of a second allowed) as a time.
fn parse_time(s: &str) -> Option<SystemTime> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec = t.next()?.split('.').next()?.parse::<i64>().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + min * 60 + sec;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sts_expiry_times_are_read_as_utc() {
        // 2026-12-02T15:04:05Z is 1796223845 seconds after the epoch.
        let t = parse_time("2026-12-02T15:04:05Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_796_223_845
        );
        assert_eq!(parse_time("1970-01-01T00:00:00.123Z").unwrap(), UNIX_EPOCH);
        assert!(parse_time("tomorrow").is_none());
    }

    #[test]
    fn form_values_are_percent_encoded() {
        // A token's '+', '/' and '=' must survive the form body.
        assert_eq!(form_encode("a+b/c=d e"), "a%2Bb%2Fc%3Dd%20e");
        assert_eq!(tag("<A><B> x </B></A>", "B"), Some("x"));
    }
}
