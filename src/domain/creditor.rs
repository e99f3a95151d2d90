//! ISO 11649 structured creditor references (`RF` + two check digits + up to 21 letters
//! and digits): the reference a customer quotes when paying an invoice by transfer.
//!
//! Every invoice has one, derived from its reference the same way every time, so it
//! never needs storing to be known again:
//! - the reference is upper-cased (ASCII);
//! - when it is made of letters and digits only and has at most 21 of them, the
//!   reference itself is the body (`2026-0042` is not, `F20260042` is): `RF69F20260042`;
//! - otherwise the body is its first 13 letters and digits followed by 8 characters of
//!   its SHA-256 in base 36, so references that differ only in punctuation (`INV-1`,
//!   `INV1`, `INV 1`) still get different creditor references.
//!
//! Two references that differ only in letter case share one creditor reference (the
//! standard ignores case): a payment quoting it names both invoices, and is not applied
//! by itself.

use super::DomainError;
use sha2::{Digest, Sha256};
use std::fmt;

/// The most characters a body may have.
const MAX_BODY: usize = 21;
/// How many letters and digits of the reference a hashed body keeps.
const HASHED_PREFIX: usize = 13;
/// How many base-36 characters of the hash a hashed body has.
const HASH_CHARS: usize = 8;

/// A structured creditor reference whose check digits are correct, upper case, without
/// spaces (`RF69F20260042`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CreditorRef(String);

impl CreditorRef {
    /// The creditor reference of an invoice reference.
    ///
    /// ```
    /// use invoice_sync::domain::CreditorRef;
    /// assert_eq!(CreditorRef::of_invoice("F20260042").as_str(), "RF69F20260042");
    /// assert_eq!(CreditorRef::of_invoice("f20260042"), CreditorRef::of_invoice("F20260042"));
    /// assert_ne!(CreditorRef::of_invoice("INV-1"), CreditorRef::of_invoice("INV1"));
    /// ```
    pub fn of_invoice(reference: &str) -> CreditorRef {
        let key = CreditorKey::of_invoice(reference);
        let body = key.as_str();
        CreditorRef(format!("RF{:02}{body}", check_digits(body)))
    }

    /// Reads a creditor reference as a customer or a bank wrote it: spaces ignored, any
    /// case; refused when it is not `RF`, two digits and 1 to 21 letters and digits, or
    /// when its check digits are wrong.
    ///
    /// ```
    /// use invoice_sync::domain::CreditorRef;
    /// assert_eq!(CreditorRef::parse("rf69 f202 6004 2").unwrap().as_str(), "RF69F20260042");
    /// assert!(CreditorRef::parse("RF70F20260042").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<CreditorRef, DomainError> {
        let compact: String = text
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_uppercase();
        let shaped = compact.is_ascii()
            && compact.len() >= 5
            && compact.len() <= 4 + MAX_BODY
            && compact.starts_with("RF")
            && compact[2..4].bytes().all(|b| b.is_ascii_digit())
            && compact[4..].bytes().all(|b| b.is_ascii_alphanumeric());
        if !shaped {
            return Err(DomainError(format!(
                "{} is not a creditor reference (RF, two check digits, 1 to 21 letters and digits)",
                super::quoted(text)
            )));
        }
        if remainder(&format!("{}{}", &compact[4..], &compact[..4])) != 1 {
            return Err(DomainError(format!(
                "{} is not a creditor reference: its check digits are wrong",
                super::quoted(text)
            )));
        }
        Ok(CreditorRef(compact))
    }

    /// The reference, as stored and printed (`RF69F20260042`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The body: what follows `RF` and the check digits (`F20260042`); it alone names
    /// the invoice, and is what the store indexes.
    pub fn body(&self) -> &str {
        &self.0[4..]
    }

    /// The reference in groups of four, as a customer types it (`RF69 F202 6004 2`).
    pub fn grouped(&self) -> String {
        let mut out = String::with_capacity(self.0.len() + self.0.len() / 4);
        for (i, c) in self.0.chars().enumerate() {
            if i > 0 && i % 4 == 0 {
                out.push(' ');
            }
            out.push(c);
        }
        out
    }
}

impl fmt::Display for CreditorRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for CreditorRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// The body of an invoice's creditor reference (see [`CreditorRef::body`]), made without
/// allocating: the ingest makes one for every row it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditorKey {
    bytes: [u8; MAX_BODY],
    len: u8,
}

