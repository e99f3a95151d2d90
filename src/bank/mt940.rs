//! SWIFT MT940, as the Dutch banks (ING, Rabobank, ABN AMRO, Triodos, de Volksbank's
//! ASN, SNS and RegioBank, Knab, bunq, Van Lanschot) and a few others write it, read line
//! by line.
//!
//! Our own parser, not a crate's: the `mt940` crate on crates.io (1.1.1, the one MT940
//! crate) was tried on the published bank files the tests read (`tests/it/bank_formats.rs`)
//! and refused five of twenty-one (ASN and SNS put an 18-character IBAN where SWIFT
//! allows 16, Triodos' old `>20` sub-fields, Rabobank's pre-SEPA padded lines, a
//! hard-wrapped ING file); it also needs the whole file as one string (no streaming) and
//! leaves `:86:` unparsed.
//!
//! # What is read
//!
//! A file holds one or more statements, each optionally wrapped in SWIFT blocks
//! (`{1:…}{2:…}{4:` … `-}`) or between header lines (`ABNANL2A`, `940`, `0000 01…`):
//! `:20:` starts one, `:25:` names the account (an IBAN, maybe with the currency glued
//! on, `NL12INGB0001234567EUR`, or the bank's own number as written), `:28C:` numbers it,
//! `:60F:`/`:60M:` gives the opening balance and so the currency, every `:61:` starts an
//! entry and the `:86:` lines after it describe it, `:62F:`/`:62M:` closes it. A
//! statement that does not reach its closing balance (a truncated file) makes the file
//! unreadable; so does a line longer than [`MAX_TOKEN`].
//!
//! `:61:` gives the value date (`YYMMDD`), optionally the entry date (`MMDD`, its year
//! the one nearest the value date; it is the booking date where given, else the value
//! date is), `C`/`D` or the reversals `RC` (a debit) and `RD` (a credit), an optional
//! funds code letter, the amount with a decimal comma (`12,5`, `12,`; more decimals than
//! the currency has are refused), the transaction type (`NTRF`, `N541`, `FMSC`), the
//! customer reference, the bank's reference after `//`, and on the next line optional
//! supplementary details.
//!
//! `:86:` comes in these layouts, told apart by their content:
//!
//! - structured, `/KEY/value` (ING, ABN AMRO SEPA, Triodos, Knab, bunq, Van Lanschot,
//!   Rabobank): `/EREF/`, `/CNTP/iban/bic/name/city/`, `/BENM/`, `/ORDP/`, `/NAME/`,
//!   `/IBAN/`, `/REMI/USTD//text/`, `/REMI/STRD/CUR/ref/`, `/REMI///text/`, `/RTRN/`,
//!   `/CDTRREF/`; its lines are joined as they were cut, without a space;
//! - ABN AMRO's and Knab's free text with `IBAN:`, `NAAM:`, `OMSCHRIJVING:`,
//!   `BETALINGSKENM.:`, `KENMERK:`, `REK:`;
//! - de Volksbank's fixed width: the counterparty IBAN and name on the first line (and in
//!   `:61:`), the description on the lines after it;
//! - the German `?00`…`?34` sub-fields (with `EREF+`, `SVWZ+`), Triodos' old `>10`…`>31`;
//! - anything else is the remittance text itself.
//!
//! Free text is joined with a space where a line was shorter than SWIFT's 65 characters
//! (a real line break) and without one where it was full (a word cut at the margin).
//!
//! Each file is UTF-8 or, from its first byte that is not UTF-8 on, Latin-1
//! (Windows-1252); a file whose earlier lines were UTF-8 beyond ASCII and a later one is
//! not is refused.

use super::entry::{Booking, Direction, Entry, Format, Item, StatementHeader};
use super::read::{
    Each, Failure, MAX_TOKEN, Source, clean, give, iban, iban_shaped, minor_units, quote, reference,
};
use crate::domain::{Currency, Money};
use chrono::{Datelike, NaiveDate};
use std::borrow::Cow;
use std::io::BufRead;

/// SWIFT's line width for `:86:`: a line this long was cut at the margin.
const WIDTH: usize = 65;

/// Reads an MT940 file from `source` (positioned at its start), handing each item to
/// `each`.
pub(super) fn read(mut source: Source<'_>, each: &mut Each<'_>) -> Result<Format, Failure> {
    let mut reader = Mt940 {
        each,
        encoding: Encoding::Undecided,
        statement: None,
        statements: 0,
        entry: None,
        last: Last::Outside,
    };
    let mut line = Vec::with_capacity(256);
    loop {
        let no = source.line();
        if !read_line(&mut source, &mut line, no)? {
            break;
        }
        reader.line(no, &line)?;
    }
    reader.finish(source.line())
}

