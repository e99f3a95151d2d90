//! ISO 20022 camt.052 (account report), camt.053 (statement) and camt.054
//! (debit/credit notification), any version (`camt.05x.001.02` to `.13` read alike),
//! read as a stream of XML events with quick-xml.
//!
//! Elements are matched by their local name, so a namespace prefix, another namespace
//! or none at all reads the same; the message (`BkToCstmrStmt`, `BkToCstmrAcctRpt`,
//! `BkToCstmrDbtCdtNtfctn`) decides the format. Only what an [`Entry`] needs is kept,
//! and only for the entry being read: an `Ntry` is handed on when it closes, the parts
//! of a batch as each `TxDtls` closes (see [`Entry::part`]).
//!
//! The counterparty is the debtor (`Dbtr`, `DbtrAcct`) of a credit and the creditor of
//! a debit. An `Ntry` whose `TxDtls` all give an amount, two or more of them, is handed
//! on as one entry per `TxDtls` (parts 1, 2, …, each with its own amount, references and
//! counterparty); otherwise as one entry with the `Ntry`'s amount and the details of its
//! first `TxDtls`. A booked entry without `BookgDt` takes its value date as its booking
//! date; one with neither, or without `Sts` or `CdtDbtInd`, is refused.
//!
//! Never honoured, and each refused with its reason: a DTD with an internal subset (so
//! no entity is ever declared, let alone expanded: billion laughs and external entities
//! fail before anything is read), a reference to any entity but the five predefined
//! ones and character references, bytes that are not UTF-8, an encoding declaration
//! other than UTF-8. The [`Source`] under the parser refuses any one event (text,
//! element, comment) longer than [`MAX_TOKEN`]; nesting deeper than [`MAX_DEPTH`] is
//! refused, and so is a document that ends before its root element closes.
//!
//! Amounts are `xs:decimal` as ISO 20022 writes them, with their `Ccy`: digits and at
//! most one `.`; a comma, a sign, an exponent, an empty value, more decimals than the
//! currency has (beyond trailing zeros) or a currency that is not an active ISO 4217
//! one make the file unreadable.

use super::entry::{Booking, Direction, Entry, Format, Item, StatementHeader};
use super::read::{
    Each, Failure, MAX_DEPTH, MAX_TOKEN, OverLimit, Source, clean, give, iban, minor_units, quote,
    reference,
};
use crate::domain::{Currency, Money};
use chrono::NaiveDate;
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

/// The elements the reader knows, by local name; every other is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Document,
    BkToCstmrStmt,
    BkToCstmrAcctRpt,
    BkToCstmrDbtCdtNtfctn,
    Stmt,
    Rpt,
    Ntfctn,
    Id,
    Acct,
    Iban,
    Othr,
    Ntry,
    Amt,
    CdtDbtInd,
    RvslInd,
    Sts,
    Cd,
    BookgDt,
    ValDt,
    Dt,
    DtTm,
    AcctSvcrRef,
    NtryDtls,
    TxDtls,
    Refs,
    EndToEndId,
    AmtDtls,
    TxAmt,
    RltdPties,
    Dbtr,
    Cdtr,
    Pty,
    Nm,
    DbtrAcct,
    CdtrAcct,
    RmtInf,
    Ustrd,
    Strd,
    CdtrRefInf,
    Ref,
    RtrInf,
    Rsn,
    Other,
}

