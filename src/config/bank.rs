//! `[bank]`: the merchant's own bank statements (README, *Bank transfers*).

use std::path::PathBuf;

use serde::Deserialize;

/// `[bank]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Bank {
    /// Whether the cycle reads the bank inbox (`bank import` reads it either way).
    pub enabled: bool,
    /// Where statement files (camt.052/053/054, MT940) land.
    pub inbox: PathBuf,
    /// Statements read, as `<stem>.<UTC timestamp>.<ext>`.
    pub archive_dir: PathBuf,
    /// Statements set aside, each with a `.reason.txt`.
    pub rejected_dir: PathBuf,
    /// The receiving accounts, normalised (upper case, no spaces); a statement of any
    /// other account is set aside.
    #[serde(deserialize_with = "accounts")]
    pub accounts: Vec<String>,
    /// List likely matches (amount and name) for the operator; never applied.
    pub suggest: bool,
}

impl Default for Bank {
    fn default() -> Self {
        Self {
            enabled: false,
            inbox: "/var/lib/invoice-sync/bank".into(),
            archive_dir: "/var/lib/invoice-sync/bank-archive".into(),
            rejected_dir: "/var/lib/invoice-sync/bank-rejected".into(),
            accounts: Vec::new(),
            suggest: true,
        }
    }
}

impl Bank {
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.enabled && self.accounts.is_empty() {
            return Err((
                "bank.accounts",
                "must name at least one receiving account when bank.enabled = true".into(),
            ));
        }
        Ok(())
    }

    /// Whether `account` (as a reader gives it: normalised) is one of `bank.accounts`.
    pub fn knows(&self, account: &str) -> bool {
        self.accounts.iter().any(|a| a == account)
    }
}

/// An account as statements write it: without spaces, upper case.
pub fn normalise_account(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase()
}

/// `bank.accounts`: each normalised; one that looks like an IBAN (two letters, two
/// digits) must have correct check digits, others (a bank's own account id) are taken
/// as written.
fn accounts<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let raw = Vec::<String>::deserialize(d)?;
    raw.iter()
        .map(|a| {
            let n = normalise_account(a);
            let iban_shaped = n.len() > 4
                && n.as_bytes()[..2].iter().all(u8::is_ascii_alphabetic)
                && n.as_bytes()[2..4].iter().all(u8::is_ascii_digit);
            if n.is_empty() {
                Err(serde::de::Error::custom("an account must not be empty"))
            } else if iban_shaped && !super::merchant::iban_is_valid(&n) {
                Err(serde::de::Error::custom(format!(
                    "{a:?} is not a valid IBAN (its check digits do not match)"
                )))
            } else {
                Ok(n)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    #[test]
    fn accounts_are_normalised_and_checked() {
        let c = Config::from_toml(
            "[bank]\nenabled = true\naccounts = [\"nl91 abna 0417 1643 00\", \"LT-SETTLEMENT-1\"]\n",
            Path::new("/x/c.toml"),
        )
        .unwrap();
        assert_eq!(c.bank.accounts, ["NL91ABNA0417164300", "LT-SETTLEMENT-1"]);
        assert!(c.bank.knows("NL91ABNA0417164300"));
        assert_eq!(c.bank.inbox, Path::new("/var/lib/invoice-sync/bank"));
        let e = Config::from_toml(
            "[bank]\naccounts = [\"NL92ABNA0417164300\"]\n",
            Path::new("/x/c.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("bank.accounts") && e.contains("check digits"),
            "{e}"
        );
        let e = Config::from_toml("[bank]\nenabled = true\n", Path::new("/x/c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bank.accounts"), "{e}");
    }
}
