//! A bank statement's entries as typed values: one [`Entry`] per booked or pending
//! transaction, whatever the format. The readers in `bank` produce these; the matching
//! and the store take nothing else.

use crate::domain::Money;
use chrono::NaiveDate;
use std::fmt;

/// The statement formats read, as detected from the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// ISO 20022 camt.053: the bank-to-customer statement (end of day).
    Camt053,
    /// ISO 20022 camt.052: the intraday account report.
    Camt052,
    /// ISO 20022 camt.054: the debit/credit notification.
    Camt054,
    /// SWIFT MT940 (`:20:` … `:62F:`), as the Dutch banks write it.
    Mt940,
}

impl Format {
    /// The name shown to the operator (`camt.053`, `MT940`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Camt053 => "camt.053",
            Format::Camt052 => "camt.052",
            Format::Camt054 => "camt.054",
            Format::Mt940 => "MT940",
        }
    }
}

/// Money in (`CRDT`) or out (`DBIT`) of the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A credit: money received.
    Credit,
    /// A debit: money paid out.
    Debit,
}

impl Direction {
    /// Every value.
    pub const ALL: [Direction; 2] = [Direction::Credit, Direction::Debit];

    /// The stored name: the ISO 20022 code.
    pub fn as_str(self) -> &'static str {
        self.code()
    }

    /// `CRDT` or `DBIT`.
    pub fn code(self) -> &'static str {
        match self {
            Direction::Credit => "CRDT",
            Direction::Debit => "DBIT",
        }
    }
}

/// Whether the bank has booked the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Booking {
    /// `BOOK`: booked (MT940 entries are always booked).
    Booked,
    /// `PDNG`: pending; applied once, when it is booked.
    Pending,
    /// `INFO` or any other status: never applied.
    Information,
}

impl Booking {
    /// Every value.
    pub const ALL: [Booking; 3] = [Booking::Booked, Booking::Pending, Booking::Information];

    /// The stored name: the ISO 20022 code.
    pub fn as_str(self) -> &'static str {
        self.code()
    }

    /// `BOOK`, `PDNG` or `INFO`.
    pub fn code(self) -> &'static str {
        match self {
            Booking::Booked => "BOOK",
            Booking::Pending => "PDNG",
            Booking::Information => "INFO",
        }
    }
}

/// One transaction of a statement.
///
/// A camt entry (`Ntry`) with several transaction details (`TxDtls`, a batch) whose
/// amounts are given yields one `Entry` per transaction detail, numbered by `part`
/// from 1; otherwise `part` is 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The account the statement is for: an IBAN (upper case, no spaces) or, where the
    /// bank gives no IBAN, its other account id as written.
    pub account: String,
    /// The booking date (camt `BookgDt`; MT940 the entry date where given, else the
    /// value date). `None` only for an entry that is not booked.
    pub booking_date: Option<NaiveDate>,
    /// The value date, where given.
    pub value_date: Option<NaiveDate>,
    /// The amount, always positive; `direction` says which way it went.
    pub amount: Money,
    /// Credit or debit (for a reversal: the direction of the reversing entry itself).
    pub direction: Direction,
    /// Booked, pending or information only.
    pub booking: Booking,
    /// The entry reverses an earlier one (camt `RvslInd`, MT940 `RC`/`RD`).
    pub reversal: bool,
    /// The return reason code where the bank gives one (camt `RtrInf/Rsn/Cd`, MT940
    /// `/RTRN/`), which marks a return of an earlier credit or debit.
    pub return_reason: Option<String>,
    /// The other party's name (the debtor of a credit, the creditor of a debit).
    pub counterparty_name: Option<String>,
    /// The other party's account (IBAN where given, upper case, no spaces).
    pub counterparty_iban: Option<String>,
    /// The unstructured remittance information, its parts joined by a space.
    pub remittance: Option<String>,
    /// The structured creditor reference as the bank gives it (camt
    /// `RmtInf/Strd/CdtrRefInf/Ref`, MT940 `/REMI/STRD/CUR/<ref>`), unchecked.
    pub structured_reference: Option<String>,
    /// The bank's own reference for the entry (camt `AcctSvcrRef`, MT940 the bank
    /// reference after `//` in `:61:`), `None` where the bank gives none or a
    /// placeholder (`NONREF`, `NOTPROVIDED`).
    pub bank_reference: Option<String>,
    /// The end-to-end id the payer gave (camt `EndToEndId`, MT940 `/EREF/`), `None` for
    /// `NOTPROVIDED`.
    pub end_to_end_id: Option<String>,
    /// The part of a batch (see above), 0 for a single transaction.
    pub part: u32,
    /// The physical line of the file on which the entry starts (for reasons).
    pub line: u64,
}

/// The start of one statement (or report, or notification) in a file: a file may hold
/// several, for several accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementHeader {
    /// The format of the file.
    pub format: Format,
    /// The account, as in [`Entry::account`].
    pub account: String,
    /// The statement's id (camt `Stmt/Id`, MT940 `:20:`/`:28C:`), where given.
    pub id: Option<String>,
    /// The physical line on which it starts.
    pub line: u64,
}

/// What a reader hands its caller, in file order: a header, then that statement's
/// entries, then the next header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A statement starts.
    Statement(StatementHeader),
    /// One entry of the last statement.
    Entry(Entry),
}

/// Why a file cannot be read. Nothing of a file that cannot be read is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    /// The physical line where the problem is (0: the file as a whole).
    pub line: u64,
    /// What is wrong, in plain words.
    pub reason: String,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.reason)
        } else {
            write!(f, "line {}: {}", self.line, self.reason)
        }
    }
}

impl std::error::Error for ReadError {}

impl ReadError {
    /// A reason at a line.
    pub fn at(line: u64, reason: impl Into<String>) -> ReadError {
        ReadError {
            line,
            reason: reason.into(),
        }
    }
}