impl Tag {
    fn of(local: &[u8]) -> Tag {
        match local {
            b"Document" => Tag::Document,
            b"BkToCstmrStmt" => Tag::BkToCstmrStmt,
            b"BkToCstmrAcctRpt" => Tag::BkToCstmrAcctRpt,
            b"BkToCstmrDbtCdtNtfctn" => Tag::BkToCstmrDbtCdtNtfctn,
            b"Stmt" => Tag::Stmt,
            b"Rpt" => Tag::Rpt,
            b"Ntfctn" => Tag::Ntfctn,
            b"Id" => Tag::Id,
            b"Acct" => Tag::Acct,
            b"IBAN" => Tag::Iban,
            b"Othr" => Tag::Othr,
            b"Ntry" => Tag::Ntry,
            b"Amt" => Tag::Amt,
            b"CdtDbtInd" => Tag::CdtDbtInd,
            b"RvslInd" => Tag::RvslInd,
            b"Sts" => Tag::Sts,
            b"Cd" => Tag::Cd,
            b"BookgDt" => Tag::BookgDt,
            b"ValDt" => Tag::ValDt,
            b"Dt" => Tag::Dt,
            b"DtTm" => Tag::DtTm,
            b"AcctSvcrRef" => Tag::AcctSvcrRef,
            b"NtryDtls" => Tag::NtryDtls,
            b"TxDtls" => Tag::TxDtls,
            b"Refs" => Tag::Refs,
            b"EndToEndId" => Tag::EndToEndId,
            b"AmtDtls" => Tag::AmtDtls,
            b"TxAmt" => Tag::TxAmt,
            b"RltdPties" => Tag::RltdPties,
            b"Dbtr" => Tag::Dbtr,
            b"Cdtr" => Tag::Cdtr,
            b"Pty" => Tag::Pty,
            b"Nm" => Tag::Nm,
            b"DbtrAcct" => Tag::DbtrAcct,
            b"CdtrAcct" => Tag::CdtrAcct,
            b"RmtInf" => Tag::RmtInf,
            b"Ustrd" => Tag::Ustrd,
            b"Strd" => Tag::Strd,
            b"CdtrRefInf" => Tag::CdtrRefInf,
            b"Ref" => Tag::Ref,
            b"RtrInf" => Tag::RtrInf,
            b"Rsn" => Tag::Rsn,
            _ => Tag::Other,
        }
    }
}

/// The values read, each from one element path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    StmtId,
    AcctIban,
    AcctOther,
    NtryAmt,
    CdtDbtInd,
    RvslInd,
    Sts,
    BookgDt,
    ValDt,
    AcctSvcrRef,
    EndToEndId,
    TxAmt,
    TxAmtDtls,
    DbtrNm,
    DbtrIban,
    CdtrNm,
    CdtrIban,
    Ustrd,
    CdtrRef,
    RtrCd,
}

/// The field an element holds, from its path below the statement (`Stmt`, `Rpt`,
/// `Ntfctn`).
fn field(rel: &[Tag]) -> Option<Field> {
    use Tag::*;
    Some(match rel {
        [Id] => Field::StmtId,
        [Acct, Id, Iban] => Field::AcctIban,
        [Acct, Id, Othr, Id] => Field::AcctOther,
        [Ntry, rest @ ..] => return entry_field(rest),
        _ => return None,
    })
}

/// The field an element holds, from its path below `Ntry`.
fn entry_field(rel: &[Tag]) -> Option<Field> {
    use Tag::*;
    Some(match rel {
        [Amt] => Field::NtryAmt,
        [CdtDbtInd] => Field::CdtDbtInd,
        [RvslInd] => Field::RvslInd,
        [Sts] | [Sts, Cd] => Field::Sts,
        [BookgDt, Dt | DtTm] => Field::BookgDt,
        [ValDt, Dt | DtTm] => Field::ValDt,
        [AcctSvcrRef] => Field::AcctSvcrRef,
        [NtryDtls, TxDtls, rest @ ..] => return detail_field(rest),
        _ => return None,
    })
}

/// The field an element holds, from its path below `TxDtls`.
fn detail_field(rel: &[Tag]) -> Option<Field> {
    use Tag::*;
    Some(match rel {
        [Refs, EndToEndId] => Field::EndToEndId,
        [Amt] => Field::TxAmt,
        [AmtDtls, TxAmt, Amt] => Field::TxAmtDtls,
        [RltdPties, Dbtr, Nm] | [RltdPties, Dbtr, Pty, Nm] => Field::DbtrNm,
        [RltdPties, DbtrAcct, Id, Iban] => Field::DbtrIban,
        [RltdPties, Cdtr, Nm] | [RltdPties, Cdtr, Pty, Nm] => Field::CdtrNm,
        [RltdPties, CdtrAcct, Id, Iban] => Field::CdtrIban,
        [RmtInf, Ustrd] => Field::Ustrd,
        [RmtInf, Strd, CdtrRefInf, Ref] => Field::CdtrRef,
        [RtrInf, Rsn, Cd] => Field::RtrCd,
        _ => return None,
    })
}

/// One statement (or report, or notification) being read.
#[derive(Debug, Default)]
struct Statement {
    line: u64,
    id: Option<String>,
    account: Option<String>,
    announced: bool,
}

