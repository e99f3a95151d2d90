//! Which invoice a booked credit pays, decided as README *Bank transfers* says, in this
//! order and nothing else:
//!
//! 1. a structured creditor reference (the bank's structured field, or an `RF…` with
//!    valid check digits anywhere in the remittance, grouped or not) equal to an
//!    invoice's: that invoice, whatever its state (a second payment is an overpayment);
//! 2. an open invoice's reference as a whole token of the remittance text (case and the
//!    punctuation around it ignored), when exactly one open invoice is named.
//!
//! Only in the invoice's currency. Nothing else is applied by itself: where `suggest`,
//! an unmatched credit whose amount is what exactly one open invoice asks and whose
//! payer's name resembles that invoice's customer is listed as a suggestion.

use crate::domain::statement::Entry;
use crate::domain::{CreditorRef, InvoiceRef};
use crate::store::Store;
use crate::store::bank::{self, Candidate, MatchedBy};
use crate::store::invoices::State;

/// The longest creditor reference: `RF`, two check digits, 21 characters.
const MAX_CREDITOR_REF: usize = 25;

/// What the matching decided for one booked credit.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Apply it to this invoice.
    Match {
        /// The invoice.
        invoice: Box<Candidate>,
        /// How it was found.
        by: MatchedBy,
    },
    /// Not applied; one invoice fits by amount and name.
    Suggest {
        /// The invoice.
        invoice: Box<Candidate>,
        /// Why nothing was applied.
        reason: String,
    },
    /// Not applied, and why.
    Unmatched {
        /// Why, in words.
        reason: String,
    },
}

/// Decides what the booked credit `e` pays.
pub fn decide(db: &Store, e: &Entry, suggest: bool) -> crate::store::Result<Decision> {
    let mut notes: Vec<String> = Vec::new();
    // 1. Structured references.
    let mut named: Vec<Candidate> = Vec::new();
    for text in structured_references(e, &mut notes) {
        for c in bank::by_creditor_ref(db, &text)? {
            if !named.iter().any(|n| n.id == c.id) {
                named.push(c);
            }
        }
        if named.is_empty() {
            notes.push(format!("creditor reference {text} is no invoice's"));
        }
    }
    match named.len() {
        0 => {}
        1 => return Ok(in_currency(e, named.remove(0), MatchedBy::Reference)),
        n => {
            return Ok(Decision::Unmatched {
                reason: format!(
                    "its creditor reference names {n} invoices ({}): match it by hand",
                    list(&named)
                ),
            });
        }
    }
    // 2. Invoice references named in the remittance.
    let mut open: Vec<Candidate> = Vec::new();
    let mut closed: Vec<Candidate> = Vec::new();
    if let Some(text) = &e.remittance {
        let mut seen: Vec<String> = Vec::new();
        for token in tokens(text) {
            let upper = token.to_ascii_uppercase();
            if seen.contains(&upper) {
                continue;
            }
            for c in bank::by_creditor_ref(db, &CreditorRef::of_invoice(&upper))? {
                if !c.reference.as_str().eq_ignore_ascii_case(token) {
                    continue;
                }
                let bucket = if c.state == State::Open {
                    &mut open
                } else {
                    &mut closed
                };
                if !bucket.iter().any(|b| b.id == c.id) {
                    bucket.push(c);
                }
            }
            seen.push(upper);
        }
    }
    match open.len() {
        0 => {}
        1 => return Ok(in_currency(e, open.remove(0), MatchedBy::Remittance)),
        n => {
            return Ok(Decision::Unmatched {
                reason: format!(
                    "its remittance names {n} open invoices ({}): match it by hand",
                    list(&open)
                ),
            });
        }
    }
    for c in &closed {
        notes.push(format!(
            "its remittance names invoice {}, which is {} (not open)",
            c.reference,
            c.state.as_str()
        ));
    }
    if notes.is_empty() {
        notes
            .push("no creditor reference and no open invoice's reference in its remittance".into());
    }
    let reason = notes.join("; ");
    // Suggestions: never applied.
    if suggest && let Some(name) = &e.counterparty_name {
        let mut asking = bank::open_asking(db, e.amount, 2)?;
        if asking.len() == 1 && resembles(name, asking[0].data.customer_name.as_str()) {
            return Ok(Decision::Suggest {
                invoice: Box::new(asking.remove(0)),
                reason,
            });
        }
    }
    Ok(Decision::Unmatched { reason })
}

/// The match, unless the invoice is in another currency.
fn in_currency(e: &Entry, c: Candidate, by: MatchedBy) -> Decision {
    if c.data.currency() != e.amount.currency {
        Decision::Unmatched {
            reason: format!(
                "it names invoice {}, which is in {}, but was paid in {}",
                c.reference,
                c.data.currency().code(),
                e.amount.currency.code()
            ),
        }
    } else {
        Decision::Match {
            invoice: Box::new(c),
            by,
        }
    }
}

fn list(cs: &[Candidate]) -> String {
    InvoiceRef::list(&cs.iter().map(|c| c.reference.clone()).collect::<Vec<_>>())
}

