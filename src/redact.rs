//! Keeping secrets out of every text that leaves the process: error messages, log lines,
//! config snippets, `check` output.
//!
//! A secret can reach a text in several spellings: as it is, URL-encoded (a token
//! endpoint that echoes the form it got), JSON-escaped (a JSON error that quotes it), or
//! as it was typed in the config file (a TOML error shows the offending line). Every
//! spelling is replaced by `[redacted]`. It owns the spellings and the config-line
//! scan; it never decides what is secret beyond the key names below.

/// What a secret is replaced by.
pub const REDACTED: &str = "[redacted]";

/// The spellings of `secret` that a text may carry: raw, URL-encoded (form and path
/// style), JSON-escaped, and TOML basic-string escaped. Empty for an empty secret.
pub fn spellings(secret: &str) -> Vec<String> {
    if secret.is_empty() {
        return Vec::new();
    }
    let mut out = vec![secret.to_string()];
    let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    out.push(form.clone());
    out.push(form.replace('+', "%20"));
    let json = serde_json::to_string(secret).unwrap_or_default();
    out.push(json.trim_matches('"').to_string());
    out.push(secret.replace('\\', "\\\\").replace('"', "\\\""));
    out.sort();
    out.dedup();
    // Longest first, so a spelling that contains another is replaced whole.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out
}

/// `text` with every spelling of every secret replaced by [`REDACTED`].
pub fn scrub<'a>(text: &str, secrets: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = text.to_string();
    for secret in secrets {
        for spelling in spellings(secret) {
            if out.contains(&spelling) {
                out = out.replace(&spelling, REDACTED);
            }
        }
    }
    out
}

/// Whether a config key holds a secret (`client_secret`, `smtp_password`, …).
pub fn is_secret_key(key: &str) -> bool {
    let k = key
        .trim()
        .trim_matches('"')
        .trim_matches('\'')
        .to_ascii_lowercase();
    (k.ends_with("secret") || k.ends_with("password") || k.ends_with("token"))
        && !k.ends_with("_env")
        && !k.ends_with("_file")
}

/// The values written after secret keys in a config text, as typed (possibly malformed:
/// a missing quote, a bad escape, a number), in every form a parser's error might quote:
/// the rest of the line, without quotes, and the inner text.
pub fn secrets_in_config(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let mut rest = line;
        while let Some(eq) = rest.find('=') {
            let key = rest[..eq]
                .rsplit(|c: char| c == '{' || c == ',' || c.is_whitespace())
                .find(|s| !s.is_empty())
                .unwrap_or("");
            let value = rest[eq + 1..].trim();
            if is_secret_key(key) && !value.is_empty() {
                let value = value.split(" #").next().unwrap_or(value).trim();
                let value = value.trim_end_matches(['}', ',']).trim();
                found.push(value.to_string());
                let inner = value.trim_matches('"').trim_matches('\'');
                if !inner.is_empty() {
                    found.push(inner.to_string());
                }
            }
            rest = &rest[eq + 1..];
        }
    }
    found.retain(|s| s.chars().count() >= 3);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_is_scrubbed() {
        let secret = "p@ss w/rd+\"ü\\";
        let texts = [
            format!("raw {secret} end"),
            "form client_secret=p%40ss+w%2Frd%2B%22%C3%BC%5C end".to_string(),
            "path p%40ss%20w%2Frd%2B%22%C3%BC%5C end".to_string(),
            format!("json {} end", serde_json::to_string(secret).unwrap()),
        ];
        for t in texts {
            let s = scrub(&t, [secret]);
            assert!(s.contains(REDACTED) && s.ends_with(" end"), "{t} -> {s}");
            assert!(!s.contains("w/rd") && !s.contains("w%2Frd"), "{s}");
        }
    }

    #[test]
    fn config_secrets_are_found_even_when_malformed() {
        let text = "[cm]\nclient_id = \"merchant\"\nclient_secret = \"S3cr3t\\q-value\nsecret_file_x = 1\n\
                    [email]\nsmtp_password = 987654321 # digits\nsmtp_password_env = \"SMTP_PW\"\n\
                    x = { client_secret = \"inline-secret\" }\n";
        let found = secrets_in_config(text);
        assert!(
            found.iter().any(|s| s.contains("S3cr3t\\q-value")),
            "{found:?}"
        );
        assert!(found.iter().any(|s| s == "987654321"), "{found:?}");
        assert!(found.iter().any(|s| s == "inline-secret"), "{found:?}");
        assert!(!found.iter().any(|s| s.contains("SMTP_PW")), "{found:?}");
        assert!(!found.iter().any(|s| s.contains("merchant")), "{found:?}");
    }
}