/// The next line into `out` (without its `\n`); `false` at the end of the input.
fn read_line(source: &mut Source<'_>, out: &mut Vec<u8>, no: u64) -> Result<bool, Failure> {
    out.clear();
    loop {
        let available = source
            .fill_buf()
            .map_err(|e| Failure::at(no, format!("the file could not be read: {e}")))?;
        if available.is_empty() {
            return Ok(!out.is_empty());
        }
        let (take, done) = match memchr::memchr(b'\n', available) {
            Some(i) => (i, true),
            None => (available.len(), false),
        };
        if out.len() + take > MAX_TOKEN + 1 {
            return Err(Failure::at(
                no,
                format!(
                    "the line is longer than {} KiB; not a statement line",
                    MAX_TOKEN / 1024
                ),
            ));
        }
        out.extend_from_slice(&available[..take]);
        source.consume(take + usize::from(done));
        if done {
            return Ok(true);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// Only ASCII so far.
    Undecided,
    Utf8,
    Latin1,
}

/// What the last tag was, for its continuation lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Last {
    /// No statement open: lines are headers, skipped.
    Outside,
    /// A tag whose continuation lines are not read.
    Skipped,
    Account,
    Number,
    Entry,
    Details,
}

#[derive(Debug)]
struct Statement {
    line: u64,
    reference: String,
    account: String,
    number: String,
    currency: Option<Currency>,
    announced: bool,
    closed: bool,
}

/// An entry being read: its `:61:` and `:86:` lines.
#[derive(Debug)]
struct Pending {
    line: u64,
    first: String,
    more: Vec<String>,
    /// `:86:` lines with their width as written (the first counts its `:86:`).
    details: Vec<(String, usize)>,
    size: usize,
}

impl Pending {
    fn grow(&mut self, by: usize, no: u64) -> Result<(), Failure> {
        self.size += by + 1;
        if self.size > MAX_TOKEN {
            return Err(Failure::at(
                no,
                format!(
                    "the entry that starts on line {} is longer than {} KiB",
                    self.line,
                    MAX_TOKEN / 1024
                ),
            ));
        }
        Ok(())
    }
}

struct Mt940<'e, 'x> {
    each: &'e mut Each<'x>,
    encoding: Encoding,
    statement: Option<Statement>,
    statements: u64,
    entry: Option<Pending>,
    last: Last,
}

impl Mt940<'_, '_> {
    fn decode<'a>(&mut self, no: u64, raw: &'a [u8]) -> Result<Cow<'a, str>, Failure> {
        if raw.is_ascii() {
            // ASCII reads the same in both encodings and decides nothing
            return Ok(Cow::Borrowed(std::str::from_utf8(raw).unwrap_or_default()));
        }
        match (self.encoding, std::str::from_utf8(raw)) {
            (Encoding::Latin1, _) => {}
            (Encoding::Utf8 | Encoding::Undecided, Ok(s)) => {
                self.encoding = Encoding::Utf8;
                return Ok(Cow::Borrowed(s));
            }
            (Encoding::Utf8, Err(_)) => {
                return Err(Failure::at(
                    no,
                    "the line is not UTF-8, where earlier lines of the file were: the file \
                     mixes encodings",
                ));
            }
            (Encoding::Undecided, Err(_)) => self.encoding = Encoding::Latin1,
        }
        let (text, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(raw);
        Ok(text)
    }

    fn open(&self) -> bool {
        self.statement.as_ref().is_some_and(|s| !s.closed)
    }

    fn line(&mut self, no: u64, raw: &[u8]) -> Result<(), Failure> {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text = self.decode(no, raw)?;
        let mut s: &str = &text;
        if no == 1 {
            s = s.strip_prefix('\u{FEFF}').unwrap_or(s);
        }
        // transmission framing (SOH, STX, ETX) some banks wrap a file in
        s = s.trim_matches(['\u{1}', '\u{2}', '\u{3}']);
        if s.starts_with('{') {
            // SWIFT blocks: `{1:…}{2:…}{3:…}{4:` and the text block may start on the line
            match s.find("{4:") {
                Some(i) => {
                    self.message_end(no)?;
                    s = &s[i + 3..];
                    if s.trim().is_empty() {
                        return Ok(());
                    }
                }
                None if self.open() => return self.continuation(no, s),
                None => return Ok(()),
            }
        }
        let trimmed = s.trim_end();
        if trimmed.starts_with("-}")
            || ((trimmed == "-" || trimmed.starts_with("-XXX")) && !self.open())
        {
            return self.message_end(no);
        }
        match split_tag(s) {
            Some((tag, value)) => self.tag(no, tag, value),
            None => self.continuation(no, s),
        }
    }

    /// The end of a SWIFT message (`-}`, `-`): its statement must be complete.
    fn message_end(&mut self, no: u64) -> Result<(), Failure> {
        if let Some(st) = &self.statement
            && !st.closed
        {
            return Err(Failure::at(
                no,
                format!(
                    "the statement that starts on line {} ends without its closing balance \
                     (:62F:): the file is truncated or damaged",
                    st.line
                ),
            ));
        }
        self.statement = None;
        self.last = Last::Outside;
        Ok(())
    }

    fn tag(&mut self, no: u64, tag: &str, value: &str) -> Result<(), Failure> {
        if tag == "20" {
            return self.start(no, value);
        }
        let Some(st) = &mut self.statement else {
            if matches!(tag, "61" | "86" | "60F" | "60M" | "62F" | "62M" | "25") {
                return Err(Failure::at(
                    no,
                    format!(":{tag}: outside a statement (no :20: before it)"),
                ));
            }
            return Ok(());
        };
        if st.closed {
            if tag == "61" {
                return Err(Failure::at(
                    no,
                    "an entry (:61:) after the statement's closing balance",
                ));
            }
            // :64:, :65:, :86: with the statement's totals: not read
            self.last = Last::Skipped;
            return Ok(());
        }
        match tag {
            "25" => {
                st.account = value.to_owned();
                self.last = Last::Account;
            }
            "28" | "28C" => {
                st.number = value.to_owned();
                self.last = Last::Number;
            }
            "60F" | "60M" | "60" => {
                let currency = balance(value, no, tag)?;
                st.currency = Some(currency);
                self.last = Last::Skipped;
                self.announce(no)?;
            }
            "61" => {
                self.flush()?;
                if st_currency(&self.statement).is_none() {
                    return Err(Failure::at(
                        no,
                        "an entry (:61:) before the statement's opening balance (:60F:)",
                    ));
                }
                let mut p = Pending {
                    line: no,
                    first: String::new(),
                    more: Vec::new(),
                    details: Vec::new(),
                    size: 0,
                };
                p.grow(value.len(), no)?;
                p.first = value.to_owned();
                self.entry = Some(p);
                self.last = Last::Entry;
            }
            "86" => match &mut self.entry {
                Some(p) => {
                    p.grow(value.len(), no)?;
                    p.details
                        .push((value.to_owned(), value.chars().count() + tag.len() + 2));
                    self.last = Last::Details;
                }
                // information on the statement as a whole
                None => self.last = Last::Skipped,
            },
            "62F" | "62M" | "62" => {
                self.flush()?;
                let Some(st) = &mut self.statement else {
                    return Ok(());
                };
                let currency = balance(value, no, tag)?;
                match st.currency {
                    None => {
                        return Err(Failure::at(
                            no,
                            "the closing balance (:62F:) of a statement without an opening \
                             balance (:60F:)",
                        ));
                    }
                    Some(c) if c != currency => {
                        return Err(Failure::at(
                            no,
                            format!(
                                "the closing balance is in {}, the opening balance in {}",
                                currency.code(),
                                c.code()
                            ),
                        ));
                    }
                    Some(_) => {}
                }
                st.closed = true;
                self.last = Last::Skipped;
            }
            // :13D:, :21:, :34F:, :NS:, :90C:, :90D: and whatever a bank adds: not read
            _ => self.last = Last::Skipped,
        }
        Ok(())
    }

    fn start(&mut self, no: u64, value: &str) -> Result<(), Failure> {
        if let Some(st) = &self.statement
            && !st.closed
        {
            return Err(Failure::at(
                no,
                format!(
                    "a new statement (:20:) starts before the one that starts on line {} \
                     reached its closing balance (:62F:)",
                    st.line
                ),
            ));
        }
        self.statements += 1;
        self.statement = Some(Statement {
            line: no,
            reference: value.trim().to_owned(),
            account: String::new(),
            number: String::new(),
            currency: None,
            announced: false,
            closed: false,
        });
        self.last = Last::Skipped;
        Ok(())
    }

    fn continuation(&mut self, no: u64, s: &str) -> Result<(), Failure> {
        if !self.open() {
            return Ok(());
        }
        match self.last {
            Last::Outside | Last::Skipped => {}
            Last::Account => {
                if let Some(st) = &mut self.statement
                    && st.account.len() + s.len() <= 256
                {
                    st.account.push_str(s.trim_end());
                }
            }
            Last::Number => {
                if let Some(st) = &mut self.statement
                    && st.number.len() + s.len() <= 256
                {
                    st.number.push_str(s.trim());
                }
            }
            Last::Entry => {
                if let Some(p) = &mut self.entry {
                    p.grow(s.len(), no)?;
                    p.more.push(s.to_owned());
                }
            }
            Last::Details => {
                if let Some(p) = &mut self.entry {
                    p.grow(s.len(), no)?;
                    p.details.push((s.to_owned(), s.chars().count()));
                }
            }
        }
        Ok(())
    }

    /// Hands on the statement header, once, at its opening balance.
    fn announce(&mut self, no: u64) -> Result<(), Failure> {
        let Some(st) = &mut self.statement else {
            return Ok(());
        };
        if st.announced {
            return Ok(());
        }
        let account = account(&st.account);
        if account.is_empty() {
            return Err(Failure::at(
                no,
                format!(
                    "the statement that starts on line {} names no account (:25:) before its \
                     opening balance",
                    st.line
                ),
            ));
        }
        st.account = account.clone();
        st.announced = true;
        let id = match (st.reference.is_empty(), st.number.is_empty()) {
            (false, false) => Some(format!("{}/{}", st.reference, st.number)),
            (false, true) => Some(st.reference.clone()),
            (true, false) => Some(st.number.clone()),
            (true, true) => None,
        };
        let header = StatementHeader {
            format: Format::Mt940,
            account,
            id,
            line: st.line,
        };
        give(self.each, Item::Statement(header))
    }

    /// Hands on the entry being read, if any.
    fn flush(&mut self) -> Result<(), Failure> {
        let Some(p) = self.entry.take() else {
            return Ok(());
        };
        let Some(st) = &self.statement else {
            return Ok(());
        };
        let entry = entry(st, &p)?;
        give(self.each, Item::Entry(entry))
    }

    fn finish(mut self, no: u64) -> Result<Format, Failure> {
        if let Some(st) = &self.statement
            && !st.closed
        {
            return Err(Failure::at(
                no,
                format!(
                    "the file ends before the statement that starts on line {} reached its \
                     closing balance (:62F:): it is truncated",
                    st.line
                ),
            ));
        }
        self.flush()?;
        if self.statements == 0 {
            return Err(Failure::at(no, "the MT940 file holds no statement (:20:)"));
        }
        Ok(Format::Mt940)
    }
}