/// One `TxDtls`.
#[derive(Debug, Default)]
struct Detail {
    end_to_end_id: Option<String>,
    amount: Option<Money>,
    amount_details: Option<Money>,
    debtor_name: Option<String>,
    debtor_iban: Option<String>,
    creditor_name: Option<String>,
    creditor_iban: Option<String>,
    remittance: String,
    creditor_reference: Option<String>,
    return_reason: Option<String>,
}

impl Detail {
    /// `TxDtls/Amt`, else `TxDtls/AmtDtls/TxAmt/Amt`.
    fn amount(&self) -> Option<Money> {
        self.amount.or(self.amount_details)
    }
}

/// Whether an `Ntry`'s details split it into parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split {
    /// Fewer than two `TxDtls` read so far.
    Undecided,
    /// Every `TxDtls` has an amount: one entry per `TxDtls`.
    Parts,
    /// One entry with the first `TxDtls`'s details.
    Whole,
}

/// One `Ntry` being read.
#[derive(Debug)]
struct Ntry {
    line: u64,
    amount: Option<Money>,
    direction: Option<Direction>,
    reversal: bool,
    booking: Option<Booking>,
    booking_date: Option<NaiveDate>,
    value_date: Option<NaiveDate>,
    bank_reference: Option<String>,
    details: u32,
    split: Split,
    first: Option<Detail>,
    detail: Detail,
}

impl Ntry {
    fn new(line: u64) -> Ntry {
        Ntry {
            line,
            amount: None,
            direction: None,
            reversal: false,
            booking: None,
            booking_date: None,
            value_date: None,
            bank_reference: None,
            details: 0,
            split: Split::Undecided,
            first: None,
            detail: Detail::default(),
        }
    }
}

/// The element whose text is being collected.
#[derive(Debug)]
struct Capture {
    field: Field,
    depth: usize,
    currency: Option<String>,
    line: u64,
}

struct CamtReader<'e, 'x> {
    each: &'e mut Each<'x>,
    format: Option<Format>,
    /// The message the default namespace names, if it names one.
    namespace: Option<Format>,
    stack: Vec<Tag>,
    statement: Option<Statement>,
    ntry: Option<Ntry>,
    capture: Option<Capture>,
    text: String,
    root_closed: bool,
}

/// Reads a camt document from `source` (positioned at its start), handing each item to
/// `each`.
pub(super) fn read(mut source: Source<'_>, each: &mut Each<'_>) -> Result<Format, Failure> {
    source.set_limit(MAX_TOKEN);
    let mut reader = Reader::from_reader(source);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.expand_empty_elements = false;
    let mut state = CamtReader {
        each,
        format: None,
        namespace: None,
        stack: Vec::with_capacity(MAX_DEPTH),
        statement: None,
        ntry: None,
        capture: None,
        text: String::new(),
        root_closed: false,
    };
    let mut buf = Vec::with_capacity(8 * 1024);
    loop {
        reader.get_mut().mark();
        let event = reader.read_event_into(&mut buf);
        let line = reader.get_ref().line();
        if reader.get_ref().over() {
            return Err(too_long(line, &state.stack));
        }
        let event = match event {
            Ok(event) => event,
            Err(e) => return Err(state.xml_error(line, &e)),
        };
        if let Event::Eof = event {
            return state.finish(line);
        }
        state.event(event, line)?;
        buf.clear();
    }
}

/// The reason for an event over [`MAX_TOKEN`].
fn too_long(line: u64, stack: &[Tag]) -> Failure {
    let within = if stack.is_empty() {
        String::new()
    } else {
        format!(" (within element {} levels deep)", stack.len())
    };
    Failure::at(
        line,
        format!(
            "a text, element or comment{within} is longer than {} KiB: refused rather \
             than held in memory",
            MAX_TOKEN / 1024
        ),
    )
}

fn utf8(bytes: &[u8], line: u64) -> Result<&str, Failure> {
    std::str::from_utf8(bytes).map_err(|_| {
        Failure::at(
            line,
            "the file is not valid UTF-8 (camt files are UTF-8; was it saved as Latin-1?)",
        )
    })
}

impl CamtReader<'_, '_> {
    fn xml_error(&self, line: u64, e: &quick_xml::Error) -> Failure {
        if let quick_xml::Error::Io(io) = e
            && io.get_ref().is_some_and(|inner| inner.is::<OverLimit>())
        {
            return too_long(line, &self.stack);
        }
        let what = match e {
            quick_xml::Error::Io(io) => format!("the file could not be read: {io}"),
            quick_xml::Error::Syntax(s) => {
                format!("the XML is broken ({s}); is the file truncated?")
            }
            quick_xml::Error::IllFormed(quick_xml::errors::IllFormedError::UnclosedReference) => {
                "a `&` that starts no entity reference (write `&amp;`)".to_owned()
            }
            other => format!("the XML is not well-formed: {other}"),
        };
        Failure::at(line, what)
    }

