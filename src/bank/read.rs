//! Detection by content and the streaming readers.
//!
//! [`read_statements`] looks at the start of a file (past a UTF-8 byte order mark, blank
//! space and the transmission control characters some banks wrap a file in) and hands it
//! to the reader of its format: `<` starts an ISO 20022 camt.052, camt.053 or camt.054
//! document (the `camt` module), a `:20:` line among the first lines an MT940 file (the
//! `mt940` module). Anything else is refused with a reason.
//!
//! Memory stays bounded whatever the input: the file is read through one fixed buffer
//! (`Source`), no text, attribute, element or line may be longer than [`MAX_TOKEN`],
//! XML may nest no deeper than [`MAX_DEPTH`], and entries go to the caller one at a
//! time, as soon as they are complete.

use super::entry::{Format, Item, ReadError};
use crate::domain::Currency;
use std::io::{self, BufRead, Read};

/// The longest text, attribute, element (its tag and attributes), comment or MT940 line
/// read (64 KiB); anything longer makes the file unreadable rather than buffered.
pub const MAX_TOKEN: usize = 64 * 1024;

/// The deepest XML element nesting read (a camt statement needs about 12 levels).
pub const MAX_DEPTH: usize = 64;

/// The size of the one read buffer.
const BUFFER: usize = 64 * 1024;

/// How far into a file detection looks for the first `:20:` of an MT940 file.
const SNIFF: usize = 8 * 1024;

/// Why reading stopped.
#[derive(Debug)]
pub enum Failure {
    /// The file is not a statement that can be read (nothing of it may be applied).
    Unreadable(ReadError),
    /// The caller's `each` returned an error, which is handed back.
    Stopped(anyhow::Error),
}

impl Failure {
    /// A reason at a line (see [`ReadError::at`]).
    pub(super) fn at(line: u64, reason: impl Into<String>) -> Failure {
        Failure::Unreadable(ReadError::at(line, reason))
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unreadable(e) => e.fmt(f),
            Failure::Stopped(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Failure {}

/// The caller's callback, as the readers take it.
pub(super) type Each<'e> = dyn FnMut(Item) -> anyhow::Result<()> + 'e;

/// Hands `item` to the caller; its error stops the reading.
pub(super) fn give(each: &mut Each<'_>, item: Item) -> Result<(), Failure> {
    each(item).map_err(Failure::Stopped)
}

/// Reads a statement file from `input`, detecting its format from the content, and
/// calls `each` for every statement header and entry in file order. Memory stays
/// bounded whatever the size of the file or of any one line or element.
///
/// A file that cannot be read (not a statement, truncated, an amount that cannot be
/// read exactly, a DTD, a line or text over [`MAX_TOKEN`]) ends in
/// [`Failure::Unreadable`] with the line and the reason, possibly after some items were
/// handed on: the caller applies nothing of a file that does not end in `Ok`.
pub fn read_statements(
    input: impl Read,
    mut each: impl FnMut(Item) -> anyhow::Result<()>,
) -> Result<Format, Failure> {
    let mut source = Source::new(Box::new(input));
    match sniff(&mut source)? {
        Kind::Xml => super::camt::read(source, &mut each),
        Kind::Mt940 => super::mt940::read(source, &mut each),
    }
}

/// What detection found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Xml,
    Mt940,
}

/// Decides the format from the first bytes, consuming nothing.
fn sniff(source: &mut Source<'_>) -> Result<Kind, Failure> {
    let head = source
        .peek(SNIFF)
        .map_err(|e| Failure::at(0, format!("the file could not be read: {e}")))?;
    if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
        return Err(Failure::at(
            0,
            "the file is UTF-16; statements are read in UTF-8 (camt) or UTF-8 or Latin-1 \
             (MT940)",
        ));
    }
    let body = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let start = body
        .iter()
        .position(|&b| !(b.is_ascii_whitespace() || b == 0x01 || b == 0x02 || b == 0x03))
        .map(|i| &body[i..]);
    let Some(start) = start else {
        return Err(Failure::at(
            0,
            if head.is_empty() {
                "the file is empty"
            } else if head.len() < SNIFF {
                "the file holds nothing but blank space"
            } else {
                "the file starts with more than 8 KiB of blank space: not a statement"
            },
        ));
    };
    if start[0] == b'<' {
        return Ok(Kind::Xml);
    }
    // MT940: a `:20:` line (or a SWIFT header block `{1:`) among the first lines, after
    // at most a few short header lines (`ABNANL2A`, `940`, `0000 01INGB...`, `:940:`).
    for (i, line) in start.split(|&b| b == b'\n').take(12).enumerate() {
        let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        let line = trim_ascii(line);
        if line.starts_with(b":20:") || line.starts_with(b"{1:") || line.starts_with(b"{4:") {
            return Ok(Kind::Mt940);
        }
        if line.len() > 80 || (i > 0 && line.starts_with(b"<")) {
            break;
        }
    }
    Err(Failure::at(
        0,
        "not a bank statement in a known format: neither camt.052, camt.053 or camt.054 \
         XML nor MT940",
    ))
}

fn trim_ascii(s: &[u8]) -> &[u8] {
    let s = &s[s
        .iter()
        .take_while(|b| b.is_ascii_whitespace() || **b < 0x20)
        .count()..];
    let end = s.len()
        - s.iter()
            .rev()
            .take_while(|b| b.is_ascii_whitespace() || **b < 0x20)
            .count();
    &s[..end]
}

/// The file as the readers see it: one fixed buffer over the input that counts the
/// lines consumed and refuses a run of more than a limit of bytes without a [`mark`]
/// (the XML reader marks every event, so no one event can grow past the limit).
///
/// [`mark`]: Source::mark
pub(super) struct Source<'a> {
    inner: Box<dyn Read + 'a>,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    /// Newlines consumed so far.
    newlines: u64,
    /// Bytes consumed since the last mark.
    run: usize,
    /// The longest run allowed.
    limit: usize,
    /// Set once a run passed the limit; every later fill then fails.
    over: bool,
}

