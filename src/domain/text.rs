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

/// An invisible format character that spreadsheets and accounting software leave in
/// cells: zero-width spaces and joiners, the BOM, the soft hyphen, direction marks and
/// embeddings, the word joiner and invisible operators.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
    )
}

/// A bidirectional control: the embeddings and overrides U+202A–U+202E, the isolates
/// U+2066–U+2069 and the marks U+200E, U+200F and U+061C. They change the order in
/// which the characters around them are shown, so a name carrying them can display as
/// something else (`Jan\u{202E}kcaJ` shows as `JanJack`).
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// `s` without its bidirectional controls and other invisible format characters, for
/// every text field read from an export (README, *Ingest*). The zero-width joiner and
/// non-joiner stay: some scripts (Persian, Indic) and emoji need them to spell a name.
/// Borrowed when there is nothing to remove (always for ASCII).
pub fn strip_invisible(s: &str) -> std::borrow::Cow<'_, str> {
    let drop = |c: char| is_invisible_format(c) && !matches!(c, '\u{200C}' | '\u{200D}');
    if s.is_ascii() || !s.chars().any(drop) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(s.chars().filter(|c| !drop(*c)).collect())
}

/// A reference as it is matched: Unicode NFC, invisible format characters removed,
/// surrounding white space trimmed. `INV-1` and `INV-1` followed by a zero-width space
/// are one invoice; so are a composed and a decomposed `é`.
pub fn normalize_reference(s: &str) -> String {
    // ASCII is NFC and holds no format characters: the common case costs one copy.
    if s.is_ascii() {
        return s.trim().to_string();
    }
    let visible: String = s.chars().filter(|c| !is_invisible_format(*c)).collect();
    let nfc = icu_normalizer::ComposingNormalizerBorrowed::new_nfc().normalize(&visible);
    nfc.trim().to_string()
}

/// The merchant's invoice reference: the key an invoice is known by from export to
/// export, and what the CM link and the mail name.
///
/// Normalised ([`normalize_reference`]), 1 to 100 characters, no control characters: a
/// reference with a line break would split log lines and rejection reports, and an empty
/// one cannot identify anything.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InvoiceRef(String);

impl InvoiceRef {
    /// Reads a reference from an export cell; see the type for the rules.
    pub fn parse(s: &str) -> Result<InvoiceRef, DomainError> {
        let normalized = normalize_reference(s);
        let t = normalized.as_str();
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
}

/// The merchant reference a payment link is created under at CM: unique per link of an
/// invoice revision and the same for every retry of one create, so that CM (and whoever
/// reads its dashboard) can tell the links of one invoice apart and an interrupted create
/// can be found again.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MerchantRef(String);

impl MerchantRef {
    /// `<reference>/r<revision>`, then `-2`, `-3`, … for the links made after `lapsed`
    /// earlier links of the revision lapsed unmailed.
    pub fn of(reference: &InvoiceRef, revision: i64, lapsed: i64) -> MerchantRef {
        if lapsed > 0 {
            MerchantRef(format!("{reference}/r{revision}-{}", lapsed + 1))
        } else {
            MerchantRef(format!("{reference}/r{revision}"))
        }
    }

