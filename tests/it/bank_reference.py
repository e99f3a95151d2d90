#!/usr/bin/env python3
"""The independent reader that tests/it/bank_formats.rs compares invoice-sync's bank
statement readers with.

    python3 bank_reference.py mt940 FILE...
    python3 bank_reference.py camt FILE...

prints one JSON object: {"files": [{"file": NAME, "error": null | TEXT, "statements":
[...], "entries": [...]}, ...]}. The entries are what the PyPI packages `mt-940` (import
`mt940`, 5.1.1) and `camt053` (0.0.23) read from each file, as they read it, with no
interpretation of ours on top: amounts as decimal strings, dates as ISO dates, names and
texts as the packages give them. Where a package gives less than the comparison needs,
the supplement is marked as ours and kept to a plain DOM walk (see `camt_supplement`).

Needs: pip install mt-940==5.1.1 camt053==0.0.23 (CI installs them).
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from pathlib import Path


def decimal_text(d: Decimal) -> str:
    """`Decimal('-12.50')` -> `'12.5'`: absolute, without trailing zeros, never `1E+3`."""
    text = format(abs(d), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def text_or_none(value: object) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if text.strip() else None


# ---------------------------------------------------------------------------- MT940


def mt940_tags(name: str) -> dict:
    """The tag parsers the package offers for a bank where its defaults do not fit.

    - de Volksbank (ASN, SNS) put the counterparty IBAN (18 characters) where the SWIFT
      customer reference (16) goes: the package ships `StatementASNB` for that.
    - A file hard-wrapped mid-field fails the package's `:28C:` pattern (`:28C:0000` /
      `0`; the number is not compared, so it is read as text) and its `:61:` pattern,
      which allows one supplementary line where the wrapping makes two or three.
    """
    import mt940

    class LenientStatementNumber(mt940.tags.StatementNumber):
        pattern = r"(?P<statement_number>[\s\S]*)$"

    class WrappedStatement(mt940.tags.Statement):
        # the package's own :61: pattern, with supplementary details over any number
        # of lines instead of one
        pattern = mt940.tags.Statement.pattern.replace(
            "(\\n?(?P<extra_details>.*))?", "(\\n?(?P<extra_details>[\\s\\S]*))?"
        )

    tags = {}
    if name.startswith(("asn_", "sns_")):
        statement = mt940.tags.StatementASNB()
        tags[statement.id] = statement
    if "linewrapped" in name:
        number = LenientStatementNumber()
        tags[number.id] = number
        statement = WrappedStatement()
        tags[statement.id] = statement
    return tags


def mt940_file(path: Path) -> dict:
    import mt940

    # Options.all(): the fixes the package's next major release turns on (a reversal of
    # a credit signed as the debit it is, ?31 filed as the counterparty IBAN, a BOM
    # dropped, :86: details kept whole).
    transactions = mt940.models.Transactions(
        tags=mt940_tags(path.name), options=mt940.Options.all()
    )
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("cp1252")
    transactions.parse(text)
    entries = []
    for t in transactions:
        d = t.data
        amount = d["amount"]
        booking = d.get("entry_date") or d["date"]
        entries.append(
            {
                "booking_date": booking.isoformat(),
                "value_date": d["date"].isoformat(),
                "amount": decimal_text(amount.amount),
                "currency": amount.currency,
                "direction": "DBIT" if amount.amount < 0 else "CRDT",
                "status": d.get("status"),
                "customer_reference": text_or_none(d.get("customer_reference")),
                "bank_reference": text_or_none(d.get("bank_reference")),
                "extra_details": text_or_none(d.get("extra_details")),
                "details": text_or_none(d.get("transaction_details")),
                # German ?-sub-fields (:86: 166?00...), parsed by the package (which
                # then drops the raw details).
                "posting_text": text_or_none(d.get("posting_text")),
                "applicant_name": text_or_none(d.get("applicant_name")),
                "applicant_iban": text_or_none(d.get("applicant_iban")),
                "purpose": text_or_none(d.get("purpose")),
                "additional_purpose": text_or_none(d.get("additional_purpose")),
                "end_to_end_reference": text_or_none(d.get("end_to_end_reference")),
            }
        )
    return {"statements": [], "entries": entries}


# ----------------------------------------------------------------------------- camt


def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def child(el, name):
    for c in el:
        if local(c.tag) == name:
            return c
    return None


def children(el, name):
    return [c for c in el if local(c.tag) == name]


def path_text(el, *names):
    for name in names:
        if el is None:
            return None
        el = child(el, name)
    if el is None or el.text is None:
        return None
    return el.text.strip() or None


def camt_supplement(path: Path) -> list[list[dict]]:
    """What `camt053` does not read, from a plain DOM walk (defusedxml, which camt053
    itself parses with): per `Ntry`, per `TxDtls`, the `RmtInf/Ustrd` texts, the first
    `RmtInf/Strd/CdtrRefInf/Ref`, the transaction amount (`Amt` or `AmtDtls/TxAmt/Amt`)
    and both parties' names (`Nm` or, from version 08 on, `Pty/Nm`)."""
    from defusedxml.ElementTree import parse

    root = parse(str(path)).getroot()
    out = []
    for ntry in root.iter():
        if local(ntry.tag) != "Ntry":
            continue
        txs = []
        for dtls in children(ntry, "NtryDtls"):
            for tx in children(dtls, "TxDtls"):
                rmt = child(tx, "RmtInf")
                ustrd = [] if rmt is None else [u.text or "" for u in children(rmt, "Ustrd")]
                ref = None
                if rmt is not None:
                    for strd in children(rmt, "Strd"):
                        ref = ref or path_text(strd, "CdtrRefInf", "Ref")
                amt = child(tx, "Amt")
                if amt is None:
                    tx_amt = child(tx, "AmtDtls")
                    tx_amt = None if tx_amt is None else child(tx_amt, "TxAmt")
                    amt = None if tx_amt is None else child(tx_amt, "Amt")
                parties = child(tx, "RltdPties")

                def name(role):
                    return path_text(parties, role, "Nm") or path_text(
                        parties, role, "Pty", "Nm"
                    )

                txs.append(
                    {
                        "ustrd": ustrd,
                        "creditor_reference": ref,
                        "amount": None
                        if amt is None or amt.text is None
                        else decimal_text(Decimal(amt.text.strip())),
                        "amount_currency": None if amt is None else amt.get("Ccy"),
                        "debtor_name": name("Dbtr") if parties is not None else None,
                        "creditor_name": name("Cdtr") if parties is not None else None,
                        "debtor_iban": path_text(parties, "DbtrAcct", "Id", "IBAN"),
                        "creditor_iban": path_text(parties, "CdtrAcct", "Id", "IBAN"),
                    }
                )
        out.append(txs)
    return out