impl<'a> Source<'a> {
    fn new(inner: Box<dyn Read + 'a>) -> Source<'a> {
        Source {
            inner,
            buf: vec![0; BUFFER].into_boxed_slice(),
            pos: 0,
            len: 0,
            newlines: 0,
            run: 0,
            limit: usize::MAX,
            over: false,
        }
    }

    /// Up to `n` (at most the buffer size) bytes ahead, without consuming them: fewer
    /// only at the end of the input.
    fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        let n = n.min(self.buf.len());
        if self.len - self.pos < n && self.pos > 0 {
            self.buf.copy_within(self.pos..self.len, 0);
            self.len -= self.pos;
            self.pos = 0;
        }
        while self.len - self.pos < n {
            match self.inner.read(&mut self.buf[self.len..]) {
                Ok(0) => break,
                Ok(k) => self.len += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(&self.buf[self.pos..self.len.min(self.pos + n)])
    }

    /// The physical line (from 1) of the next byte to be consumed.
    pub(super) fn line(&self) -> u64 {
        self.newlines + 1
    }

    /// Starts a new run (see the type's doc).
    pub(super) fn mark(&mut self) {
        self.run = 0;
    }

    /// Sets the longest run allowed between marks.
    pub(super) fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Whether a run passed the limit.
    pub(super) fn over(&self) -> bool {
        self.over || self.run > self.limit
    }
}

/// The error a fill returns once a run passed the limit.
#[derive(Debug)]
pub(super) struct OverLimit;

impl std::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "more than {} KiB without a break", MAX_TOKEN / 1024)
    }
}

impl std::error::Error for OverLimit {}