fn st_currency(st: &Option<Statement>) -> Option<Currency> {
    st.as_ref().and_then(|s| s.currency)
}

/// `:61:…` → (`61`, `…`); tags are two digits and an optional letter, or `NS`.
fn split_tag(s: &str) -> Option<(&str, &str)> {
    let rest = s.strip_prefix(':')?;
    let end = rest.find(':')?;
    let tag = &rest[..end];
    let b = tag.as_bytes();
    let ok = tag == "NS"
        || (b.len() == 2 && b.iter().all(u8::is_ascii_digit))
        || (b.len() == 3 && b[..2].iter().all(u8::is_ascii_digit) && b[2].is_ascii_uppercase());
    ok.then(|| (tag, &rest[end + 1..]))
}

/// The account of `:25:` as stored: an IBAN upper case without spaces and without the
/// currency some banks glue on (`NL12INGB0001234567EUR`, `NL12RABO0123456789 EUR`);
/// anything else as written, the currency suffix dropped.
fn account(value: &str) -> String {
    let t = value.trim();
    let mut words = t.split_whitespace();
    let first = words.next().unwrap_or("");
    let rest: Vec<&str> = words.collect();
    let t = match rest.as_slice() {
        [code] if Currency::parse(code).is_ok() && code.len() == 3 => first,
        _ => t,
    };
    let n = t.len();
    let t = if n > 3
        && t.is_char_boundary(n - 3)
        && t[n - 3..].bytes().all(|b| b.is_ascii_uppercase())
        && t[..n - 3].ends_with(|c: char| c.is_ascii_digit())
        && Currency::parse(&t[n - 3..]).is_ok()
    {
        &t[..n - 3]
    } else {
        t
    };
    if iban_shaped(t) {
        iban(t)
    } else {
        t.to_owned()
    }
}