    fn event(&mut self, event: Event<'_>, line: u64) -> Result<(), Failure> {
        match event {
            Event::Start(e) => self.start(&e, line, false),
            Event::Empty(e) => self.start(&e, line, true),
            Event::End(_) => self.end(line),
            Event::Text(t) => {
                let s = utf8(&t, line)?;
                self.text(s, line)
            }
            Event::CData(t) => {
                let s = utf8(&t, line)?;
                self.text(s, line)
            }
            Event::GeneralRef(r) => {
                let name = utf8(&r, line)?;
                let c = if r.is_char_ref() {
                    r.resolve_char_ref().ok().flatten().ok_or_else(|| {
                        Failure::at(
                            line,
                            format!("&{name}; is not a character this reader accepts"),
                        )
                    })?
                } else {
                    predefined(name).ok_or_else(|| undefined_entity(line, name))?
                };
                let mut tmp = [0u8; 4];
                self.text(c.encode_utf8(&mut tmp), line)
            }
            Event::DocType(d) => {
                let s = String::from_utf8_lossy(&d);
                if s.contains('[') || s.contains("ENTITY") {
                    // the line of `<!DOCTYPE`
                    let line = line.saturating_sub(memchr::memchr_iter(b'\n', &d).count() as u64);
                    Err(Failure::at(
                        line,
                        "the file declares a DTD with entities (<!DOCTYPE … [ … ]>); a bank \
                         statement has none, and this reader never reads DTDs or expands \
                         entities",
                    ))
                } else {
                    Ok(())
                }
            }
            Event::Decl(d) => {
                if let Some(enc) = d.encoding() {
                    let enc = enc.map_err(|e| {
                        Failure::at(line, format!("the XML declaration is broken: {e}"))
                    })?;
                    let enc = String::from_utf8_lossy(&enc).trim().to_ascii_lowercase();
                    if enc != "utf-8" && enc != "utf8" {
                        return Err(Failure::at(
                            line,
                            format!(
                                "the file declares the encoding {}; camt files are read as UTF-8 only",
                                quote(&enc)
                            ),
                        ));
                    }
                }
                Ok(())
            }
            Event::Comment(t) => utf8(&t, line).map(|_| ()),
            Event::PI(t) => utf8(&t, line).map(|_| ()),
            Event::Eof => Ok(()),
        }
    }

    fn start(&mut self, e: &BytesStart<'_>, end_line: u64, empty: bool) -> Result<(), Failure> {
        let raw: &[u8] = e;
        utf8(raw, end_line)?;
        // the line of the `<`: the tag itself may span lines
        let line = end_line.saturating_sub(memchr::memchr_iter(b'\n', raw).count() as u64);
        if memchr::memchr(b'&', raw).is_some() {
            for attr in e.attributes() {
                let attr = attr.map_err(|err| {
                    Failure::at(line, format!("an attribute is not well-formed: {err}"))
                })?;
                attr.unescape_value()
                    .map_err(|_| self::entity_in_attribute(line))?;
            }
        }
        if self.root_closed {
            return Err(Failure::at(
                line,
                "an element after the end of the document's root element",
            ));
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(Failure::at(
                line,
                format!("elements nest deeper than {MAX_DEPTH} levels; not a bank statement"),
            ));
        }
        let local = e.local_name();
        let tag = Tag::of(local.as_ref());
        self.stack.push(tag);
        let depth = self.stack.len();
        match depth {
            1 if tag != Tag::Document => {
                return Err(Failure::at(
                    line,
                    format!(
                        "an XML file, but not an ISO 20022 camt document: its root element is \
                         <{}>, not <Document>",
                        String::from_utf8_lossy(local.as_ref())
                    ),
                ));
            }
            1 => self.check_namespace(e, line)?,
            2 => {
                let format = match tag {
                    Tag::BkToCstmrStmt => Format::Camt053,
                    Tag::BkToCstmrAcctRpt => Format::Camt052,
                    Tag::BkToCstmrDbtCdtNtfctn => Format::Camt054,
                    _ => {
                        return Err(Failure::at(
                            line,
                            format!(
                                "an ISO 20022 document, but not a bank statement: its message \
                                 is <{}>, not camt.052, camt.053 or camt.054",
                                String::from_utf8_lossy(local.as_ref())
                            ),
                        ));
                    }
                };
                if let Some(ns) = self.namespace
                    && ns != format
                {
                    return Err(Failure::at(
                        line,
                        format!(
                            "the namespace is of {}, but the message is a {} message",
                            ns.name(),
                            format.name()
                        ),
                    ));
                }
                self.format = Some(format);
            }
            3 if matches!(tag, Tag::Stmt | Tag::Rpt | Tag::Ntfctn) => {
                self.statement = Some(Statement {
                    line,
                    ..Statement::default()
                });
            }
            _ => {}
        }
        if depth > 3 && self.statement.is_some() {
            if self.stack[3..] == [Tag::Ntry] {
                self.announce(line)?;
                self.ntry = Some(Ntry::new(line));
            } else if self.stack[3..] == [Tag::Ntry, Tag::NtryDtls, Tag::TxDtls]
                && let Some(ntry) = &mut self.ntry
            {
                ntry.detail = Detail::default();
            }
            if let Some(field) = field(&self.stack[3..]) {
                let currency = if matches!(field, Field::NtryAmt | Field::TxAmt | Field::TxAmtDtls)
                {
                    currency_attribute(e, line)?
                } else {
                    None
                };
                self.capture = Some(Capture {
                    field,
                    depth,
                    currency,
                    line,
                });
                self.text.clear();
            }
        }
        if empty {
            self.end(end_line)?;
        }
        Ok(())
    }

