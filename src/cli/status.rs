//! `status`: the invoices as a table or as JSON.

use std::io::Write;

use anyhow::Context;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use super::*;
use crate::store::links::LinkState;

pub(super) fn status(
    config: &Config,
    invoice: Option<&str>,
    state: Option<State>,
    json: bool,
    wide: bool,
) -> anyhow::Result<Outcome> {
    let store = open_existing(config)?;
    let no_such = |reference: &str| Outcome {
        exit: Exit::Fatal,
        message: Some(format!(
            "there is no invoice with the reference {reference:?}"
        )),
    };
    if json {
        // Streamed: each invoice is written as it is read, as the elements of a
        // pretty-printed JSON array.
        let mut array = JsonArray::new(std::io::BufWriter::new(std::io::stdout().lock()));
        invoices::for_each_view(&store, invoice, state, |v| array.push(&v))
            .context("cannot write the status")?;
        if let Some(reference) = invoice
            && array.is_empty()
        {
            return Ok(no_such(reference));
        }
        array.finish()?;
        return Ok(Outcome::ok());
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if let Some(reference) = invoice {
        let mut found = false;
        invoices::for_each_view(&store, Some(reference), state, |v| {
            found = true;
            write_detail(&mut out, &v)
        })?;
        if !found {
            return Ok(no_such(reference));
        }
    } else {
        let mut table = Table::new(&mut out, wide)?;
        invoices::for_each_view(&store, None, state, |v| table.row(&v))
            .context("cannot write the status")?;
        table.finish()?;
    }
    out.flush()?;
    Ok(Outcome::ok())
}

/// A JSON array written as its elements are read (pretty-printed, two spaces in), so a
/// listing of any length streams.
pub(super) struct JsonArray<W: Write> {
    out: W,
    n: usize,
}

impl<W: Write> JsonArray<W> {
    pub(super) fn new(out: W) -> Self {
        JsonArray { out, n: 0 }
    }

    /// Writes one element.
    pub(super) fn push(&mut self, v: &impl serde::Serialize) -> anyhow::Result<()> {
        let item = serde_json::to_string_pretty(v)?;
        self.out
            .write_all(if self.n == 0 { b"[\n" } else { b",\n" })?;
        for (i, line) in item.lines().enumerate() {
            if i > 0 {
                self.out.write_all(b"\n")?;
            }
            write!(self.out, "  {line}")?;
        }
        self.n += 1;
        Ok(())
    }

    /// Whether nothing was written.
    pub(super) fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Closes the array.
    pub(super) fn finish(mut self) -> anyhow::Result<()> {
        self.out
            .write_all(if self.n == 0 { b"[]\n" } else { b"\n]\n" })?;
        self.out.flush()?;
        Ok(())
    }
}

/// Strips what a terminal would interpret (escape sequences, line breaks).
pub(super) fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// One column of the table: its title, its width in terminal cells, and its side.
struct Column {
    title: &'static str,
    width: usize,
    right: bool,
}

const fn col(title: &'static str, width: usize) -> Column {
    Column {
        title,
        width,
        right: false,
    }
}

/// The default table: 100 terminal columns at most. Long cells end in an ellipsis; the
/// customer is the name (the address when there is none); `settled_elsewhere` shows as
/// `settled`. `--wide` and `status INVOICE` show everything.
const NARROW: [Column; 7] = [
    col("INVOICE", 18),
    col("CUSTOMER", 21),
    Column {
        title: "AMOUNT",
        width: 14,
        right: true,
    },
    col("DUE", 10),
    col("STATE", 7),
    col("LINK", 12),
    col("MAIL", 6),
];

/// `--wide`: every column, nothing cut; a cell wider than its column pushes the rest of
/// its line to the right (the table is written as it is read, so the widths are fixed).
const WIDE: [Column; 12] = [
    col("INVOICE", 20),
    col("CUSTOMER", 44),
    Column {
        title: "AMOUNT",
        width: 16,
        right: true,
    },
    col("DUE", 10),
    col("STATE", 17),
    col("LINK", 12),
    col("LINK REF", 40),
    col("LINK URI", 48),
    col("MAIL", 6),
    col("REMINDERS", 9),
    col("NEXT REMINDER", 13),
    col("LAST ERROR", 0),
];

/// The status table, written row by row as the invoices are read: memory does not grow
/// with their number.
struct Table<'w, W: Write> {
    out: &'w mut W,
    columns: &'static [Column],
    /// `--wide`: every column, nothing cut.
    wide: bool,
    rows: u64,
    with_error: u64,
}

impl<'w, W: Write> Table<'w, W> {
    fn new(out: &'w mut W, wide: bool) -> anyhow::Result<Self> {
        let columns: &'static [Column] = if wide { &WIDE } else { &NARROW };
        let mut t = Table {
            out,
            columns,
            wide,
            rows: 0,
            with_error: 0,
        };
        let titles: Vec<String> = columns.iter().map(|c| c.title.to_string()).collect();
        t.line(&titles)?;
        Ok(t)
    }