impl Read for Source<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Source<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.over() {
            self.over = true;
            return Err(io::Error::other(OverLimit));
        }
        if self.pos == self.len {
            self.pos = 0;
            self.len = 0;
            loop {
                match self.inner.read(&mut self.buf) {
                    Ok(k) => {
                        self.len = k;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(&self.buf[self.pos..self.len])
    }

    fn consume(&mut self, amt: usize) {
        let amt = amt.min(self.len - self.pos);
        let chunk = &self.buf[self.pos..self.pos + amt];
        self.newlines += memchr::memchr_iter(b'\n', chunk).count() as u64;
        self.run += amt;
        self.pos += amt;
    }
}

// ------------------------------------------------------------------------ shared rules

/// Reads an amount exactly into minor units of `currency`: `int` and `frac` are the
/// digits before and after the decimal separator, already split. Decimals beyond the
/// currency's are refused unless they are zeros (`12.500` is exactly 12.50 EUR, `12.505`
/// cannot be booked in EUR).
pub(super) fn minor_units(
    shown: &str,
    int: &str,
    frac: &str,
    currency: Currency,
) -> Result<i64, String> {
    let exp = usize::from(currency.exponent());
    if int.is_empty() && frac.is_empty() {
        return Err(format!("{} is not an amount", quote(shown)));
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{} is not an amount", quote(shown)));
    }
    let (kept, extra) = frac.split_at(frac.len().min(exp));
    if extra.bytes().any(|b| b != b'0') {
        return Err(if exp == 0 {
            format!(
                "{} has decimals, but {} has none",
                quote(shown),
                currency.code()
            )
        } else {
            format!(
                "{} has more decimals than {} has ({exp})",
                quote(shown),
                currency.code()
            )
        });
    }
    let int = int.trim_start_matches('0');
    if int.len() > crate::domain::money::MAX_INTEGER_DIGITS as usize {
        return Err(format!("{} is too large", quote(shown)));
    }
    let too_large = || format!("{} is too large", quote(shown));
    let mut minor: i64 = 0;
    let digits = int.bytes().chain(kept.bytes()).map(|b| i64::from(b - b'0'));
    let pad = std::iter::repeat_n(0, exp - kept.len());
    for d in digits.chain(pad) {
        minor = minor
            .checked_mul(10)
            .and_then(|m| m.checked_add(d))
            .ok_or_else(too_large)?;
    }
    Ok(minor)
}

/// `s` in double quotes for a reason, cut at 40 characters, control characters escaped.
pub(super) fn quote(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((cut, _)) => format!("{:?}", format!("{}…", &s[..cut])),
        None => format!("{s:?}"),
    }
}

/// Text as it is handed on: runs of blank space and control characters become one
/// space, both ends trimmed; `None` when nothing is left.
pub(super) fn clean(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    for word in s.split(|c: char| c.is_whitespace() || c.is_control()) {
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    (!out.is_empty()).then_some(out)
}

/// A reference as it is handed on: trimmed; `None` when empty or a placeholder
/// (`NOTPROVIDED`, `NONREF`, `NONE`).
pub(super) fn reference(s: &str) -> Option<String> {
    let t = s.trim();
    let placeholder = ["NOTPROVIDED", "NONREF", "NONE", "NOT PROVIDED"]
        .iter()
        .any(|p| t.eq_ignore_ascii_case(p));
    (!t.is_empty() && !placeholder).then(|| t.to_owned())
}

/// Whether `s` has the form of an IBAN (country letters, check digits, 11 to 30
/// letters and digits); spaces aside, any case. The check digits are not verified: the
/// bank's own text is handed on as it is.
pub(super) fn iban_shaped(s: &str) -> bool {
    let b: Vec<u8> = s.bytes().filter(|b| *b != b' ').collect();
    (15..=34).contains(&b.len())
        && b[..2].iter().all(u8::is_ascii_alphabetic)
        && b[2..4].iter().all(u8::is_ascii_digit)
        && b[4..].iter().all(u8::is_ascii_alphanumeric)
}

/// An IBAN as stored: upper case, no spaces.
pub(super) fn iban(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minor_units_are_exact() {
        let eur = Currency::EUR;
        assert_eq!(minor_units("12.50", "12", "50", eur), Ok(1250));
        assert_eq!(minor_units("12.5", "12", "5", eur), Ok(1250));
        assert_eq!(minor_units("12.", "12", "", eur), Ok(1200));
        assert_eq!(minor_units("12.500", "12", "500", eur), Ok(1250));
        assert!(minor_units("12.505", "12", "505", eur).is_err());
        assert!(minor_units("", "", "", eur).is_err());
        assert!(minor_units("1x", "1x", "", eur).is_err());
        assert!(minor_units("1234567890123456", "1234567890123456", "", eur).is_err());
        // 19 digits in minor units of a 4-decimal currency: past i64, refused
        let clf = Currency::parse("UYW").unwrap_or(eur);
        let nines = "999999999999999";
        let r = minor_units(nines, nines, "9999", clf);
        assert!(clf.exponent() < 4 || r.is_err(), "{r:?}");
        assert_eq!(
            minor_units("999999999999999.99", "999999999999999", "99", eur),
            Ok(99_999_999_999_999_999)
        );
        let jpy = Currency::parse("JPY").unwrap();
        assert_eq!(minor_units("1200", "1200", "", jpy), Ok(1200));
        assert!(minor_units("12.5", "12", "5", jpy).is_err());
    }

    #[test]
    fn text_is_cleaned_and_placeholders_dropped() {
        assert_eq!(clean("  a \n\t b\u{1}c "), Some("a b c".into()));
        assert_eq!(clean(" \n "), None);
        assert_eq!(reference(" NOTPROVIDED "), None);
        assert_eq!(reference("NONREF"), None);
        assert_eq!(reference(" E2E-1 "), Some("E2E-1".into()));
        assert!(iban_shaped("NL91ABNA0417164300"));
        assert!(iban_shaped("nl91 abna 0417 1643 00"));
        assert!(!iban_shaped("0417164300"));
        assert!(!iban_shaped("EREF"));
        assert_eq!(iban("nl91 abna 0417164300"), "NL91ABNA0417164300");
    }

    #[test]
    fn detection_refuses_what_it_does_not_know() {
        let read = |bytes: &[u8]| read_statements(bytes, |_| Ok(()));
        for (input, reason) in [
            (&b""[..], "the file is empty"),
            (b"  \n\r\n ", "nothing but blank space"),
            (b"Datum,Bedrag\n2024-01-01,12.50\n", "not a bank statement"),
            (b"\xFF\xFEa\x00", "UTF-16"),
        ] {
            match read(input) {
                Err(Failure::Unreadable(e)) => {
                    assert!(e.reason.contains(reason), "{input:?}: {e}")
                }
                other => panic!("{input:?}: {other:?}"),
            }
        }
    }
}