/// A balance (`C140219EUR662,23`): checked whole; its currency.
fn balance(value: &str, no: u64, tag: &str) -> Result<Currency, Failure> {
    let v = value.trim();
    let bad = |why: &str| {
        Failure::at(
            no,
            format!(
                "the balance :{tag}:{} cannot be read: {why}",
                quote(v).trim_matches('"')
            ),
        )
    };
    let b = v.as_bytes();
    let (Some(date), Some(code), Some(amount)) = (v.get(1..7), v.get(7..10), v.get(10..)) else {
        return Err(bad("not D/C, date, currency and amount"));
    };
    if b.len() < 11 || !matches!(b[0], b'C' | b'D') {
        return Err(bad("not D/C, date, currency and amount"));
    }
    yymmdd(date).ok_or_else(|| bad("its date is not a date"))?;
    let currency = Currency::parse(code).map_err(|e| bad(&e.0))?;
    let (int, frac) = amount
        .split_once(',')
        .ok_or_else(|| bad("its amount has no decimal comma"))?;
    minor_units(amount, int, frac, currency).map_err(|e| bad(&e))?;
    Ok(currency)
}

/// `YYMMDD`, the years 1980 to 2079.
fn yymmdd(s: &str) -> Option<NaiveDate> {
    if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let yy: i32 = s[..2].parse().ok()?;
    let year = if yy < 80 { 2000 + yy } else { 1900 + yy };
    NaiveDate::from_ymd_opt(year, s[2..4].parse().ok()?, s[4..].parse().ok()?)
}

/// The `MMDD` entry date in the year that puts it nearest the value date.
fn near(value: NaiveDate, mmdd: &str) -> Option<NaiveDate> {
    let (m, d): (u32, u32) = (mmdd[..2].parse().ok()?, mmdd[2..].parse().ok()?);
    (value.year() - 1..=value.year() + 1)
        .filter_map(|y| NaiveDate::from_ymd_opt(y, m, d))
        .min_by_key(|d| (*d - value).num_days().abs())
}

/// What `:61:` says.
#[derive(Debug)]
struct Line61 {
    value: NaiveDate,
    booking: NaiveDate,
    direction: Direction,
    reversal: bool,
    amount: Money,
    customer: String,
    bank: Option<String>,
    /// Text after a padded 16-character customer reference (Rabobank's old format:
    /// the counterparty's name).
    inline: Option<String>,
}