    fn row(&mut self, v: &InvoiceView) -> anyhow::Result<()> {
        self.rows += 1;
        if v.last_error.is_some() {
            self.with_error += 1;
        }
        let dash = |o: Option<&str>| o.map(printable).unwrap_or_else(|| "-".into());
        let amount = format!("{} {}", v.currency, v.amount);
        let link = dash(v.link_state.map(LinkState::as_str));
        let cells: Vec<String> = if self.wide {
            let live = v.link_active == Some(true);
            vec![
                printable(v.invoice_reference.as_str()),
                printable(&customer(v)),
                amount,
                v.due_date.to_string(),
                v.state.as_str().to_string(),
                link,
                dash(v.link_ref.as_ref().map(|r| r.as_str())),
                // A dead link's address is not offered as if it could still be paid.
                dash(v.link_uri.as_deref().filter(|_| live)),
                v.mail_state.clone(),
                v.reminders_sent.to_string(),
                dash(v.next_reminder_on.map(|d| d.to_string()).as_deref()),
                dash(v.last_error.as_deref()),
            ]
        } else {
            let who = if v.customer_name.is_empty() {
                v.customer_email.as_str()
            } else {
                v.customer_name.as_str()
            };
            let state = match v.state {
                State::SettledElsewhere => "settled",
                s => s.as_str(),
            };
            vec![
                printable(v.invoice_reference.as_str()),
                printable(who),
                amount,
                v.due_date.to_string(),
                state.to_string(),
                link,
                v.mail_state.clone(),
            ]
        };
        self.line(&cells)
    }

    fn line(&mut self, cells: &[String]) -> anyhow::Result<()> {
        let mut s = String::new();
        let last = cells.len() - 1;
        for (i, (c, column)) in cells.iter().zip(self.columns).enumerate() {
            let cut = if self.wide {
                std::borrow::Cow::Borrowed(c.as_str())
            } else {
                fit(c, column.width)
            };
            let pad = column.width.saturating_sub(cut.width());
            if column.right {
                s.push_str(&" ".repeat(pad));
                s.push_str(&cut);
            } else {
                s.push_str(&cut);
                if i < last {
                    s.push_str(&" ".repeat(pad));
                }
            }
            if i < last {
                s.push_str("  ");
            }
        }
        writeln!(self.out, "{}", s.trim_end())?;
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        if self.rows == 0 {
            writeln!(self.out, "no invoices")?;
        } else if self.with_error > 0 && !self.wide {
            writeln!(
                self.out,
                "{} invoice(s) have a last error: `status --wide` lists them, `status INVOICE` shows one",
                self.with_error
            )?;
        }
        Ok(())
    }
}

/// `Name <address>`, or the address alone.
fn customer(v: &InvoiceView) -> String {
    if v.customer_name.is_empty() {
        v.customer_email.clone()
    } else {
        format!("{} <{}>", v.customer_name, v.customer_email)
    }
}

/// `s` cut to `width` terminal cells (wide characters count two), ending in `…` when cut.
pub(super) fn fit(s: &str, width: usize) -> std::borrow::Cow<'_, str> {
    if s.width() <= width {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    std::borrow::Cow::Owned(out)
}

/// One invoice, every field on its own line, nothing cut (`status INVOICE`).
fn write_detail(out: &mut impl Write, v: &InvoiceView) -> anyhow::Result<()> {
    let dash = |o: Option<&str>| o.map(printable).unwrap_or_else(|| "-".into());
    let link = match (&v.link_state, &v.link_ref) {
        (None, _) => "-".to_string(),
        (Some(state), r) => {
            let r = r
                .as_ref()
                .map(|r| printable(r.as_str()))
                .unwrap_or_default();
            format!("{state} {r}").trim_end().to_string()
        }
    };
    let uri = match (&v.link_uri, v.link_active) {
        (Some(u), Some(true)) => printable(u),
        (Some(u), _) => format!("{} (no longer payable)", printable(u)),
        (None, _) => "-".into(),
    };
    let fields = [
        ("invoice", printable(v.invoice_reference.as_str())),
        ("customer", printable(&customer(v))),
        ("amount", format!("{} {}", v.currency, v.amount)),
        ("due", v.due_date.to_string()),
        ("state", v.state.as_str().to_string()),
        ("link", link),
        ("link uri", uri),
        ("iDEAL QR", dash(v.qr_url.as_deref())),
        ("mail", v.mail_state.clone()),
        (
            "reminders",
            match &v.next_reminder_on {
                Some(on) => format!("{} sent, next on {on}", v.reminders_sent),
                None => format!("{} sent, none planned", v.reminders_sent),
            },
        ),
        ("paid at", dash(v.paid_at.map(|t| t.to_text()).as_deref())),
        ("paid by", dash(v.paid_by.as_deref())),
        (
            "received",
            v.amount_received
                .as_ref()
                .map(|a| format!("{} {a}", v.currency))
                .unwrap_or_else(|| "-".into()),
        ),
        (
            "overpaid",
            v.overpaid
                .as_ref()
                .map(|a| format!("{} {a}: refund it", v.currency))
                .unwrap_or_else(|| "-".into()),
        ),
        (
            "flags",
            if v.flags.is_empty() {
                "-".into()
            } else {
                v.flags.join(", ")
            },
        ),
        ("transfer", dash(v.creditor_reference.as_deref())),
        ("last error", dash(v.last_error.as_deref())),
    ];
    for (name, value) in fields {
        writeln!(out, "{name:<11} {value}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_counts_display_width_and_ends_in_an_ellipsis() {
        assert_eq!(fit("Ann", 5), "Ann");
        assert_eq!(fit("Bakkerij de Gouden Korenaar", 10), "Bakkerij …");
        assert_eq!(fit("Bakkerij de Gouden Korenaar", 10).width(), 10);
        // Each of these takes two terminal cells.
        let wide = "株式会社東京商事";
        assert_eq!(fit(wide, 9), "株式会社…");
        assert_eq!(fit(wide, 9).width(), 9);
    }
}