    /// The default namespace, where it names a camt message, must be of the message the
    /// document holds (checked when the message starts); other namespaces are accepted.
    fn check_namespace(&mut self, e: &BytesStart<'_>, line: u64) -> Result<(), Failure> {
        for attr in e.attributes().flatten() {
            if attr.key.as_ref() != b"xmlns" {
                continue;
            }
            let value = String::from_utf8_lossy(&attr.value).into_owned();
            if let Some(i) = value.find("camt.05") {
                let format = match value.as_bytes().get(i + 7) {
                    Some(b'2') => Some(Format::Camt052),
                    Some(b'3') => Some(Format::Camt053),
                    Some(b'4') => Some(Format::Camt054),
                    _ => None,
                };
                if format.is_none() {
                    return Err(Failure::at(
                        line,
                        format!(
                            "the namespace {} is not of camt.052, camt.053 or camt.054",
                            quote(&value)
                        ),
                    ));
                }
                self.namespace = format;
            }
        }
        Ok(())
    }

    fn text(&mut self, s: &str, line: u64) -> Result<(), Failure> {
        if let Some(c) = &self.capture
            && c.depth == self.stack.len()
        {
            if self.text.len() + s.len() > MAX_TOKEN {
                return Err(Failure::at(
                    line,
                    format!(
                        "the text of an element is longer than {} KiB",
                        MAX_TOKEN / 1024
                    ),
                ));
            }
            self.text.push_str(s);
        } else if self.stack.is_empty() && !s.trim().is_empty() {
            return Err(Failure::at(
                line,
                "text outside the document's root element",
            ));
        }
        Ok(())
    }

    fn end(&mut self, line: u64) -> Result<(), Failure> {
        let depth = self.stack.len();
        if let Some(c) = self.capture.take_if(|c| c.depth == depth) {
            let text = std::mem::take(&mut self.text);
            self.store(c, &text)?;
            self.text = text;
        }
        let rel_is = |rel: &[Tag]| self.stack.len() > 3 && self.stack[3..] == *rel;
        if rel_is(&[Tag::Ntry, Tag::NtryDtls, Tag::TxDtls]) {
            self.detail_end()?;
        } else if rel_is(&[Tag::Ntry]) {
            self.ntry_end()?;
        } else if depth == 3 && self.statement.is_some() {
            let start = self.statement.as_ref().map_or(line, |s| s.line);
            self.announce(start)?;
            self.statement = None;
        }
        self.stack.pop();
        if self.stack.is_empty() {
            self.root_closed = true;
        }
        Ok(())
    }