fn line61(s: &str, currency: Currency, no: u64) -> Result<Line61, Failure> {
    let bad = |why: String| Failure::at(no, format!("the entry (:61:) cannot be read: {why}"));
    let b = s.as_bytes();
    let value = s
        .get(..6)
        .and_then(yymmdd)
        .ok_or_else(|| bad(format!("{} does not start with a date", quote(s))))?;
    let mut i = 6;
    let mut booking = value;
    if b.len() >= 10 && b[6..10].iter().all(u8::is_ascii_digit) {
        booking = near(value, &s[6..10])
            .ok_or_else(|| bad(format!("its entry date {} is not a date", quote(&s[6..10]))))?;
        i = 10;
    }
    let rest = &s[i..];
    let (direction, reversal, mark) = if rest.starts_with("RC") {
        (Direction::Debit, true, 2)
    } else if rest.starts_with("RD") {
        (Direction::Credit, true, 2)
    } else if rest.starts_with('C') {
        (Direction::Credit, false, 1)
    } else if rest.starts_with('D') {
        (Direction::Debit, false, 1)
    } else {
        return Err(bad(format!(
            "{} has no debit/credit mark (C, D, RC, RD) after its date",
            quote(s)
        )));
    };
    i += mark;
    if b.get(i).is_some_and(u8::is_ascii_uppercase) {
        i += 1; // funds code
    }
    let start = i;
    while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b',') {
        i += 1;
    }
    let text = &s[start..i];
    let Some((int, frac)) = text.split_once(',') else {
        return Err(bad(format!(
            "its amount {} has no decimal comma",
            quote(text)
        )));
    };
    if frac.contains(',') {
        return Err(bad(format!("its amount {} has two commas", quote(text))));
    }
    let minor = minor_units(text, int, frac, currency).map_err(bad)?;
    // transaction type: a letter and three letters, digits or spaces
    if b.len() >= i + 4
        && b[i].is_ascii_alphabetic()
        && b[i + 1..i + 4]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b' ')
    {
        i += 4;
    }
    let refs = s.get(i..).unwrap_or("");
    let (mut customer, bank) = match refs.split_once("//") {
        Some((c, k)) => (c, Some(k)),
        None => (refs, None),
    };
    let mut inline = None;
    if bank.is_none()
        && let Some((cut, _)) = customer.char_indices().nth(16)
        && customer[..cut].ends_with(' ')
    {
        inline = clean(&customer[cut..]);
        customer = &customer[..cut];
    }
    Ok(Line61 {
        value,
        booking,
        direction,
        reversal,
        amount: Money { minor, currency },
        customer: customer.trim().to_owned(),
        bank: bank.and_then(reference),
        inline,
    })
}

/// What `:86:` says, in whichever layout.
#[derive(Debug, Default, PartialEq, Eq)]
struct Details {
    name: Option<String>,
    iban: Option<String>,
    remittance: Option<String>,
    structured: Option<String>,
    end_to_end: Option<String>,
    return_reason: Option<String>,
}

fn entry(st: &Statement, p: &Pending) -> Result<Entry, Failure> {
    let currency = st.currency.unwrap_or(Currency::EUR);
    let f = line61(&p.first, currency, p.line)?;
    let volksbank = iban_shaped(&st.account)
        && st
            .account
            .get(4..8)
            .is_some_and(|bank| matches!(bank, "ASNB" | "SNSB" | "RBRB"));
    let d = details(&p.details, volksbank);
    // supplementary details: the first line after :61: that is not ING's /TRCD/
    let supplementary = p
        .more
        .iter()
        .map(|l| l.trim())
        .find(|l| !l.is_empty() && !l.starts_with('/'));
    let customer_is_iban = iban_shaped(&f.customer);
    let name = d
        .name
        .or_else(|| {
            customer_is_iban
                .then(|| supplementary.and_then(clean))
                .flatten()
        })
        .or(f.inline);
    let counter_iban = d
        .iban
        .or_else(|| customer_is_iban.then(|| iban(&f.customer)))
        .or_else(|| supplementary.filter(|s| iban_shaped(s)).map(iban));
    Ok(Entry {
        account: st.account.clone(),
        booking_date: Some(f.booking),
        value_date: Some(f.value),
        amount: f.amount,
        direction: f.direction,
        booking: Booking::Booked,
        reversal: f.reversal,
        return_reason: d.return_reason,
        counterparty_name: name,
        counterparty_iban: counter_iban,
        remittance: d.remittance,
        structured_reference: d.structured,
        bank_reference: f.bank,
        end_to_end_id: d.end_to_end,
        part: 0,
        line: p.line,
    })
}

/// The lines joined as they were cut: nothing between them.
fn tight(lines: &[(String, usize)]) -> String {
    lines.iter().map(|(l, _)| l.as_str()).collect()
}

/// The lines joined as free text: a space after a line shorter than SWIFT's width
/// (a real break), nothing after a full one (a word cut at the margin).
fn wrapped(lines: &[(String, usize)]) -> String {
    let mut out = String::new();
    for (i, (l, width)) in lines.iter().enumerate() {
        out.push_str(l);
        if i + 1 < lines.len() && *width < WIDTH {
            out.push(' ');
        }
    }
    out
}

