//! `status`: the invoices as a table or as JSON.

use std::io::Write;

use anyhow::Context;

use super::*;

pub(super) fn status(
    config: &Config,
    invoice: Option<&str>,
    state: Option<State>,
    json: bool,
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
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let mut n = 0usize;
        invoices::for_each_view(store.conn(), invoice, state, |v| {
            let item = serde_json::to_string_pretty(&v)?;
            out.write_all(if n == 0 { b"[\n" } else { b",\n" })?;
            for (i, line) in item.lines().enumerate() {
                if i > 0 {
                    out.write_all(b"\n")?;
                }
                write!(out, "  {line}")?;
            }
            n += 1;
            Ok(())
        })
        .context("cannot write the status")?;
        if let Some(reference) = invoice
            && n == 0
        {
            return Ok(no_such(reference));
        }
        out.write_all(if n == 0 { b"[]\n" } else { b"\n]\n" })?;
        out.flush()?;
        return Ok(Outcome::ok());
    }
    let list = invoices::list(store.conn(), invoice, state)?;
    if let Some(reference) = invoice
        && list.is_empty()
    {
        return Ok(no_such(reference));
    }
    write_table(&mut std::io::stdout().lock(), &list)?;
    Ok(Outcome::ok())
}

/// Strips what a terminal would interpret (escape sequences, line breaks).
pub(super) fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

pub(super) fn write_table(out: &mut impl Write, list: &[InvoiceView]) -> anyhow::Result<()> {
    if list.is_empty() {
        writeln!(out, "no invoices")?;
        return Ok(());
    }
    let dash = |v: &Option<String>| v.as_deref().map(printable).unwrap_or_else(|| "-".into());
    let header = [
        "INVOICE",
        "CUSTOMER",
        "AMOUNT",
        "DUE",
        "STATE",
        "LINK",
        "LINK URI",
        "MAIL",
        "LAST ERROR",
    ];
    let rows: Vec<[String; 9]> = list
        .iter()
        .map(|v| {
            let customer = if v.customer_name.is_empty() {
                v.customer_email.clone()
            } else {
                format!("{} <{}>", v.customer_name, v.customer_email)
            };
            [
                printable(&v.invoice_reference),
                printable(&customer),
                format!("{} {}", v.currency, v.amount),
                v.due_date.clone(),
                v.state.as_str().to_string(),
                dash(&v.link_ref),
                dash(&v.link_uri),
                v.mail_state.clone(),
                dash(&v.last_error),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(w - c.chars().count() + 2));
            }
        }
        s.trim_end().to_string()
    };
    writeln!(out, "{}", line(&header.map(String::from)))?;
    for r in &rows {
        writeln!(out, "{}", line(r))?;
    }
    Ok(())
}