    fn finish(self, line: u64) -> Result<Format, Failure> {
        if !self.stack.is_empty() {
            let open = if self.ntry.is_some() {
                "inside an entry (Ntry)".to_owned()
            } else {
                format!("with {} elements still open", self.stack.len())
            };
            return Err(Failure::at(
                line,
                format!("the file ends {open}: it is truncated"),
            ));
        }
        match self.format {
            Some(format) if self.root_closed => Ok(format),
            _ => Err(Failure::at(
                line,
                "the XML file has no camt message (BkToCstmrStmt, BkToCstmrAcctRpt or \
                 BkToCstmrDbtCdtNtfctn)",
            )),
        }
    }

    /// Hands on the statement header, once, before its first entry.
    fn announce(&mut self, line: u64) -> Result<(), Failure> {
        let format = self.format.unwrap_or(Format::Camt053);
        let Some(st) = &mut self.statement else {
            return Ok(());
        };
        if st.announced {
            return Ok(());
        }
        let Some(account) = st.account.clone() else {
            return Err(Failure::at(
                line,
                "the statement names no account (Acct/Id/IBAN or Acct/Id/Othr/Id) before its \
                 entries",
            ));
        };
        st.announced = true;
        let header = StatementHeader {
            format,
            account,
            id: st.id.clone(),
            line: st.line,
        };
        give(self.each, Item::Statement(header))
    }