fn details(lines: &[(String, usize)], volksbank: bool) -> Details {
    if lines.is_empty() {
        return Details::default();
    }
    let joined = tight(lines);
    let t = joined.trim_start();
    let b = t.as_bytes();
    let coded = |sep: u8| {
        b.len() >= 6
            && b[..3].iter().all(u8::is_ascii_digit)
            && b[3] == sep
            && b[4..6].iter().all(u8::is_ascii_digit)
    };
    if coded(b'?') {
        german(t)
    } else if coded(b'>') {
        triodos(t)
    } else if starts_with_key(t) {
        slashed(t)
    } else if volksbank {
        // de Volksbank: the counterparty's IBAN and name on the first line (or nothing,
        // for a card payment), the description on the lines after it
        let first = lines[0].0.trim();
        let token = first.split_whitespace().next().unwrap_or("");
        if first.is_empty() || iban_shaped(token) {
            Details {
                name: clean(&first[token.len()..]),
                iban: iban_shaped(token).then(|| iban(token)),
                remittance: clean(&wrapped(&lines[1..])),
                ..Details::default()
            }
        } else {
            free(&wrapped(lines))
        }
    } else {
        free(&wrapped(lines))
    }
}

/// The keys of the structured layout, longer before shorter where one starts another.
const KEYS: &[&str] = &[
    "CDTRREFTP",
    "CDTRREF",
    "TRTP",
    "EREF",
    "PREF",
    "MARF",
    "CSID",
    "CNTP",
    "REMI",
    "RTRN",
    "PURP",
    "ULTC",
    "ULTD",
    "ULTB",
    "EXCH",
    "CHGS",
    "BUSP",
    "BENM",
    "ORDP",
    "NAME",
    "ADDR",
    "IBAN",
    "BIC",
    "ISDT",
    "SUM",
    "TRCD",
    "ISSR",
    "OCMT",
    "SVCL",
    "ID",
    "CD",
];

/// The key at the start of `s` (`/EREF/…` → `EREF`).
fn key_at(s: &str) -> Option<&'static str> {
    let rest = s.strip_prefix('/')?;
    KEYS.iter()
        .find(|k| rest.starts_with(**k) && rest[k.len()..].starts_with('/'))
        .copied()
}

fn starts_with_key(t: &str) -> bool {
    key_at(t).is_some()
}

/// The structured layout: `/KEY/value` pairs, a value running to the next known key.
fn slashed(t: &str) -> Details {
    let mut found: Vec<(usize, &'static str)> = Vec::new();
    for (i, _) in t.match_indices('/') {
        if let Some(k) = key_at(&t[i..]) {
            // a key's closing slash may not start the next key (`/CNTP//NAME/`)
            if found.last().is_none_or(|(j, prev)| i >= j + prev.len() + 2) {
                found.push((i, k));
            }
        }
    }
    let mut values: Vec<(&str, &str)> = Vec::new();
    for (n, (i, k)) in found.iter().enumerate() {
        let from = i + k.len() + 2;
        let to = found.get(n + 1).map_or(t.len(), |(j, _)| *j);
        let v = t.get(from..to).unwrap_or("");
        values.push((k, v.strip_suffix('/').unwrap_or(v)));
    }
    let get = |key: &str| values.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let mut d = Details::default();
    // the counterparty: /CNTP/iban/bic/name/city, or /BENM/ or /ORDP/ alike
    for key in ["CNTP", "BENM", "ORDP"] {
        let Some(v) = get(key).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        let parts: Vec<&str> = v.split('/').collect();
        if d.iban.is_none() {
            d.iban = parts
                .first()
                .filter(|p| iban_shaped(p.trim()))
                .map(|p| iban(p));
        }
        if d.name.is_none() {
            d.name = parts.get(2).and_then(|p| clean(p));
        }
    }
    if d.name.is_none() {
        d.name = get("NAME").and_then(clean);
    }
    if d.iban.is_none() {
        d.iban = get("IBAN")
            .map(str::trim)
            .filter(|v| iban_shaped(v))
            .map(iban);
    }
    if let Some(remi) = get("REMI") {
        if let Some(text) = remi.strip_prefix("USTD//") {
            d.remittance = clean(text);
        } else if let Some(strd) = remi.strip_prefix("STRD/") {
            // STRD/CUR/ref, STRD/ISO/ref
            let r = strd.split_once('/').map_or(strd, |(_, r)| r);
            d.structured = reference(r.trim_end_matches('/'));
        } else if let Some(text) = remi.strip_prefix("//") {
            d.remittance = clean(text);
        } else {
            d.remittance = clean(remi);
        }
    }
    if d.structured.is_none() {
        d.structured = get("CDTRREF").and_then(reference);
    }
    d.end_to_end = get("EREF").and_then(reference);
    d.return_reason = get("RTRN").and_then(|v| reference(v.split('/').next().unwrap_or("")));
    d
}

/// Keywords of ABN AMRO's (and Knab's) free text, longer before shorter.
const WORDS: &[&str] = &[
    "OMSCHRIJVING:",
    "BETALINGSKENM.:",
    "ID DEBITEUR:",
    "MACHTIGING:",
    "INCASSANT:",
    "KENMERK:",
    "NAAM:",
    "IBAN:",
    "BIC:",
    "REK:",
];

/// Free text: ABN AMRO's keywords where present, else the remittance as it stands.
fn free(text: &str) -> Details {
    let has = |w: &str| text.contains(w);
    if !(has("NAAM:") || has("OMSCHRIJVING:") || has("IBAN:")) {
        return Details {
            remittance: clean(text),
            ..Details::default()
        };
    }
    let mut found: Vec<(usize, &str)> = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let at_word = i == 0 || text[..i].ends_with([' ', '/']);
        if at_word && let Some(w) = WORDS.iter().find(|w| text[i..].starts_with(**w)) {
            found.push((i, w));
            i += w.len();
            continue;
        }
        i += text[i..].chars().next().map_or(1, char::len_utf8);
    }
    let value = |word: &str| {
        found
            .iter()
            .enumerate()
            .find(|(_, (_, w))| *w == word)
            .map(|(n, (at, w))| {
                let end = found.get(n + 1).map_or(text.len(), |(j, _)| *j);
                text[at + w.len()..end].trim().trim_end_matches('/').trim()
            })
    };
    let prefix = text[..found.first().map_or(text.len(), |(j, _)| *j)].trim();
    let iban_of = |v: &str| {
        let first = v.split_whitespace().next().unwrap_or("");
        iban_shaped(first).then(|| iban(first))
    };
    Details {
        name: value("NAAM:").and_then(clean),
        iban: value("IBAN:")
            .and_then(iban_of)
            .or_else(|| value("REK:").and_then(iban_of)),
        remittance: value("OMSCHRIJVING:").and_then(clean).or_else(|| {
            (!prefix.starts_with("SEPA"))
                .then(|| clean(prefix))
                .flatten()
        }),
        structured: value("BETALINGSKENM.:").and_then(reference),
        end_to_end: value("KENMERK:").and_then(reference),
        return_reason: None,
    }
}