impl CreditorKey {
    /// The body of the creditor reference of `reference` (the rules at the top).
    ///
    /// ```
    /// use invoice_sync::domain::creditor::CreditorKey;
    /// use invoice_sync::domain::CreditorRef;
    /// assert_eq!(CreditorKey::of_invoice("f20260042").as_str(), "F20260042");
    /// assert_eq!(
    ///     CreditorKey::of_invoice("INV-2026-001").as_str(),
    ///     CreditorRef::of_invoice("INV-2026-001").body()
    /// );
    /// ```
    pub fn of_invoice(reference: &str) -> CreditorKey {
        let mut key = CreditorKey {
            bytes: [0; MAX_BODY],
            len: 0,
        };
        let lossless = reference.bytes().all(|b| b.is_ascii_alphanumeric())
            && (1..=MAX_BODY).contains(&reference.len());
        if lossless {
            for (slot, b) in key.bytes.iter_mut().zip(reference.bytes()) {
                *slot = b.to_ascii_uppercase();
            }
            key.len = reference.len() as u8;
            return key;
        }
        let mut n = 0;
        for b in reference
            .bytes()
            .filter(u8::is_ascii_alphanumeric)
            .take(HASHED_PREFIX)
        {
            key.bytes[n] = b.to_ascii_uppercase();
            n += 1;
        }
        // The hash is of the upper-cased reference (ASCII letters only), fed in pieces.
        let mut h = Sha256::new();
        let mut chunk = [0u8; 64];
        for part in reference.as_bytes().chunks(64) {
            for (c, b) in chunk.iter_mut().zip(part) {
                *c = b.to_ascii_uppercase();
            }
            h.update(&chunk[..part.len()]);
        }
        let digest = h.finalize();
        let mut v = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
        for i in (0..HASH_CHARS).rev() {
            key.bytes[n + i] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[(v % 36) as usize];
            v /= 36;
        }
        key.len = (n + HASH_CHARS) as u8;
        key
    }

    /// The body as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).expect("ASCII")
    }
}

/// The check digits of a body: 98 − (body + "RF00" as digits) mod 97.
fn check_digits(body: &str) -> u32 {
    98 - remainder(&format!("{body}RF00"))
}

/// The text read as ISO 7064 MOD 97-10 does: letters as 10..35, the number mod 97.
fn remainder(text: &str) -> u32 {
    text.bytes().fold(0u32, |rem, b| {
        let v = if b.is_ascii_digit() {
            u32::from(b - b'0')
        } else {
            u32::from(b.to_ascii_uppercase() - b'A') + 10
        };
        if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standards_own_example_checks() {
        // ISO 11649's example: RF18 5390 0754 7034.
        assert_eq!(
            CreditorRef::parse("RF18 5390 0754 7034").unwrap().as_str(),
            "RF18539007547034"
        );
        assert_eq!(check_digits("539007547034"), 18);
    }

    #[test]
    fn every_derived_reference_parses_back_and_fits() {
        for r in [
            "1",
            "INV-2026-001",
            "a very long invoice reference with spaces / slashes 123",
            "ÄÖÜ-ß",
            "2026.0042",
            "ABCDEFGHIJKLMNOPQRSTU",
            "ABCDEFGHIJKLMNOPQRSTUV",
        ] {
            let c = CreditorRef::of_invoice(r);
            assert!(c.as_str().len() <= 25, "{c}");
            assert_eq!(CreditorRef::parse(c.as_str()), Ok(c.clone()), "{r}");
            assert_eq!(CreditorRef::parse(&c.grouped()), Ok(c), "{r}");
        }
    }

    #[test]
    fn the_key_is_the_body_whatever_the_reference() {
        for r in [
            "1",
            "f20260042",
            "INV-2026-001",
            "ÄÖÜ-ß",
            "a b",
            "",
            "x".repeat(200).as_str(),
        ] {
            let key = CreditorKey::of_invoice(r);
            if !r.is_empty() {
                assert_eq!(key.as_str(), CreditorRef::of_invoice(r).body(), "{r:?}");
            }
            assert!(key.as_str().len() <= MAX_BODY);
        }
    }

    #[test]
    fn wrong_check_digits_and_shapes_are_refused() {
        assert!(CreditorRef::parse("RF00F20260042").is_err());
        assert!(CreditorRef::parse("RF18").is_err());
        assert!(CreditorRef::parse("RF18F2026-0042").is_err());
        assert!(CreditorRef::parse("XX18F20260042").is_err());
        assert!(CreditorRef::parse("RF18ABCDEFGHIJKLMNOPQRSTUVW").is_err());
        // Any text, never a panic: a character of several bytes where the digits go.
        assert!(CreditorRef::parse("RFé1234").is_err());
        assert!(CreditorRef::parse("R€18F2026").is_err());
    }
}