    fn store(&mut self, c: Capture, text: &str) -> Result<(), Failure> {
        let line = c.line;
        let amount = |what: &str| -> Result<Money, Failure> {
            read_amount(text, c.currency.as_deref())
                .map_err(|reason| Failure::at(line, format!("{what}: {reason}")))
        };
        if let Some(st) = &mut self.statement {
            match c.field {
                Field::StmtId => st.id = reference(text),
                Field::AcctIban => st.account = Some(iban(text)).filter(|s| !s.is_empty()),
                Field::AcctOther if st.account.is_none() => {
                    st.account = Some(text.trim().to_owned()).filter(|s| !s.is_empty());
                }
                _ => {}
            }
        }
        let Some(n) = &mut self.ntry else {
            return Ok(());
        };
        let d = &mut n.detail;
        match c.field {
            Field::StmtId | Field::AcctIban | Field::AcctOther => {}
            Field::NtryAmt => n.amount = Some(amount("the entry's amount (Amt)")?),
            Field::CdtDbtInd => {
                n.direction = Some(match text.trim() {
                    "CRDT" => Direction::Credit,
                    "DBIT" => Direction::Debit,
                    other => {
                        return Err(Failure::at(
                            line,
                            format!("CdtDbtInd is {}, not CRDT or DBIT", quote(other)),
                        ));
                    }
                });
            }
            Field::RvslInd => {
                n.reversal = match text.trim() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    other => {
                        return Err(Failure::at(
                            line,
                            format!("RvslInd is {}, not true or false", quote(other)),
                        ));
                    }
                };
            }
            Field::Sts => {
                let code = text.trim();
                if !code.is_empty() {
                    n.booking = Some(match code {
                        "BOOK" => Booking::Booked,
                        "PDNG" => Booking::Pending,
                        _ => Booking::Information,
                    });
                }
            }
            Field::BookgDt => n.booking_date = Some(read_date(text, "BookgDt", line)?),
            Field::ValDt => n.value_date = Some(read_date(text, "ValDt", line)?),
            Field::AcctSvcrRef => n.bank_reference = reference(text),
            Field::EndToEndId => d.end_to_end_id = reference(text),
            Field::TxAmt => d.amount = Some(amount("a transaction's amount (TxDtls/Amt)")?),
            Field::TxAmtDtls => {
                d.amount_details = Some(amount("a transaction's amount (AmtDtls/TxAmt/Amt)")?);
            }
            Field::DbtrNm => d.debtor_name = clean(text),
            Field::DbtrIban => d.debtor_iban = Some(iban(text)).filter(|s| !s.is_empty()),
            Field::CdtrNm => d.creditor_name = clean(text),
            Field::CdtrIban => d.creditor_iban = Some(iban(text)).filter(|s| !s.is_empty()),
            Field::Ustrd => {
                if let Some(t) = clean(text) {
                    if d.remittance.len() + t.len() + 1 > MAX_TOKEN {
                        return Err(Failure::at(
                            line,
                            format!(
                                "the remittance information of one transaction is longer than \
                                 {} KiB",
                                MAX_TOKEN / 1024
                            ),
                        ));
                    }
                    if !d.remittance.is_empty() {
                        d.remittance.push(' ');
                    }
                    d.remittance.push_str(&t);
                }
            }
            Field::CdtrRef => {
                if d.creditor_reference.is_none() {
                    d.creditor_reference = reference(text);
                }
            }
            Field::RtrCd => d.return_reason = reference(text),
        }
        Ok(())
    }

    /// A `TxDtls` closed: the first is kept; at the second it is decided whether the
    /// entry splits into parts (both have amounts), and from then on parts go out as
    /// they close.
    fn detail_end(&mut self) -> Result<(), Failure> {
        let Some(n) = &mut self.ntry else {
            return Ok(());
        };
        let detail = std::mem::take(&mut n.detail);
        n.details += 1;
        let k = n.details;
        let out = match (k, n.split) {
            (1, _) => {
                n.first = Some(detail);
                [None, None]
            }
            (2, _) => {
                let first_has = n.first.as_ref().is_some_and(|f| f.amount().is_some());
                if first_has && detail.amount().is_some() {
                    n.split = Split::Parts;
                    [n.first.take().map(|f| (f, 1)), Some((detail, 2))]
                } else {
                    n.split = Split::Whole;
                    [None, None]
                }
            }
            (k, Split::Parts) => {
                if detail.amount().is_none() {
                    return Err(Failure::at(
                        n.line,
                        format!(
                            "the entry's transaction detail {k} gives no amount, where the \
                             ones before it did: its parts cannot be told apart"
                        ),
                    ));
                }
                [Some((detail, k)), None]
            }
            _ => [None, None],
        };
        for (detail, part) in out.into_iter().flatten() {
            self.part(&detail, part)?;
        }
        Ok(())
    }

    fn part(&mut self, detail: &Detail, part: u32) -> Result<(), Failure> {
        let Some(amount) = detail.amount() else {
            return Ok(());
        };
        let entry = self.entry(Some(detail), part, amount)?;
        give(self.each, Item::Entry(entry))
    }

    fn ntry_end(&mut self) -> Result<(), Failure> {
        let Some(n) = &self.ntry else {
            return Ok(());
        };
        let Some(amount) = n.amount else {
            return Err(Failure::at(n.line, "the entry (Ntry) has no amount (Amt)"));
        };
        if n.split != Split::Parts {
            let first = self.ntry.as_mut().and_then(|n| n.first.take());
            let entry = self.entry(first.as_ref(), 0, amount)?;
            give(self.each, Item::Entry(entry))?;
        }
        self.ntry = None;
        Ok(())
    }

    fn entry(&self, detail: Option<&Detail>, part: u32, amount: Money) -> Result<Entry, Failure> {
        let (Some(n), Some(st)) = (&self.ntry, &self.statement) else {
            return Err(Failure::at(0, "an entry outside a statement"));
        };
        let line = n.line;
        let direction = n.direction.ok_or_else(|| {
            Failure::at(line, "the entry (Ntry) has no CdtDbtInd before its details")
        })?;
        let booking = n.booking.ok_or_else(|| {
            Failure::at(
                line,
                "the entry (Ntry) has no status (Sts) before its details",
            )
        })?;
        let booking_date = match (n.booking_date, booking) {
            (Some(d), _) => Some(d),
            (None, Booking::Booked) => Some(n.value_date.ok_or_else(|| {
                Failure::at(
                    line,
                    "the booked entry has neither a booking nor a value date",
                )
            })?),
            (None, _) => None,
        };
        let account = st.account.clone().unwrap_or_default();
        let (name, counter_iban) = match (detail, direction) {
            (Some(d), Direction::Credit) => (d.debtor_name.clone(), d.debtor_iban.clone()),
            (Some(d), Direction::Debit) => (d.creditor_name.clone(), d.creditor_iban.clone()),
            (None, _) => (None, None),
        };
        Ok(Entry {
            account,
            booking_date,
            value_date: n.value_date,
            amount,
            direction,
            booking,
            reversal: n.reversal,
            return_reason: detail.and_then(|d| d.return_reason.clone()),
            counterparty_name: name,
            counterparty_iban: counter_iban,
            remittance: detail
                .map(|d| d.remittance.clone())
                .filter(|r| !r.is_empty()),
            structured_reference: detail.and_then(|d| d.creditor_reference.clone()),
            bank_reference: n.bank_reference.clone(),
            end_to_end_id: detail.and_then(|d| d.end_to_end_id.clone()),
            part,
            line,
        })
    }
}

fn predefined(name: &str) -> Option<char> {
    Some(match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        _ => return None,
    })
}

