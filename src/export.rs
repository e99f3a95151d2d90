//! `export-paid`: the payments received through payment links and iDEAL QR codes, for the
//! accounting software (README, *Reconciliation*): a CSV, or an ISO 20022 camt.053
//! bank-to-customer statement of a clearing account.
//!
//! Every paid link and every iDEAL QR payment (its transaction id in `link_ref`) is one
//! line or entry, also for an invoice that was paid twice (the accounting must see every
//! payment it has to book or refund). Values a spreadsheet would run as a formula are
//! neutralised in the CSV; every value is escaped in the XML. It formats; the queries and
//! the statements' numbers and balances are the store's.

use std::io::Write;

use crate::store::Store;

use crate::domain::money::format_minor;
use crate::store::payments::{self, Filter, Payment};
use crate::store::statements;

/// The header, in the contract's order.
pub const HEADER: [&str; 6] = [
    "invoice_reference",
    "amount",
    "currency",
    "paid_at",
    "link_ref",
    "method",
];

/// Writes the payments the filter selects as CSV; calls `each` for every payment written
/// (`--new` marks them); returns how many.
pub fn write_paid(
    db: &Store,
    filter: Filter,
    out: impl Write,
    mut each: impl FnMut(&Payment) -> anyhow::Result<()>,
) -> anyhow::Result<usize> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(HEADER)?;
    let mut n = 0;
    let filter = Filter {
        transfers: true,
        ..filter
    };
    payments::for_each_paid(db, filter, false, |p| {
        each(&p)?;
        w.write_record([
            neutralise(p.reference.as_str()).as_ref(),
            &format_minor(p.amount.minor, p.amount.currency.exponent()),
            p.amount.currency.code(),
            &p.paid_at.to_text(),
            neutralise(&p.payment_ref).as_ref(),
            p.kind.method(),
        ])?;
        n += 1;
        Ok(())
    })?;
    w.flush()?;
    Ok(n)
}

/// The account a camt.053 statement describes (`[reconciliation]`).
#[derive(Debug, Clone)]
pub struct Account<'a> {
    /// Its IBAN (spaces removed, upper case).
    pub iban: &'a str,
    /// Its name, if set.
    pub name: Option<&'a str>,
}

/// What a camt.053 file held.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// The file's message id.
    pub msg_id: String,
    /// Entries written.
    pub entries: usize,
    /// Statements (one per currency).
    pub statements: usize,
}

/// One statement of a camt.053 file: one currency's account for the day, numbered and
/// balanced on from the statement before it in that currency.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Statement {
    /// `<MsgId>-<currency>`.
    id: String,
    /// Its currency.
    currency: crate::domain::Currency,
    /// Its electronic sequence number: one more than the last in this currency.
    seq: i64,
    /// The balance it opens with (the last one's closing balance) and closes with.
    opening_minor: i64,
    closing_minor: i64,
    /// The payments it holds.
    entries: i64,
}

/// The statements of the next file, by currency code: one for every currency paid in and
/// for every currency with a chain even when nothing was paid in it (the books see each
/// account's day closed, balance kept); with neither (the very first export, nothing
/// paid), one EUR statement. Reads only.
fn number_statements(db: &Store, msg_id: &str, filter: Filter) -> anyhow::Result<Vec<Statement>> {
    // The clearing account's statement never repeats a transfer the bank booked.
    let filter = Filter {
        transfers: false,
        ..filter
    };
    let mut totals = std::collections::BTreeMap::new();
    for (currency, count, sum) in payments::totals(db, filter)? {
        totals.insert(currency.code().to_string(), (currency, count, sum));
    }
    for currency in statements::chains(db)? {
        totals
            .entry(currency.code().to_string())
            .or_insert((currency, 0, 0));
    }
    if totals.is_empty() {
        totals.insert("EUR".into(), (crate::domain::Currency::parse("EUR")?, 0, 0));
    }
    totals
        .into_iter()
        .map(|(code, (currency, entries, sum))| {
            let (seq, opening_minor) = statements::last(db, currency)?
                .map(|(seq, closing)| (seq + 1, closing))
                .unwrap_or((1, 0));
            Ok(Statement {
                id: format!("{msg_id}-{code}"),
                currency,
                seq,
                opening_minor,
                closing_minor: opening_minor + sum,
                entries,
            })
        })
        .collect()
}