/// The creditor references an entry carries: the bank's structured field and every
/// `RF…` in the remittance whose check digits are right. A wrong one is noted, not used.
fn structured_references(e: &Entry, notes: &mut Vec<String>) -> Vec<CreditorRef> {
    let mut found: Vec<CreditorRef> = Vec::new();
    if let Some(s) = &e.structured_reference {
        let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        if starts_rf(&compact) {
            match CreditorRef::parse(&compact) {
                Ok(r) => found.push(r),
                Err(err) => notes.push(format!("its structured reference: {err}")),
            }
        }
    }
    if let Some(text) = &e.remittance {
        let words: Vec<&str> = text.split_whitespace().collect();
        for (i, w) in words.iter().enumerate() {
            let w = w.trim_matches(|c: char| !c.is_ascii_alphanumeric());
            if !starts_rf(w) {
                continue;
            }
            // `RF18 5390 0754 7034`: the groups that follow may belong to it; the
            // longest run with valid check digits is the reference.
            let mut compact = String::new();
            let mut best: Option<CreditorRef> = None;
            for part in std::iter::once(w).chain(
                words[i + 1..]
                    .iter()
                    .map(|p| p.trim_matches(|c: char| !c.is_ascii_alphanumeric())),
            ) {
                if part.is_empty() || !part.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    break;
                }
                compact.push_str(part);
                if compact.len() > MAX_CREDITOR_REF {
                    break;
                }
                if let Ok(r) = CreditorRef::parse(&compact) {
                    best = Some(r);
                }
            }
            match best {
                Some(r) if !found.contains(&r) => found.push(r),
                Some(_) => {}
                None if w.len() >= 5 && w.as_bytes()[2..4].iter().all(u8::is_ascii_digit) => {
                    notes.push(format!(
                        "{w} in its remittance looks like a creditor reference, but its check digits are wrong"
                    ))
                }
                None => {}
            }
        }
    }
    found
}

/// Whether a text starts with `RF` in any case (byte-wise: it may hold any character).
fn starts_rf(text: &str) -> bool {
    text.as_bytes()
        .get(..2)
        .is_some_and(|b| b.eq_ignore_ascii_case(b"RF"))
}

/// The whole tokens of a remittance text: split at white space, the punctuation around
/// each taken off (`(INV-1),` → `INV-1`).
pub fn tokens(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .map(|t| t.trim_matches(|c: char| !c.is_alphanumeric()))
        .filter(|t| !t.is_empty())
}

/// Words that say nothing about who someone is.
const NOISE: &[&str] = &[
    "bv", "nv", "vof", "cv", "bvba", "sprl", "gmbh", "ltd", "inc", "the", "van", "der", "den",
    "het", "de", "en", "and", "dhr", "mevr", "mr", "mrs", "ms", "eo", "cj", "fam",
];

fn words(name: &str) -> Vec<String> {
    name.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 3 && !NOISE.contains(w))
        .map(str::to_string)
        .collect()
}

/// Whether a payer's name resembles a customer's: they share a word of three letters or
/// more that is not a legal form or a particle (`J. de Vries` and `Jan de Vries` share
/// `vries`).
pub fn resembles(payer: &str, customer: &str) -> bool {
    let a = words(payer);
    let b = words(customer);
    a.iter().any(|w| b.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_whole_words_without_the_punctuation_around_them() {
        let t: Vec<&str> = tokens("Factuur (INV-2026-001), order 41234; zie: 2026/7.").collect();
        assert_eq!(
            t,
            ["Factuur", "INV-2026-001", "order", "41234", "zie", "2026/7"]
        );
    }

    proptest::proptest! {
        /// Any remittance and structured reference, never a panic.
        #[test]
        fn any_text_is_looked_at_without_a_panic(remittance in "\\PC{0,60}", structured in "\\PC{0,30}") {
            let e = Entry {
                account: "NL91ABNA0417164300".into(),
                booking_date: None,
                value_date: None,
                amount: crate::domain::Money { minor: 1, currency: crate::domain::Currency::EUR },
                direction: crate::domain::statement::Direction::Credit,
                booking: crate::domain::statement::Booking::Booked,
                reversal: false,
                return_reason: None,
                counterparty_name: None,
                counterparty_iban: None,
                remittance: Some(format!("rf{remittance} RF{remittance}")),
                structured_reference: Some(format!("RF{structured}")),
                bank_reference: None,
                end_to_end_id: None,
                part: 0,
                line: 1,
            };
            let mut notes = Vec::new();
            let _ = structured_references(&e, &mut notes);
            let _ = tokens(&remittance).count();
            let _ = resembles(&remittance, &structured);
        }
    }

    #[test]
    fn names_resemble_by_a_shared_significant_word() {
        assert!(resembles("J. DE VRIES", "Jan de Vries"));
        assert!(resembles("Bakkerij Jansen B.V.", "Jansen"));
        assert!(!resembles("De Bakker BV", "De Groot BV"));
        assert!(!resembles("", "Jan"));
    }
}
