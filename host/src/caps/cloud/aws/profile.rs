//! The shared AWS files: `~/.aws/credentials` (`[NAME]` sections) and `~/.aws/config`
//! (`[default]` and `[profile NAME]` sections), as the AWS CLI and SDKs read them. Where both
//! set a key for one profile, the credentials file wins.

use super::credentials::Env;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One profile's settings, keys lower-cased.
pub type Profile = BTreeMap<String, String>;

/// The two files' paths: `AWS_SHARED_CREDENTIALS_FILE` and `AWS_CONFIG_FILE`, else under
/// `$HOME/.aws/`. `~/` at the start of either is the home directory.
pub fn paths(env: &Env) -> (Option<PathBuf>, Option<PathBuf>) {
    let home = env.get("HOME");
    let path = |var: &str, default: &str| -> Option<PathBuf> {
        match env.get(var) {
            Some(p) => match (p.strip_prefix("~/"), &home) {
                (Some(rest), Some(h)) => Some(PathBuf::from(h).join(rest)),
                _ => Some(PathBuf::from(p)),
            },
            None => home.as_ref().map(|h| PathBuf::from(h).join(default)),
        }
    };
    (
        path("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"),
        path("AWS_CONFIG_FILE", ".aws/config"),
    )
}

/// The profile `name` from the two files, or None when neither has it.
pub fn load(env: &Env, name: &str) -> Result<Option<Profile>, String> {
    let (credentials, config) = paths(env);
    let mut found = None::<Profile>;
    for (path, is_config) in [(config, true), (credentials, false)] {
        let Some(path) = path else { continue };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        if let Some(p) = section(&text, name, is_config) {
            found.get_or_insert_with(Profile::new).extend(p);
        }
    }
    Ok(found)
}

/// The keys of one section of an INI file: `[name]`, or in the config file `[profile name]`
/// (`[default]` as is). Comments (`#`, `;`) and indented sub-settings are skipped.
fn section(text: &str, name: &str, is_config: bool) -> Option<Profile> {
    let mut out: Option<Profile> = None;
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(head) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let head = head.trim();
            let this = if is_config && name != "default" {
                head.strip_prefix("profile")
                    .filter(|r| r.starts_with([' ', '\t']))
                    .map(str::trim)
            } else {
                Some(head)
            };
            inside = this == Some(name);
            if inside {
                out.get_or_insert_with(Profile::new);
            }
            continue;
        }
        if inside && let Some((k, v)) = line.split_once('=') {
            out.get_or_insert_with(Profile::new)
                .insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_read_as_the_aws_cli_names_them() {
        // The config file prefixes named profiles with "profile", the credentials file does
        // not; comments and nested settings are skipped.
        let config =
            "[default]\nregion = eu-west-1\n[profile ci]\nrole_arn = arn:x\n  nested = 1\n# c\n";
        assert_eq!(section(config, "ci", true).unwrap()["role_arn"], "arn:x");
        assert!(!section(config, "ci", true).unwrap().contains_key("nested"));
        assert_eq!(
            section(config, "default", true).unwrap()["region"],
            "eu-west-1"
        );
        let creds = "[ci]\naws_access_key_id=AKIA1\nAWS_Secret_Access_Key = s=1\n";
        let ci = section(creds, "ci", false).unwrap();
        assert_eq!(ci["aws_access_key_id"], "AKIA1");
        assert_eq!(ci["aws_secret_access_key"], "s=1");
        assert!(section(creds, "ci", true).is_none());
        assert!(section(creds, "other", false).is_none());
    }
}
