//! Text values from the export: invoice references, customer names, e-mail addresses.
//!
//! Each of them ends up somewhere a stray character does harm: the reference in API
//! requests and the database key, the name and the address in mail headers. So line
//! breaks and other control characters are refused here, once, instead of being escaped
//! (or forgotten) at every place that writes them out.
use super::{DomainError, quoted};
use std::fmt;
use std::str::FromStr;

/// The longest invoice reference, in characters.
pub const INVOICE_REF_MAX_CHARS: usize = 100;
/// The longest customer name, in characters.
pub const CUSTOMER_NAME_MAX_CHARS: usize = 200;
/// The longest e-mail address, in bytes (RFC 5321: a 256-octet path less its `<>`).
pub const EMAIL_MAX_BYTES: usize = 254;

/// A character that ends or breaks a line: the control characters (CR, LF, TAB, NUL,
/// NEL…) and the Unicode line and paragraph separators, which some mail clients and
/// spreadsheets also render as line breaks.
fn is_breaking(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// The merchant's invoice reference: the key an invoice is known by from export to
/// export, and what the CM link and the mail name.
///
/// Trimmed, 1 to 100 characters, no control characters: a reference with a line break
/// would split log lines and rejection reports, and an empty one cannot identify anything.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InvoiceRef(String);

impl InvoiceRef {
    /// Reads a reference from an export cell; see the type for the rules.
    pub fn parse(s: &str) -> Result<InvoiceRef, DomainError> {
        let t = s.trim();
        if t.is_empty() {
            return Err(DomainError("invoice reference is empty".into()));
        }
        if t.chars().any(is_breaking) {
            return Err(DomainError(format!(
                "invoice reference {} contains a line break or control character",
                quoted(t)
            )));
        }
        if t.chars().count() > INVOICE_REF_MAX_CHARS {
            return Err(DomainError(format!(
                "invoice reference {} is longer than {INVOICE_REF_MAX_CHARS} characters",
                quoted(t)
            )));
        }
        Ok(InvoiceRef(t.to_owned()))
    }

    /// The reference as read (trimmed).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InvoiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The customer's name for the mail greeting and the `To:` display name.
///
/// Trimmed, possibly empty (the column is optional), at most 200 characters. A line break
/// in a name would end up in a mail header (header injection), so it is refused, not
/// cleaned: the merchant should see and fix the export.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CustomerName(String);

impl CustomerName {
    /// Reads a name from an export cell; see the type for the rules.
    pub fn parse(s: &str) -> Result<CustomerName, DomainError> {
        let t = s.trim();
        if t.chars().any(is_breaking) {
            return Err(DomainError(
                "customer name contains a line break or control character".into(),
            ));
        }
        if t.chars().count() > CUSTOMER_NAME_MAX_CHARS {
            return Err(DomainError(format!(
                "customer name {} is longer than {CUSTOMER_NAME_MAX_CHARS} characters",
                quoted(t)
            )));
        }
        Ok(CustomerName(t.to_owned()))
    }

    /// The name as read (trimmed); empty when the export had none.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the export gave no name, so that a greeting can leave it out.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for CustomerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The address the payment link is mailed to.
///
/// Trimmed, at most 254 bytes, no whitespace or control characters anywhere (a line break
/// would inject mail headers), accepted by `lettre::Address` (so the mailer can never
/// refuse it later), and with a dot in the domain: `user@localhost` is a typo in an
/// export, never a customer. Kept as given, not lowercased: the local part is the
/// receiving server's business.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(lettre::Address);

impl EmailAddress {
    /// Reads an address from an export cell; see the type for the rules.
    pub fn parse(s: &str) -> Result<EmailAddress, DomainError> {
        let t = s.trim();
        let invalid =
            |why: &str| DomainError(format!("{} is not a valid e-mail address{why}", quoted(t)));
        if t.is_empty() {
            return Err(DomainError("e-mail address is empty".into()));
        }
        if t.chars()
            .any(|c| matches!(c, '\r' | '\n' | '\u{2028}' | '\u{2029}'))
        {
            return Err(invalid(" (it contains a line break)"));
        }
        if t.chars().any(char::is_control) {
            return Err(invalid(" (it contains a control character)"));
        }
        if t.chars().any(char::is_whitespace) {
            return Err(invalid(" (it contains a space)"));
        }
        if t.len() > EMAIL_MAX_BYTES {
            return Err(invalid(" (longer than 254 bytes)"));
        }
        let address = lettre::Address::from_str(t).map_err(|_| invalid(""))?;
        let domain = address.domain();
        if domain.starts_with('[') {
            return Err(invalid(" (an IP address instead of a domain)"));
        }
        if !domain.trim_matches('.').contains('.') {
            return Err(invalid(" (the domain has no dot)"));
        }
        Ok(EmailAddress(address))
    }

    /// The address as read (trimmed).
    pub fn as_str(&self) -> &str {
        self.0.as_ref()
    }

    /// The address for lettre's `Mailbox`, already validated: the mailer never parses
    /// (or fails on) an address again.
    pub fn address(&self) -> &lettre::Address {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invoice_ref_trims_and_keeps() {
        assert_eq!(
            InvoiceRef::parse("  INV-2024-001 ").unwrap().as_str(),
            "INV-2024-001"
        );
        assert_eq!(
            InvoiceRef::parse("F 12/34 – é").unwrap().as_str(),
            "F 12/34 – é"
        );
        assert_eq!(InvoiceRef::parse("x").unwrap().as_str(), "x");
        // surrounding line breaks are whitespace: trimmed away, not part of the value
        assert_eq!(InvoiceRef::parse("INV-1\r\n").unwrap().as_str(), "INV-1");
    }

    #[test]
    fn invoice_ref_rejects_empty() {
        for s in ["", "   ", "\t\r\n"] {
            assert_eq!(
                InvoiceRef::parse(s).unwrap_err().to_string(),
                "invoice reference is empty"
            );
        }
    }

    #[test]
    fn invoice_ref_length_is_counted_in_characters() {
        let max = "é".repeat(100);
        assert_eq!(InvoiceRef::parse(&max).unwrap().as_str(), max);
        let e = InvoiceRef::parse(&"é".repeat(101)).unwrap_err().to_string();
        assert!(e.ends_with("is longer than 100 characters"), "{e}");
    }

    #[test]
    fn invoice_ref_rejects_control_characters() {
        for s in [
            "INV\r1",
            "INV\n1",
            "INV\r\n1",
            "INV\t1",
            "INV\u{0}1",
            "INV\u{1b}1",
            "INV\u{85}1",
            "INV\u{2028}1",
        ] {
            let e = InvoiceRef::parse(s).unwrap_err().to_string();
            assert!(e.contains("line break or control character"), "{s:?}: {e}");
        }
        assert_eq!(
            InvoiceRef::parse("INV\r\n1").unwrap_err().to_string(),
            "invoice reference \"INV\\r\\n1\" contains a line break or control character"
        );
    }

    #[test]
    fn customer_name_may_be_empty() {
        let n = CustomerName::parse("   ").unwrap();
        assert_eq!(n.as_str(), "");
        assert!(n.is_empty());
        assert_eq!(
            CustomerName::parse(" Jan de Vries ").unwrap().as_str(),
            "Jan de Vries"
        );
        assert_eq!(
            CustomerName::parse("Zoë O'Brien-Müller").unwrap().as_str(),
            "Zoë O'Brien-Müller"
        );
    }

    #[test]
    fn customer_name_rejects_line_breaks_and_controls() {
        for s in [
            "Jan\r\nBcc: x@y.com",
            "Jan\nde Vries",
            "Jan\rde Vries",
            "Jan\tde Vries",
            "Jan\u{0}",
            "Jan\u{2029}x",
        ] {
            assert_eq!(
                CustomerName::parse(s).unwrap_err().to_string(),
                "customer name contains a line break or control character",
                "{s:?}"
            );
        }
    }

    #[test]
    fn customer_name_at_most_200_characters() {
        assert!(CustomerName::parse(&"ß".repeat(200)).is_ok());
        assert!(CustomerName::parse(&"ß".repeat(201)).is_err());
    }

    #[test]
    fn email_good_addresses() {
        for s in [
            "bob@example.com",
            "Bob.Smith+invoices@mail.example.co.uk",
            "x_y-z@sub.example.nl",
        ] {
            assert_eq!(EmailAddress::parse(s).unwrap().as_str(), s);
        }
        // trimmed, case kept, and the same address for lettre
        let a = EmailAddress::parse("  Bob@Example.com\t").unwrap();
        assert_eq!(a.address().to_string(), "Bob@Example.com");
        assert_eq!(a.to_string(), "Bob@Example.com");
        assert_eq!(
            EmailAddress::parse("  Bob@Example.com\t").unwrap().as_str(),
            "Bob@Example.com"
        );
    }

    #[test]
    fn email_rejects_domain_without_dot() {
        for s in ["a@b", "user@localhost", "a@.b", "a@b."] {
            assert!(EmailAddress::parse(s).is_err(), "{s:?}");
        }
        assert_eq!(
            EmailAddress::parse("a@b").unwrap_err().to_string(),
            "\"a@b\" is not a valid e-mail address (the domain has no dot)"
        );
    }

    #[test]
    fn email_rejects_ip_literals() {
        assert_eq!(
            EmailAddress::parse("a@[192.168.1.1]")
                .unwrap_err()
                .to_string(),
            "\"a@[192.168.1.1]\" is not a valid e-mail address (an IP address instead of a domain)"
        );
    }

    #[test]
    fn email_rejects_malformed() {
        for s in [
            "bob@",
            "@example.com",
            "bob",
            "bob@@example.com",
            "bob@exa mple.com",
            "a,b@example.com",
            "<bob@example.com>",
            "Bob <bob@example.com>",
        ] {
            assert!(EmailAddress::parse(s).is_err(), "{s:?}");
        }
        assert_eq!(
            EmailAddress::parse("bob@").unwrap_err().to_string(),
            "\"bob@\" is not a valid e-mail address"
        );
        assert_eq!(
            EmailAddress::parse("  ").unwrap_err().to_string(),
            "e-mail address is empty"
        );
    }

    #[test]
    fn email_rejects_whitespace() {
        assert_eq!(
            EmailAddress::parse("a b@c.com").unwrap_err().to_string(),
            "\"a b@c.com\" is not a valid e-mail address (it contains a space)"
        );
        assert!(EmailAddress::parse("a\u{a0}b@c.com").is_err());
        assert!(EmailAddress::parse("\"a b\"@c.com").is_err());
    }

    #[test]
    fn email_rejects_header_injection() {
        let e = EmailAddress::parse("x@example.com\r\nBcc: y@z.com")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "\"x@example.com\\r\\nBcc: y@z.com\" is not a valid e-mail address (it contains a line break)"
        );
        assert!(EmailAddress::parse("x@example.com\nBcc:y@z.com").is_err());
        assert!(EmailAddress::parse("x@example.com\u{0}").is_err());
    }

    /// A valid domain of exactly `len` bytes: labels of 9 letters, then `.com`.
    fn domain_of_len(len: usize) -> String {
        let mut d = String::new();
        while d.len() + 10 < len - 4 {
            d.push_str("bbbbbbbbb.");
        }
        while d.len() < len - 4 {
            d.push('b');
        }
        d.push_str(".com");
        d
    }

    #[test]
    fn email_at_most_254_bytes() {
        let ok = format!("{}@{}", "a".repeat(64), domain_of_len(254 - 65));
        assert_eq!(ok.len(), 254);
        assert_eq!(EmailAddress::parse(&ok).unwrap().as_str(), ok);
        let long = format!("{}@{}", "a".repeat(64), domain_of_len(255 - 65));
        assert_eq!(long.len(), 255);
        assert_eq!(
            EmailAddress::parse(&long).unwrap_err().to_string(),
            format!(
                "{} is not a valid e-mail address (longer than 254 bytes)",
                quoted(&long)
            )
        );
    }
}