fn undefined_entity(line: u64, name: &str) -> Failure {
    Failure::at(
        line,
        format!(
            "the entity {} is not defined: only &lt; &gt; &amp; &apos; &quot; and character \
             references are read",
            quote(&format!("&{name};"))
        ),
    )
}

fn entity_in_attribute(line: u64) -> Failure {
    Failure::at(
        line,
        "an attribute refers to an entity that is not defined: only &lt; &gt; &amp; &apos; \
         &quot; and character references are read",
    )
}

/// The `Ccy` attribute of an amount element, unescaped.
fn currency_attribute(e: &BytesStart<'_>, line: u64) -> Result<Option<String>, Failure> {
    for attr in e.attributes() {
        let attr = attr
            .map_err(|err| Failure::at(line, format!("an attribute is not well-formed: {err}")))?;
        if attr.key.local_name().as_ref() == b"Ccy" {
            let value = attr
                .unescape_value()
                .map_err(|_| entity_in_attribute(line))?;
            return Ok(Some(value.into_owned()));
        }
    }
    Ok(None)
}

/// An `Amt` as ISO 20022 writes it: `xs:decimal` digits, at most one `.`, no sign, with
/// an active ISO 4217 `Ccy`.
fn read_amount(text: &str, currency: Option<&str>) -> Result<Money, String> {
    let Some(code) = currency else {
        return Err("the amount has no currency (Ccy)".to_owned());
    };
    let currency = Currency::parse(code).map_err(|e| e.0)?;
    let t = text.trim();
    if t.is_empty() {
        return Err("the amount is empty".to_owned());
    }
    if t.starts_with(['-', '+']) {
        return Err(format!(
            "{} has a sign; camt amounts are never signed (CdtDbtInd gives the direction)",
            quote(t)
        ));
    }
    if t.contains(',') {
        return Err(format!(
            "{} has a comma; camt amounts are written with a point for the decimals and \
             nothing between the thousands",
            quote(t)
        ));
    }
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let minor = minor_units(t, int, frac, currency)?;
    Ok(Money { minor, currency })
}

/// `2024-01-31`, or the date of `2024-01-31T10:00:00+01:00`.
fn read_date(text: &str, what: &str, line: u64) -> Result<NaiveDate, Failure> {
    let t = text.trim();
    let bad = || Failure::at(line, format!("{what} {} is not a date", quote(t)));
    let b = t.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<u32, Failure> {
        match t.get(r) {
            Some(s) if s.bytes().all(|c| c.is_ascii_digit()) => s.parse().map_err(|_| bad()),
            _ => Err(bad()),
        }
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    match b.get(10) {
        None | Some(b'T' | b'Z' | b'+' | b'-') => {}
        Some(_) => return Err(bad()),
    }
    NaiveDate::from_ymd_opt(y as i32, m, d).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_read_strictly() {
        let eur = Some("EUR");
        assert_eq!(read_amount("12.50", eur).unwrap().minor, 1250);
        assert_eq!(read_amount(" 7 ", eur).unwrap().minor, 700);
        for (text, ccy, reason) in [
            ("12,50", eur, "comma"),
            ("12.505", eur, "more decimals"),
            ("-1.00", eur, "sign"),
            ("+1.00", eur, "sign"),
            ("", eur, "empty"),
            ("1e3", eur, "not an amount"),
            ("12.50", Some("XXX"), "XXX"),
            ("12.50", Some("EURO"), "ISO 4217"),
            ("12.50", None, "no currency"),
        ] {
            let e = read_amount(text, ccy).unwrap_err();
            assert!(e.contains(reason), "{text:?} {ccy:?}: {e}");
        }
    }

    #[test]
    fn dates_and_date_times() {
        let d = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
        assert_eq!(read_date("2024-02-29", "BookgDt", 1).unwrap(), d);
        assert_eq!(
            read_date("2024-02-29T23:59:00+01:00", "BookgDt", 1).unwrap(),
            d
        );
        assert_eq!(read_date("2024-02-29+01:00", "BookgDt", 1).unwrap(), d);
        assert!(read_date("2023-02-29", "BookgDt", 1).is_err());
        assert!(read_date("29-02-2024", "BookgDt", 1).is_err());
        assert!(read_date("2024-02-2x", "BookgDt", 1).is_err());
        assert!(read_date("2024-01-3é", "BookgDt", 1).is_err());
        assert!(read_date("2024-01-é", "BookgDt", 1).is_err());
    }
}