/// Writes one camt.053.001.02 document with one statement per currency of the payments
/// the filter selects and per currency that has a statement chain (see
/// `number_statements`), and records the statements (and, with `filter.only_new`, marks
/// the payments) in `db`'s open unit of work: the caller keeps it once the file is
/// complete. `now` is the creation time.
pub fn write_camt053(
    db: &Store,
    account: &Account<'_>,
    filter: Filter,
    now: chrono::DateTime<chrono::Local>,
    out: impl Write,
) -> anyhow::Result<Written> {
    // The file says the local time; the database keeps the instant.
    let created = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    let created_at = crate::domain::Timestamp::at(now.with_timezone(&chrono::Utc));
    // Numbered, not dated: a file whose commit a crash lost is written again with the
    // same id, whatever day the next run comes.
    let msg_id = format!("INVSYNC-{:08}", statements::next_file_number(db)?);
    let plan = number_statements(db, &msg_id, filter)?;
    let mut rows = std::collections::HashMap::new();
    for st in &plan {
        let row = statements::record(
            db,
            &statements::NewStatement {
                msg_id: &msg_id,
                stmt_id: &st.id,
                currency: st.currency,
                seq: st.seq,
                opening_minor: st.opening_minor,
                closing_minor: st.closing_minor,
                entries: st.entries,
                new_only: filter.only_new,
                created_at,
            },
        )?;
        rows.insert(st.currency.code(), row);
    }

    let mut doc = Document {
        out: std::io::BufWriter::new(out),
        account,
        created: &created,
        today: now.date_naive(),
    };
    doc.start(&msg_id)?;
    let mut written = Written {
        msg_id: msg_id.clone(),
        ..Written::default()
    };
    // The statements are written by currency code, as the payments come; `next` is the
    // first of `plan` not yet started.
    let mut next = 0;
    let filter = Filter {
        transfers: false,
        ..filter
    };
    payments::for_each_paid(db, filter, true, |p| {
        let code = p.amount.currency.code();
        if next == 0 || plan[next - 1].currency.code() != code {
            if next > 0 {
                doc.end_statement()?;
            }
            // The currencies before this one that had no payment: empty statements.
            while next < plan.len() && plan[next].currency.code() != code {
                doc.empty_statement(&plan[next])?;
                written.statements += 1;
                next += 1;
            }
            let Some(st) = plan.get(next) else {
                anyhow::bail!(
                    "payment {} in {code}, a currency its statements do not hold",
                    p.payment_ref
                );
            };
            doc.start_statement(st)?;
            written.statements += 1;
            next += 1;
        }
        if filter.only_new {
            statements::mark(db, p.kind, p.id, Some(rows[code]), created_at)?;
        }
        doc.entry(&p)?;
        written.entries += 1;
        Ok(())
    })?;
    if next > 0 {
        doc.end_statement()?;
    }
    // The currencies after the last one paid in: empty statements, balances carried on.
    for st in &plan[next..] {
        doc.empty_statement(st)?;
        written.statements += 1;
    }
    doc.finish()?;
    Ok(written)
}

/// The XML of one camt.053 document, written as it streams: only formatting, no numbers
/// of its own.
struct Document<'a, W: Write> {
    out: std::io::BufWriter<W>,
    account: &'a Account<'a>,
    /// The creation time, as written.
    created: &'a str,
    /// The day the balances are dated.
    today: chrono::NaiveDate,
}