/// Sub-fields `<sep>NN` (`?20…`, `>20…`) after a three-digit code, in order.
fn subfields(t: &str, sep: char) -> Vec<(u8, &str)> {
    let b = t.as_bytes();
    let mut marks: Vec<usize> = t
        .match_indices(sep)
        .map(|(i, _)| i)
        .filter(|&i| b.len() >= i + 3 && b[i + 1..i + 3].iter().all(u8::is_ascii_digit))
        .collect();
    marks.dedup();
    let mut out = Vec::with_capacity(marks.len());
    for (n, &i) in marks.iter().enumerate() {
        let end = marks.get(n + 1).copied().unwrap_or(t.len());
        if i + 3 > end {
            continue;
        }
        let code = (b[i + 1] - b'0') * 10 + (b[i + 2] - b'0');
        out.push((code, &t[i + 3..end]));
    }
    out
}

/// The German layout (`166?00GUTSCHRIFT?20…?32name`): `?20`–`?29` and `?60`–`?63`
/// the purpose (with its SEPA keywords `EREF+`, `SVWZ+`…), `?31` the account, `?32`
/// and `?33` the name.
fn german(t: &str) -> Details {
    let fields = subfields(t, '?');
    let concat = |keep: &dyn Fn(u8) -> bool| -> String {
        fields
            .iter()
            .filter(|(c, _)| keep(*c))
            .map(|(_, v)| *v)
            .collect()
    };
    let purpose = concat(&|c| (20..=29).contains(&c) || (60..=63).contains(&c));
    let name = concat(&|c| c == 32 || c == 33);
    let account = concat(&|c| c == 31);
    let sepa = sepa_keywords(&purpose);
    let (remittance, end_to_end) = match &sepa {
        Some(parts) => (
            parts
                .iter()
                .find(|(k, _)| *k == "SVWZ")
                .and_then(|(_, v)| clean(v)),
            parts
                .iter()
                .find(|(k, _)| *k == "EREF")
                .and_then(|(_, v)| reference(v)),
        ),
        None => (clean(&purpose), None),
    };
    Details {
        name: clean(&name),
        iban: iban_shaped(account.trim()).then(|| iban(&account)),
        remittance,
        structured: None,
        end_to_end,
        return_reason: None,
    }
}