def camt_file(path: Path) -> dict:
    import camt053

    doc = camt053.parse_document(path.read_text(encoding="utf-8"))
    supplement = camt_supplement(path)
    statements = []
    entries = []
    for s in doc.statements:
        statements.append(
            {"id": s.id, "account": s.account.identifier(), "entries": len(s.entries)}
        )
        for e in s.entries:
            entries.append(
                {
                    "account": s.account.identifier(),
                    "booking_date": (e.booking_date or "")[:10] or None,
                    "value_date": (e.value_date or "")[:10] or None,
                    "amount": decimal_text(Decimal(e.amount)),
                    "currency": e.currency,
                    "direction": e.credit_debit_indicator,
                    "status": e.status,
                    "reversal": e.reversal_indicator,
                    "reason_code": e.reason_code,
                    "bank_reference": e.account_servicer_ref,
                    "details": [
                        {
                            "end_to_end_id": d.end_to_end_id,
                            "counterparty_name": d.counterparty_name,
                            "counterparty_account": d.counterparty_account,
                            "reason_code": d.reason_code,
                        }
                        for d in e.details
                    ],
                    "supplement": supplement[len(entries)],
                }
            )
    if len(supplement) != len(entries):
        raise SystemExit(f"{path.name}: the DOM walk found {len(supplement)} Ntry, camt053 {len(entries)}")
    return {"statements": statements, "entries": entries}


def main() -> None:
    kind, files = sys.argv[1], sys.argv[2:]
    try:
        import camt053  # noqa: F401
        import mt940  # noqa: F401
    except ImportError as exc:
        raise SystemExit(
            f"the independent readers are not installed ({exc}): "
            "pip install mt-940==5.1.1 camt053==0.0.23"
        ) from exc
    read = {"mt940": mt940_file, "camt": camt_file}[kind]
    out = []
    for name in files:
        path = Path(name)
        try:
            result = read(path)
            result["error"] = None
        except Exception as exc:  # noqa: BLE001 - reported per file, compared in Rust
            result = {"statements": [], "entries": [], "error": f"{type(exc).__name__}: {exc}"}
        result["file"] = path.name
        out.append(result)
    json.dump({"files": out}, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