impl<W: Write> Document<'_, W> {
    fn start(&mut self, msg_id: &str) -> anyhow::Result<()> {
        let out = &mut self.out;
        writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
        writeln!(
            out,
            r#"<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">"#
        )?;
        writeln!(out, "  <BkToCstmrStmt>")?;
        writeln!(out, "    <GrpHdr>")?;
        writeln!(out, "      <MsgId>{}</MsgId>", xml(msg_id))?;
        writeln!(out, "      <CreDtTm>{}</CreDtTm>", self.created)?;
        writeln!(out, "    </GrpHdr>")?;
        Ok(())
    }

    fn start_statement(&mut self, st: &Statement) -> anyhow::Result<()> {
        let (out, code) = (&mut self.out, st.currency.code());
        writeln!(out, "    <Stmt>")?;
        writeln!(out, "      <Id>{}</Id>", xml(&st.id))?;
        writeln!(out, "      <ElctrncSeqNb>{}</ElctrncSeqNb>", st.seq)?;
        writeln!(out, "      <CreDtTm>{}</CreDtTm>", self.created)?;
        writeln!(out, "      <Acct>")?;
        writeln!(out, "        <Id>")?;
        writeln!(out, "          <IBAN>{}</IBAN>", xml(self.account.iban))?;
        writeln!(out, "        </Id>")?;
        writeln!(out, "        <Ccy>{code}</Ccy>")?;
        if let Some(name) = self.account.name {
            writeln!(out, "        <Nm>{}</Nm>", xml(&cut(name, 70)))?;
        }
        writeln!(out, "      </Acct>")?;
        for (tp, minor) in [("OPBD", st.opening_minor), ("CLBD", st.closing_minor)] {
            writeln!(out, "      <Bal>")?;
            writeln!(out, "        <Tp>")?;
            writeln!(out, "          <CdOrPrtry>")?;
            writeln!(out, "            <Cd>{tp}</Cd>")?;
            writeln!(out, "          </CdOrPrtry>")?;
            writeln!(out, "        </Tp>")?;
            writeln!(
                out,
                r#"        <Amt Ccy="{code}">{}</Amt>"#,
                format_minor(minor.abs(), st.currency.exponent())
            )?;
            let sign = if minor < 0 { "DBIT" } else { "CRDT" };
            writeln!(out, "        <CdtDbtInd>{sign}</CdtDbtInd>")?;
            writeln!(out, "        <Dt>")?;
            writeln!(out, "          <Dt>{}</Dt>", self.today)?;
            writeln!(out, "        </Dt>")?;
            writeln!(out, "      </Bal>")?;
        }
        Ok(())
    }

    fn end_statement(&mut self) -> std::io::Result<()> {
        writeln!(self.out, "    </Stmt>")
    }

    /// A statement without entries: its balance carried on.
    fn empty_statement(&mut self, st: &Statement) -> anyhow::Result<()> {
        self.start_statement(st)?;
        Ok(self.end_statement()?)
    }

    fn entry(&mut self, p: &Payment) -> anyhow::Result<()> {
        write_entry(&mut self.out, p)
    }

    fn finish(mut self) -> anyhow::Result<()> {
        writeln!(self.out, "  </BkToCstmrStmt>")?;
        writeln!(self.out, "</Document>")?;
        self.out.flush()?;
        Ok(())
    }
}

