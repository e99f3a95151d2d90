//! Bank statements written here, in the shapes the banks write them (camt.053/052 as
//! ISO 20022 says, MT940 as the Dutch banks do), for the tests' own scenarios. The
//! published statements the readers are checked against are read from the workspace's
//! shared testdata (see `testdata.rs`), never copied here.

/// The merchant's account the test configs name in `bank.accounts`.
pub const ACCOUNT: &str = "NL91ABNA0417164300";

/// One transaction of a statement written by [`camt`].
#[derive(Debug, Clone)]
pub struct Tx {
    pub amount: &'static str,
    pub currency: &'static str,
    pub credit: bool,
    pub status: &'static str,
    pub booked: &'static str,
    pub bank_ref: Option<String>,
    pub name: &'static str,
    pub iban: &'static str,
    pub remittance: Option<String>,
    pub creditor_ref: Option<String>,
    pub reversal: bool,
    pub end_to_end: Option<String>,
    pub return_reason: Option<&'static str>,
}

impl Tx {
    /// A booked EUR credit from Jan de Vries, with this remittance text.
    pub fn credit(amount: &'static str, remittance: &str) -> Tx {
        Tx {
            amount,
            currency: "EUR",
            credit: true,
            status: "BOOK",
            booked: "2026-12-07",
            bank_ref: None,
            name: "J. de Vries",
            iban: "NL20INGB0001234567",
            remittance: Some(remittance.to_string()),
            creditor_ref: None,
            reversal: false,
            end_to_end: None,
            return_reason: None,
        }
    }

    /// A booked EUR credit quoting a structured creditor reference.
    pub fn structured(amount: &'static str, creditor_ref: &str) -> Tx {
        Tx {
            remittance: None,
            creditor_ref: Some(creditor_ref.to_string()),
            ..Tx::credit(amount, "")
        }
    }

    pub fn bank_ref(mut self, r: &str) -> Tx {
        self.bank_ref = Some(r.to_string());
        self
    }

    pub fn e2e(mut self, r: &str) -> Tx {
        self.end_to_end = Some(r.to_string());
        self
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A camt.053.001.02 statement (or with `message` "camt.052.001.02", an intraday report)
/// of `account` holding these transactions, one `Ntry` each.
pub fn camt_message(message: &str, account: &str, txs: &[Tx]) -> String {
    let (root, stmt) = if message.starts_with("camt.052") {
        ("BkToCstmrAcctRpt", "Rpt")
    } else {
        ("BkToCstmrStmt", "Stmt")
    };
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:{message}\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\n\
  <{root}>\n\
    <GrpHdr><MsgId>TEST-{n}</MsgId><CreDtTm>2026-12-07T18:00:00</CreDtTm></GrpHdr>\n\
    <{stmt}>\n\
      <Id>STMT-{n}</Id>\n\
      <CreDtTm>2026-12-07T18:00:00</CreDtTm>\n\
      <Acct><Id><IBAN>{account}</IBAN></Id><Ccy>EUR</Ccy></Acct>\n",
        n = txs.len()
    );
    for t in txs {
        let cd = if t.credit { "CRDT" } else { "DBIT" };
        s.push_str("      <Ntry>\n");
        s.push_str(&format!(
            "        <Amt Ccy=\"{}\">{}</Amt>\n        <CdtDbtInd>{cd}</CdtDbtInd>\n",
            t.currency, t.amount
        ));
        if t.reversal {
            s.push_str("        <RvslInd>true</RvslInd>\n");
        }
        s.push_str(&format!("        <Sts>{}</Sts>\n", t.status));
        if t.status == "BOOK" {
            s.push_str(&format!(
                "        <BookgDt><Dt>{}</Dt></BookgDt>\n",
                t.booked
            ));
        }
        s.push_str(&format!("        <ValDt><Dt>{}</Dt></ValDt>\n", t.booked));
        if let Some(r) = &t.bank_ref {
            s.push_str(&format!("        <AcctSvcrRef>{}</AcctSvcrRef>\n", esc(r)));
        }
        s.push_str("        <BkTxCd><Prtry><Cd>SEPA</Cd><Issr>TEST</Issr></Prtry></BkTxCd>\n");
        s.push_str("        <NtryDtls><TxDtls>\n");
        s.push_str(&format!(
            "          <Refs><EndToEndId>{}</EndToEndId></Refs>\n",
            esc(t.end_to_end.as_deref().unwrap_or("NOTPROVIDED"))
        ));
        let (party, acct) = if t.credit {
            ("Dbtr", "DbtrAcct")
        } else {
            ("Cdtr", "CdtrAcct")
        };
        s.push_str(&format!(
            "          <RltdPties><{party}><Nm>{}</Nm></{party}><{acct}><Id><IBAN>{}</IBAN></Id></{acct}></RltdPties>\n",
            esc(t.name),
            t.iban
        ));
        s.push_str("          <RmtInf>");
        if let Some(u) = &t.remittance {
            s.push_str(&format!("<Ustrd>{}</Ustrd>", esc(u)));
        }
        if let Some(r) = &t.creditor_ref {
            s.push_str(&format!(
                "<Strd><CdtrRefInf><Tp><CdOrPrtry><Cd>SCOR</Cd></CdOrPrtry><Issr>ISO</Issr></Tp><Ref>{}</Ref></CdtrRefInf></Strd>",
                esc(r)
            ));
        }
        s.push_str("</RmtInf>\n");
        if let Some(code) = t.return_reason {
            s.push_str(&format!(
                "          <RtrInf><Rsn><Cd>{code}</Cd></Rsn></RtrInf>\n"
            ));
        }
        s.push_str("        </TxDtls></NtryDtls>\n      </Ntry>\n");
    }
    s.push_str(&format!("    </{stmt}>\n  </{root}>\n</Document>\n"));
    s
}

/// A camt.053.001.02 statement of `account`.
pub fn camt(account: &str, txs: &[Tx]) -> String {
    camt_message("camt.053.001.02", account, txs)
}

/// An MT940 statement of `account` as ING writes it (structured `:86:`), with these
/// `(amount with comma, C/D, bank reference, :86: text)` lines, booked 7 December 2026.
pub fn mt940(account: &str, lines: &[(&str, &str, &str, &str)]) -> String {
    let mut s = format!(
        ":20:P261207000001\r\n:25:{account}EUR\r\n:28C:00000\r\n:60F:C261206EUR1000,00\r\n"
    );
    for (amount, cd, bank_ref, info) in lines {
        s.push_str(&format!(
            ":61:2612071207{cd}{amount}NTRFNONREF//{bank_ref}\r\n:86:{info}\r\n"
        ));
    }
    s.push_str(":62F:C261207EUR1000,00\r\n-\r\n");
    s
}