    /// A merchant reference as stored or as CM echoes it: any text that is not blank.
    pub fn parse(s: &str) -> Result<MerchantRef, DomainError> {
        if s.trim().is_empty() {
            return Err(DomainError("merchant reference is empty".into()));
        }
        Ok(MerchantRef(s.to_owned()))
    }
}

/// CM's reference of a payment link (`pml-…`): the id CM gives a link when it creates
/// it, stored in `links.link_ref` and named in every later request about the link and in
/// CM's callbacks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LinkRef(String);

impl LinkRef {
    /// A link reference as CM answered it, as stored or as a callback names it: any text
    /// that is not blank and holds no line break or other control character (it goes
    /// into request paths and log lines).
    pub fn parse(s: &str) -> Result<LinkRef, DomainError> {
        if s.trim().is_empty() {
            return Err(DomainError("payment link reference is empty".into()));
        }
        if s.chars().any(is_breaking) {
            return Err(DomainError(format!(
                "payment link reference {} contains a line break or control character",
                quoted(s)
            )));
        }
        Ok(LinkRef(s.to_owned()))
    }
}

/// What every reference type is besides its own rules: its text (`as_str`, `Display`,
/// compared with a `&str`), serialised as that text.
macro_rules! reference_text {
    ($($ty:ident),+) => {$(
        impl $ty {
            /// The reference as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    )+};
}

reference_text!(InvoiceRef, MerchantRef, LinkRef);

impl InvoiceRef {
    /// References as one list in a sentence: `INV-1, INV-2`.
    pub fn list(refs: &[InvoiceRef]) -> String {
        let texts: Vec<&str> = refs.iter().map(InvoiceRef::as_str).collect();
        texts.join(", ")
    }
}

/// The customer's name for the mail greeting and the `To:` display name.
///
/// Folded to one line: every run of white space (line breaks, tabs, Unicode line
/// separators) becomes one space and other control characters are dropped, so a name
/// that spans lines in the export never costs the invoice its link and no header can
/// carry a line break. Bidirectional controls and invisible format characters are
/// removed, so the name shows in a mail or a statement as the characters it holds. Possibly empty (the column is optional), at most 200 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CustomerName(String);

/// `s` on one line: runs of white space (and line separators) become one space, other
/// control characters, bidirectional controls and invisible format characters are
/// dropped ([`strip_invisible`]), the ends trimmed.
pub fn fold_line(s: &str) -> String {
    let visible = strip_invisible(s);
    let s = visible.as_ref();
    // Already one line with single spaces (the common case): just trimmed.
    let t = s.trim();
    if !t.contains("  ")
        && !t.chars().any(|c| {
            (c.is_whitespace() && c != ' ') || c.is_control() || c == '\u{2028}' || c == '\u{2029}'
        })
    {
        return t.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars() {
        if c.is_whitespace() || c == '\u{2028}' || c == '\u{2029}' {
            space = true;
        } else if c.is_control() {
            continue;
        } else {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(c);
        }
    }
    out
}

impl CustomerName {
    /// Reads a name from an export cell; see the type for the rules.
    pub fn parse(s: &str) -> Result<CustomerName, DomainError> {
        let folded = fold_line(s);
        let t = folded.as_str();
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
/// Trimmed and without bidirectional controls or invisible format characters (a
/// spreadsheet's zero-width space is never part of an address), at most 254 bytes, no whitespace or control characters anywhere (a line break
/// would inject mail headers), accepted by `lettre::Address` (so the mailer can never
/// refuse it later), and with a dot in the domain: `user@localhost` is a typo in an
/// export, never a customer. Kept as given, not lowercased: the local part is the
/// receiving server's business.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(lettre::Address);

impl EmailAddress {
    /// Reads an address from an export cell; see the type for the rules.
    pub fn parse(s: &str) -> Result<EmailAddress, DomainError> {
        let visible = strip_invisible(s);
        let t = visible.trim();
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
        if !is_dot_atom(address.user()) {
            return Err(invalid(
                " (a quoted local part or one with consecutive, leading or trailing dots cannot be mailed)",
            ));
        }
        // An internationalised domain goes out as punycode, which every relay carries
        // (a UTF-8 domain needs SMTPUTF8, which many relays lack).
        if domain.is_ascii() {
            return Ok(EmailAddress(address));
        }
        let ascii = idna::domain_to_ascii(domain)
            .map_err(|_| invalid(" (the domain is not a valid internationalised name)"))?;
        if ascii.len() > 253
            || ascii
                .split('.')
                .any(|label| label.is_empty() || label.len() > 63)
        {
            return Err(invalid(" (the domain is too long)"));
        }
        let mailable = format!("{}@{ascii}", address.user());
        if mailable.len() > EMAIL_MAX_BYTES {
            return Err(invalid(" (longer than 254 bytes as punycode)"));
        }
        let address = lettre::Address::from_str(&mailable).map_err(|_| invalid(""))?;
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

/// Whether a local part is a dot-atom (RFC 5322), the only form every mail system
/// carries: atext characters (and UTF-8) in runs separated by single dots.
fn is_dot_atom(local: &str) -> bool {
    let atext =
        |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c) || !c.is_ascii();
    !local.is_empty()
        && local
            .split('.')
            .all(|run| !run.is_empty() && run.chars().all(atext))
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `s` safe to put in HTML text or a quoted attribute (`& < > " '` escaped).
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_ref_any_text_not_blank_nor_broken() {
        let r = LinkRef::parse("pml-abc123").unwrap();
        assert_eq!(r.as_str(), "pml-abc123");
        assert_eq!(r.to_string(), "pml-abc123");
        assert_eq!(serde_json::to_string(&r).unwrap(), "\"pml-abc123\"");
        assert!(LinkRef::parse("").is_err());
        assert!(LinkRef::parse("  ").is_err());
        let e = LinkRef::parse("pml-1\r\nX-Evil: 1").unwrap_err();
        assert!(e.0.contains("control character"), "{e}");
    }

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
    fn customer_name_is_folded_to_one_line() {
        for (s, want) in [
            ("Jan\r\nBcc: x@y.com", "Jan Bcc: x@y.com"),
            ("Jan\nde Vries", "Jan de Vries"),
            ("Jan\rde Vries", "Jan de Vries"),
            ("Jan\tde  \r\n  Vries", "Jan de Vries"),
            ("Jan\u{0}", "Jan"),
            ("Jan\u{2029}x", "Jan x"),
            ("\n Zoë \n", "Zoë"),
        ] {
            let n = CustomerName::parse(s).unwrap();
            assert_eq!(n.as_str(), want, "{s:?}");
            assert!(!n.as_str().chars().any(is_breaking), "{s:?}");
        }
    }

    #[test]
    fn bidi_controls_are_removed_from_names_and_addresses() {
        for (s, want) in [
            ("Jan\u{202E}kcaJ", "JankcaJ"),
            (
                "\u{202A}Jan\u{202C} \u{202B}de\u{202D} Vries",
                "Jan de Vries",
            ),
            ("\u{2066}Jan\u{2067}\u{2068}x\u{2069}", "Janx"),
            ("\u{200E}Jan\u{200F}\u{061C}", "Jan"),
            (
                "Jan\u{200B} \u{FEFF}de\u{00AD} Vries\u{2060}",
                "Jan de Vries",
            ),
            (" \u{202E} ", ""),
            // joiners spell names in some scripts: kept
            (
                "\u{0645}\u{06CC}\u{200C}\u{0634}\u{0648}\u{062F}",
                "\u{0645}\u{06CC}\u{200C}\u{0634}\u{0648}\u{062F}",
            ),
        ] {
            let n = CustomerName::parse(s).unwrap();
            assert_eq!(n.as_str(), want, "{s:?}");
            assert!(!n.as_str().chars().any(is_bidi_control), "{s:?}");
        }
        for c in ('\u{202A}'..='\u{202E}')
            .chain('\u{2066}'..='\u{2069}')
            .chain(['\u{200E}', '\u{200F}', '\u{061C}'])
        {
            assert!(is_bidi_control(c), "{c:?}");
            assert_eq!(strip_invisible(&format!("a{c}b")), "ab", "{c:?}");
            assert_eq!(
                EmailAddress::parse(&format!("{c}jan@exam{c}ple.com{c}"))
                    .unwrap()
                    .as_str(),
                "jan@example.com",
                "{c:?}"
            );
            assert_eq!(
                InvoiceRef::parse(&format!("INV{c}-1")).unwrap().as_str(),
                "INV-1"
            );
        }
        assert!(matches!(
            strip_invisible("plain ascii"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert!(matches!(
            strip_invisible("Zoë"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn references_are_normalised_before_matching() {
        let plain = InvoiceRef::parse("INV-1").unwrap();
        for s in [
            "INV-1\u{200B}",
            "\u{FEFF}INV-1",
            "INV\u{00AD}-1",
            "\u{200E}INV-1\u{200F}",
            " INV-1\u{2060} ",
            "\u{202A}INV-1\u{202C}",
        ] {
            assert_eq!(InvoiceRef::parse(s).unwrap(), plain, "{s:?}");
        }
        assert_eq!(
            InvoiceRef::parse("F-e\u{301}").unwrap(),
            InvoiceRef::parse("F-\u{e9}").unwrap(),
            "NFC"
        );
        assert!(
            InvoiceRef::parse("\u{200B}").is_err(),
            "invisible only is empty"
        );
    }

    #[test]
    fn addresses_are_those_the_mailer_can_carry() {
        for bad in [
            "\"john..doe\"@example.com",
            "\"john doe\"@example.com",
            "john..doe@example.com",
            ".john@example.com",
            "john.@example.com",
        ] {
            let e = EmailAddress::parse(bad);
            assert!(e.is_err(), "{bad}: {e:?}");
        }
        let idn = EmailAddress::parse("jan@bücher.example").unwrap();
        assert_eq!(idn.as_str(), "jan@xn--bcher-kva.example");
        assert_eq!(
            EmailAddress::parse("rené@example.com").unwrap().as_str(),
            "rené@example.com"
        );
        assert_eq!(
            EmailAddress::parse("o'brien+bills@example.com")
                .unwrap()
                .as_str(),
            "o'brien+bills@example.com"
        );
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