/// One credit entry: booked and valued on the local day of the payment.
fn write_entry(out: &mut impl Write, p: &Payment) -> anyhow::Result<()> {
    let day = crate::policy::calendar::local_day(p.paid_at);
    let code = p.amount.currency.code();
    let amount = format_minor(p.amount.minor, p.amount.currency.exponent());
    let entry_ref = entry_ref(&p.payment_ref);
    writeln!(out, "      <Ntry>")?;
    writeln!(out, "        <NtryRef>{}</NtryRef>", xml(&entry_ref))?;
    writeln!(out, r#"        <Amt Ccy="{code}">{amount}</Amt>"#)?;
    writeln!(out, "        <CdtDbtInd>CRDT</CdtDbtInd>")?;
    writeln!(out, "        <Sts>BOOK</Sts>")?;
    writeln!(out, "        <BookgDt>")?;
    writeln!(out, "          <Dt>{day}</Dt>")?;
    writeln!(out, "        </BookgDt>")?;
    writeln!(out, "        <ValDt>")?;
    writeln!(out, "          <Dt>{day}</Dt>")?;
    writeln!(out, "        </ValDt>")?;
    writeln!(
        out,
        "        <AcctSvcrRef>{}</AcctSvcrRef>",
        xml(&entry_ref)
    )?;
    // A received credit transfer (ISO bank transaction code PMNT / RCDT / OTHR).
    writeln!(out, "        <BkTxCd>")?;
    writeln!(out, "          <Domn>")?;
    writeln!(out, "            <Cd>PMNT</Cd>")?;
    writeln!(out, "            <Fmly>")?;
    writeln!(out, "              <Cd>RCDT</Cd>")?;
    writeln!(out, "              <SubFmlyCd>OTHR</SubFmlyCd>")?;
    writeln!(out, "            </Fmly>")?;
    writeln!(out, "          </Domn>")?;
    writeln!(out, "        </BkTxCd>")?;
    writeln!(out, "        <NtryDtls>")?;
    writeln!(out, "          <TxDtls>")?;
    writeln!(out, "            <Refs>")?;
    writeln!(
        out,
        "              <EndToEndId>{}</EndToEndId>",
        xml(&cut(p.reference.as_str(), 35))
    )?;
    writeln!(out, "            </Refs>")?;
    writeln!(out, "            <AmtDtls>")?;
    writeln!(out, "              <TxAmt>")?;
    writeln!(out, r#"                <Amt Ccy="{code}">{amount}</Amt>"#)?;
    writeln!(out, "              </TxAmt>")?;
    writeln!(out, "            </AmtDtls>")?;
    if !p.customer_name.trim().is_empty() {
        writeln!(out, "            <RltdPties>")?;
        writeln!(out, "              <Dbtr>")?;
        writeln!(
            out,
            "                <Nm>{}</Nm>",
            xml(&cut(p.customer_name.trim(), 140))
        )?;
        writeln!(out, "              </Dbtr>")?;
        writeln!(out, "            </RltdPties>")?;
    }
    writeln!(out, "            <RmtInf>")?;
    writeln!(
        out,
        "              <Ustrd>{}</Ustrd>",
        xml(&cut(p.reference.as_str(), 140))
    )?;
    writeln!(out, "            </RmtInf>")?;
    writeln!(out, "          </TxDtls>")?;
    writeln!(out, "        </NtryDtls>")?;
    // The reference once more where importers that read no transaction details (AqBanking's
    // camt profile) take the purpose from.
    writeln!(
        out,
        "        <AddtlNtryInf>{}</AddtlNtryInf>",
        xml(&cut(p.reference.as_str(), 500))
    )?;
    writeln!(out, "      </Ntry>")?;
    Ok(())
}

/// A payment reference as an entry reference (at most 35 characters): as it is when it
/// fits, else without its dashes (`pml-` and a UUID, 40 characters, become 35), else cut.
fn entry_ref(payment_ref: &str) -> String {
    if payment_ref.chars().count() <= 35 {
        return payment_ref.to_string();
    }
    cut(&payment_ref.replace('-', ""), 35)
}

/// A value as XML text: the five markup characters escaped, and the characters XML 1.0
/// cannot carry at all (control characters other than tab, LF, CR) dropped.
pub fn xml(value: &str) -> String {
    let clean: String = value
        .chars()
        .filter(|&c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
        .filter(|&c| !matches!(c, '\u{FFFE}' | '\u{FFFF}'))
        .collect();
    crate::domain::text::escape_html(&clean)
}

/// `s` cut to at most `max` characters (the standard's MaxNText limits).
fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// A text value as a spreadsheet must show it: one that starts like a formula (`=`, `+`,
/// `-`, `@`, or a tab / carriage return that some spreadsheets skip) gets a leading `'`.
pub fn neutralise(value: &str) -> std::borrow::Cow<'_, str> {
    match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{value}").into(),
        _ => value.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_text_is_escaped_and_cleaned() {
        assert_eq!(
            xml("A & B <c> \"d\" 'e'"),
            "A &amp; B &lt;c&gt; &quot;d&quot; &#39;e&#39;"
        );
        assert_eq!(xml("a\u{0}b\u{7}c\td"), "abc\td");
        assert_eq!(cut("abcdef", 3), "abc");
        assert_eq!(
            entry_ref("pml-da30973c-fe99-836e-52c4-19adbcd774f1"),
            "pmlda30973cfe99836e52c419adbcd774f1"
        );
        assert_eq!(entry_ref("3f2c1d9e-1111-2222-3333-444455556666").len(), 32);
        assert_eq!(entry_ref("pml-short"), "pml-short");
        assert_eq!(cut("éééé", 2), "éé");
    }

    #[test]
    fn formulas_are_neutralised() {
        assert_eq!(neutralise("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(neutralise("+31"), "'+31");
        assert_eq!(neutralise("-1"), "'-1");
        assert_eq!(neutralise("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(neutralise("\tx"), "'\tx");
        assert_eq!(neutralise("INV-1"), "INV-1");
        assert_eq!(neutralise(""), "");
    }
}