/// The German SEPA keywords (`EREF+…SVWZ+…`), or `None` where the purpose has none.
fn sepa_keywords(purpose: &str) -> Option<Vec<(&'static str, &str)>> {
    const SEPA: &[&str] = &[
        "EREF", "KREF", "MREF", "CRED", "DEBT", "SVWZ", "ABWA", "ABWE", "IBAN", "BIC ", "COAM",
        "OAMT", "PURP", "MDAT", "SQTP", "ORCR", "ORMR", "DDAT",
    ];
    let mut marks: Vec<(usize, &'static str)> = Vec::new();
    for (i, _) in purpose.match_indices('+') {
        if i >= 4
            && let Some(k) = purpose
                .get(i - 4..i)
                .and_then(|w| SEPA.iter().find(|k| **k == w))
        {
            marks.push((i - 4, k));
        }
    }
    if marks.is_empty() {
        return None;
    }
    Some(
        marks
            .iter()
            .enumerate()
            .map(|(n, (at, k))| {
                let end = marks.get(n + 1).map_or(purpose.len(), |(j, _)| *j);
                (*k, purpose.get(at + 5..end).unwrap_or(""))
            })
            .collect(),
    )
}

/// Triodos' old layout (`000>100555555555>20…>31…`): `>10` the counterparty's account,
/// `>20`–`>29` the description.
fn triodos(t: &str) -> Details {
    let fields = subfields(t, '>');
    let description: String = fields
        .iter()
        .filter(|(c, _)| (20..=29).contains(c))
        .map(|(_, v)| *v)
        .collect();
    let account = fields.iter().find(|(c, _)| *c == 10).map(|(_, v)| v.trim());
    Details {
        iban: account.filter(|a| iban_shaped(a)).map(iban),
        remittance: clean(&description),
        ..Details::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(ls: &[&str]) -> Vec<(String, usize)> {
        ls.iter()
            .enumerate()
            .map(|(i, l)| {
                (
                    l.to_string(),
                    l.chars().count() + if i == 0 { 4 } else { 0 },
                )
            })
            .collect()
    }

    #[test]
    fn ing_structured() {
        let d = details(
            &lines(&[
                "/EREF/EV12341REP1231456T1234//CNTP/NL32INGB0000012345/INGBNL2",
                "A/ING BANK NV INZAKE WEB///REMI/USTD//EV10001REP1000000T1000/",
            ]),
            false,
        );
        assert_eq!(d.end_to_end.as_deref(), Some("EV12341REP1231456T1234"));
        assert_eq!(d.iban.as_deref(), Some("NL32INGB0000012345"));
        assert_eq!(d.name.as_deref(), Some("ING BANK NV INZAKE WEB"));
        assert_eq!(d.remittance.as_deref(), Some("EV10001REP1000000T1000"));
        let d = details(
            &lines(&["/RTRN/MS03//EREF/x//REMI/STRD/CUR/9001123412341234/"]),
            false,
        );
        assert_eq!(d.structured.as_deref(), Some("9001123412341234"));
        assert_eq!(d.return_reason.as_deref(), Some("MS03"));
        assert_eq!(d.remittance, None);
    }

    #[test]
    fn rabobank_and_abn_layouts() {
        let d = details(
            &lines(&[
                "/ORDP//NAME/R. SMITH/ADDR/Green market 74 3311BE Sheepcity Nederl",
                "and NL/REMI/Test money paid by other partner:",
                "/ISDT/2014-01-02",
            ]),
            false,
        );
        assert_eq!(d.name.as_deref(), Some("R. SMITH"));
        assert_eq!(
            d.remittance.as_deref(),
            Some("Test money paid by other partner:")
        );
        let d = details(
            &lines(&[
                "SEPA IDEAL                       IBAN: NL70ABNA0888888888",
                "BIC: ABNANL2A                    NAAM: NS GROEP INZAKE NSR IDEA",
                "OMSCHRIJVING: 4851430136 0030000 735822580 NS E-TICKET(S)",
                "KENMERK: 26-01-2014 18:14 003000 0735822580",
            ]),
            false,
        );
        assert_eq!(d.name.as_deref(), Some("NS GROEP INZAKE NSR IDEA"));
        assert_eq!(d.iban.as_deref(), Some("NL70ABNA0888888888"));
        assert_eq!(
            d.remittance.as_deref(),
            Some("4851430136 0030000 735822580 NS E-TICKET(S)")
        );
        assert_eq!(
            d.end_to_end.as_deref(),
            Some("26-01-2014 18:14 003000 0735822580")
        );
    }

    #[test]
    fn statement_lines() {
        let eur = Currency::EUR;
        let l = line61("1402200220C1,56NTRFEREF//00000000001005", eur, 1).unwrap();
        assert_eq!(l.amount.minor, 156);
        assert_eq!(l.customer, "EREF");
        assert_eq!(l.bank.as_deref(), Some("00000000001005"));
        let l = line61("0709040904RCR204,88NRTINONREF", eur, 1).unwrap();
        assert!(l.reversal);
        assert_eq!(l.direction, Direction::Debit);
        assert_eq!(l.amount.minor, 20488);
        let l = line61(
            "110527D000000001213,28N0440121470966      W.P. Jansen     ",
            eur,
            1,
        )
        .unwrap();
        assert_eq!(l.customer, "0121470966");
        assert_eq!(l.inline.as_deref(), Some("W.P. Jansen"));
        // the entry date across the year end
        let l = line61("1912311231D1,NTRFNONREF", eur, 1).unwrap();
        assert_eq!(l.booking, NaiveDate::from_ymd_opt(2019, 12, 31).unwrap());
        let l = line61("2001020101D1,NTRFNONREF", eur, 1).unwrap();
        assert_eq!(l.booking, NaiveDate::from_ymd_opt(2020, 1, 1).unwrap());
        let l = line61("1912310102D1,NTRFNONREF", eur, 1).unwrap();
        assert_eq!(l.booking, NaiveDate::from_ymd_opt(2020, 1, 2).unwrap());
        for bad in [
            "1402200220C1.56NTRF",
            "1402200220C1,565NTRF",
            "1402200220X1,56NTRF",
            "14022",
            "1402200220C156NTRF",
        ] {
            assert!(line61(bad, eur, 1).is_err(), "{bad}");
        }
    }

    #[test]
    fn accounts() {
        assert_eq!(account("NL69INGB0123456789EUR"), "NL69INGB0123456789");
        assert_eq!(account("NL34RABO0142623393 EUR"), "NL34RABO0142623393");
        assert_eq!(account("1291.99.348EUR"), "1291.99.348");
        assert_eq!(account("INGB0001234567"), "INGB0001234567");
        assert_eq!(account("TRIODOSBANK/0666666666"), "TRIODOSBANK/0666666666");
        assert_eq!(account("0878787878      "), "0878787878");
    }
}
