//! `[merchant]` and `[reconciliation]`: who asks for the money, and the account the
//! camt.053 statements describe.

use serde::Deserialize;

/// `[merchant]`: the identity every mail shows, so that a customer can see who asks for
/// the money and how else to reach or pay them. Every key is optional; the name falls
/// back to the display name of `email.from`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Merchant {
    /// The company name.
    pub name: Option<String>,
    /// The postal address, on one line.
    pub address: Option<String>,
    /// The Chamber of Commerce (KvK) number: eight digits.
    pub kvk: Option<String>,
    /// A phone number.
    pub phone: Option<String>,
    /// The website (`https://…`).
    pub website: Option<String>,
    /// The account a customer may transfer to instead of paying by link.
    pub iban: Option<String>,
}

impl Merchant {
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        let fields = [
            ("merchant.name", &self.name),
            ("merchant.address", &self.address),
            ("merchant.kvk", &self.kvk),
            ("merchant.phone", &self.phone),
            ("merchant.website", &self.website),
            ("merchant.iban", &self.iban),
        ];
        for (key, value) in fields {
            if value.as_deref().is_some_and(|v| v.contains(['\r', '\n'])) {
                return Err((key, "must be on one line".into()));
            }
        }
        if let Some(kvk) = &self.kvk
            && !(kvk.trim().len() == 8 && kvk.trim().bytes().all(|b| b.is_ascii_digit()))
        {
            return Err((
                "merchant.kvk",
                format!("{kvk:?} is not a KvK number (eight digits)"),
            ));
        }
        if let Some(w) = &self.website
            && !(w.starts_with("https://") || w.starts_with("http://"))
        {
            return Err((
                "merchant.website",
                format!("{w:?} must start with https://"),
            ));
        }
        if let Some(iban) = &self.iban
            && !iban_is_valid(iban)
        {
            return Err((
                "merchant.iban",
                format!("{iban:?} is not a valid IBAN (its check digits do not match)"),
            ));
        }
        Ok(())
    }
}

/// An IBAN's form and its ISO 13616 check digits (mod 97); spaces are allowed.
pub(super) fn iban_is_valid(iban: &str) -> bool {
    let compact: Vec<u8> = iban
        .bytes()
        .filter(|b| *b != b' ')
        .map(|b| b.to_ascii_uppercase())
        .collect();
    if !(15..=34).contains(&compact.len())
        || !compact[..2].iter().all(u8::is_ascii_uppercase)
        || !compact[2..4].iter().all(u8::is_ascii_digit)
        || !compact.iter().all(u8::is_ascii_alphanumeric)
    {
        return false;
    }
    let rotated = compact[4..].iter().chain(&compact[..4]);
    let mut rem: u32 = 0;
    for &b in rotated {
        let v = if b.is_ascii_digit() {
            u32::from(b - b'0')
        } else {
            u32::from(b - b'A') + 10
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// `[reconciliation]`: the (clearing) account the camt.053 statements of `export-paid
/// --format camt053` describe.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Reconciliation {
    /// The account's IBAN (required for camt.053).
    pub account_iban: Option<String>,
    /// The account's name.
    pub account_name: Option<String>,
}

impl Reconciliation {
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        if let Some(iban) = &self.account_iban
            && !iban_is_valid(iban)
        {
            return Err((
                "reconciliation.account_iban",
                format!("{iban:?} is not a valid IBAN (its check digits do not match)"),
            ));
        }
        if let Some(name) = &self.account_name
            && name.contains(['\r', '\n'])
        {
            return Err(("reconciliation.account_name", "must be on one line".into()));
        }
        Ok(())
    }

    /// The IBAN as a statement writes it: without spaces, upper case.
    pub fn iban(&self) -> Option<String> {
        self.account_iban.as_deref().map(|i| {
            i.chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>()
                .to_ascii_uppercase()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ibans_are_checked_by_their_check_digits() {
        assert!(iban_is_valid("NL91ABNA0417164300"));
        assert!(iban_is_valid("NL91 ABNA 0417 1643 00"));
        assert!(iban_is_valid("DE89370400440532013000"));
        assert!(!iban_is_valid("NL92ABNA0417164300"));
        assert!(!iban_is_valid("NL91ABNA04171643"));
        assert!(!iban_is_valid("not an iban at all"));
    }
}
