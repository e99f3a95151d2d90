//! Money: integer minor units plus an ISO 4217 currency.
//!
//! Amounts are read from export text straight into integer minor units (cents for EUR)
//! and written back out as plain decimal strings; no float is involved anywhere, so what
//! the export says is exactly what the payment link asks for. Whatever cannot be read
//! without guessing (`1,23,4.00`, three decimals for EUR) is refused with a reason.
use super::{DomainError, quoted};
use serde::Deserialize;
use std::fmt;

/// `csv.decimal_separator`: how the amounts in an export mark their decimals.
///
/// `Auto` works out each amount on its own (see [`parse_amount`]); an explicit setting
/// removes the one real ambiguity, `1.234`, for exports that always write decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecimalSeparator {
    /// Decide per amount: the last of `.` and `,` when both occur, otherwise by shape.
    Auto,
    /// `.` is the decimal separator, `,` a thousands separator (`1,234.56`).
    #[serde(rename = ".")]
    Dot,
    /// `,` is the decimal separator, `.` a thousands separator (`1.234,56`).
    #[serde(rename = ",")]
    Comma,
}

/// An active ISO 4217 currency with its number of minor-unit digits.
///
/// The exponent is what makes minor units meaningful (100 cents in a euro, no
/// subdivision of the yen, 1000 fils in a dinar), so it travels with the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    code: &'static str,
    exponent: u8,
}

impl Currency {
    /// The euro, the default when an export has no currency column.
    pub const EUR: Currency = Currency {
        code: "EUR",
        exponent: 2,
    };

    /// Reads an ISO 4217 alphabetic code, trimmed, in any case (`eur` → `EUR`).
    ///
    /// Only currencies one can invoice in are accepted: codes that ISO marks as funds
    /// (`CLF`, `CHE`, `USN`…), the precious-metal, bond-unit, testing and "no currency"
    /// codes (`XAU`, `XDR`, `XTS`, `XXX`…), and codes that have been replaced (`HRK`)
    /// are refused with a reason, so that a link is never created in a unit of account.
    /// The codes and their exponents come from the `iso_currency` crate.
    pub fn parse(s: &str) -> Result<Currency, DomainError> {
        let t = s.trim();
        let unknown = || DomainError(format!("{} is not an ISO 4217 currency code", quoted(t)));
        let &[a, b, c] = t.as_bytes() else {
            return Err(unknown());
        };
        let upper = [a, b, c].map(|x| x.to_ascii_uppercase());
        let code = std::str::from_utf8(&upper).map_err(|_| unknown())?;
        let iso = iso_currency::Currency::from_code(code).ok_or_else(unknown)?;
        // `flags()` is an empty (unallocated) Vec for ordinary currencies.
        if let Some(flag) = iso.flags().first() {
            return Err(DomainError(match flag {
                iso_currency::Flag::Superseded(by) => format!(
                    "{} is no longer an active ISO 4217 currency (replaced by {})",
                    quoted(t),
                    by.code()
                ),
                iso_currency::Flag::Fund | iso_currency::Flag::Special => format!(
                    "{} is an ISO 4217 fund, precious-metal or testing code, not a currency",
                    quoted(t)
                ),
            }));
        }
        let exponent = iso
            .exponent()
            .and_then(|e| u8::try_from(e).ok())
            .ok_or_else(|| DomainError(format!("{} has no minor units in ISO 4217", quoted(t))))?;
        Ok(Currency {
            code: iso.code(),
            exponent,
        })
    }

    /// The uppercase code, `"EUR"`, as the CM API and the store want it.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The number of minor-unit digits: 2 for EUR, 0 for JPY, 3 for KWD. Amounts with
    /// more decimals than this are refused; amounts are sent with exactly this many.
    pub fn exponent(&self) -> u8 {
        self.exponent
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

/// An amount in minor units of its currency.
///
/// `minor` is signed: credit notes are negative, and the caller decides to skip them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    /// The amount in minor units of `currency` (cents for EUR).
    pub minor: i64,
    /// The currency, which also says how many decimals `minor` has.
    pub currency: Currency,
}

impl Money {
    /// Reads an amount as [`parse_amount`] does with the currency's exponent, and also
    /// refuses a currency marker that contradicts the currency (`$ 12.50` or
    /// `USD 12.50` on a EUR row): such a row would otherwise ask for the same number in
    /// the wrong money.
    pub fn parse(s: &str, sep: DecimalSeparator, currency: Currency) -> Result<Money, DomainError> {
        let (minor, marker) = read_amount(s, sep, currency.exponent)?;
        if let Some(marker) = marker
            && !marker.fits(currency)
        {
            return Err(DomainError(format!(
                "{} is not an amount in {}",
                quoted(s.trim()),
                currency.code
            )));
        }
        Ok(Money { minor, currency })
    }

    /// The amount as a plain decimal string with exactly the currency's decimals
    /// (`"1234.56"`): the exact text of the JSON number sent to the CM API.
    pub fn to_decimal_string(&self) -> String {
        format_minor(self.minor, self.currency.exponent)
    }
}

/// The most integer digits (leading zeros aside) an amount may have: 999 trillion is
/// far beyond any invoice, and with up to 4 decimals the value still fits an `i64`.
pub const MAX_INTEGER_DIGITS: u32 = 15;

/// The largest exponent an amount can be read with: `10^18` is the largest power of ten
/// in an `i64`.
const MAX_EXPONENT: u8 = 18;

/// Parses an amount as written in an export into signed minor units, exactly.
///
/// Accepted, around the number: whitespace; one currency marker before or after it
/// (`€ $ £ ¥` or a three-letter ISO code such as `EUR`, with or without a space); one
/// sign `-`/`+` before it (before or after a leading marker), or accountant's
/// parentheses for a negative amount, `(12.50)`.
///
/// In the number: thousands separators `.` `,` space, U+00A0, U+202F or `'`, in
/// well-formed groups of three and of one kind per amount; and the decimal separator
/// chosen by `sep`. With [`DecimalSeparator::Auto`]: when both `.` and `,` occur the
/// last is the decimal separator; a kind that occurs more than once is a thousands
/// separator; a single one followed by exactly three digits is a thousands separator
/// in a currency without decimals (`1.234` is 1234 JPY) and refused as ambiguous in any
/// other (`1.234` EUR could be 1234.00 or 1.234); otherwise it is the decimal separator.
///
/// Refused, never guessed: more decimals than `exponent` (even zeros), badly formed
/// groups (`1,23,4.00`), two signs, more than [`MAX_INTEGER_DIGITS`] integer digits,
/// anything else in the text. The marker is not checked against a currency here: use
/// [`Money::parse`] for that.
///
/// Runs for every row of large files, so it does not allocate unless it fails.
///
/// ```
/// use invoice_sync::domain::money::{DecimalSeparator, parse_amount};
/// assert_eq!(parse_amount("€ 1.234,56", DecimalSeparator::Auto, 2), Ok(123456));
/// assert_eq!(parse_amount("1,234.56", DecimalSeparator::Auto, 2), Ok(123456));
/// // one separator before exactly three digits could mean either: refused, never guessed
/// assert!(parse_amount("12.345", DecimalSeparator::Auto, 2).is_err());
/// assert_eq!(parse_amount("12.345", DecimalSeparator::Comma, 2), Ok(1234500));
/// ```
pub fn parse_amount(s: &str, sep: DecimalSeparator, exponent: u8) -> Result<i64, DomainError> {
    read_amount(s, sep, exponent).map(|(minor, _)| minor)
}

/// `minor` as a plain decimal string with `exponent` decimals: `123456, 2` → `"1234.56"`.
///
/// `.` as separator, no thousands separators, exactly `exponent` decimals, `-` for
/// negative amounts: this is the JSON number the CM API gets, so it must be exact.
///
/// ```
/// use invoice_sync::domain::money::format_minor;
/// assert_eq!(format_minor(123456, 2), "1234.56");
/// assert_eq!(format_minor(10, 2), "0.10");
/// assert_eq!(format_minor(1234, 0), "1234");
/// ```
pub fn format_minor(minor: i64, exponent: u8) -> String {
    let digits = minor.unsigned_abs().to_string();
    let exp = usize::from(exponent);
    let mut out = String::with_capacity(digits.len() + exp + 3);
    if minor < 0 {
        out.push('-');
    }
    if exp == 0 {
        out.push_str(&digits);
    } else if digits.len() > exp {
        let (int, frac) = digits.split_at(digits.len() - exp);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', exp - digits.len()));
        out.push_str(&digits);
    }
    out
}

/// A currency marker written next to an amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    Symbol(char),
    Code(Currency),
}

/// Currencies written with `$` (from the symbols that `iso_currency` knows), sorted.
const DOLLAR_CODES: [&str; 33] = [
    "ARS", "AUD", "BBD", "BMD", "BND", "BRL", "BSD", "BZD", "CAD", "CLP", "COP", "DOP", "FJD",
    "GYD", "HKD", "JMD", "KYD", "LRD", "MOP", "MXN", "NAD", "NIO", "NZD", "SBD", "SGD", "SRD",
    "TOP", "TTD", "TWD", "USD", "UYU", "WST", "XCD",
];
/// Currencies written with `£`, sorted.
const POUND_CODES: [&str; 5] = ["EGP", "FKP", "GBP", "GIP", "SHP"];
/// Currencies written with `¥`, sorted.
const YEN_CODES: [&str; 2] = ["CNY", "JPY"];

impl Marker {
    /// Whether an amount with this marker can be meant in `currency`.
    fn fits(self, currency: Currency) -> bool {
        let within = |codes: &[&str]| codes.binary_search(&currency.code).is_ok();
        match self {
            Marker::Code(c) => c == currency,
            Marker::Symbol('€') => currency == Currency::EUR,
            Marker::Symbol('$') => within(&DOLLAR_CODES),
            Marker::Symbol('£') => within(&POUND_CODES),
            Marker::Symbol('¥') => within(&YEN_CODES),
            Marker::Symbol(_) => false,
        }
    }
}

/// Why an amount was refused; turned into words only when it happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Empty,
    NotAnAmount,
    UnknownCurrency,
    TwoMarkers,
    TwoSigns,
    Parentheses,
    Malformed,
    MixedGroups,
    BadGroups,
    TwoDecimalSeparators,
    TooManyDecimals,
    TooLarge,
    Ambiguous,
}

impl Fault {
    fn reason(self, s: &str, exponent: u8) -> DomainError {
        let q = quoted(s.trim());
        DomainError(match self {
            Fault::Empty => "amount is empty".to_owned(),
            Fault::NotAnAmount => format!("{q} is not an amount"),
            Fault::UnknownCurrency => format!("{q} does not name an ISO 4217 currency"),
            Fault::TwoMarkers => format!("{q} has more than one currency marker"),
            Fault::TwoSigns => format!("{q} has more than one sign"),
            Fault::Parentheses => format!("{q} has unbalanced parentheses"),
            Fault::Malformed => format!("{q} is not a well-formed amount"),
            Fault::MixedGroups => format!("{q} mixes different thousands separators"),
            Fault::BadGroups => format!("{q} has badly formed thousands groups"),
            Fault::TwoDecimalSeparators => format!("{q} has more than one decimal separator"),
            Fault::TooManyDecimals if exponent == 0 => {
                format!("{q} has decimals, but the currency has none")
            }
            Fault::TooManyDecimals if exponent == 1 => format!("{q} has more than 1 decimal"),
            Fault::TooManyDecimals => format!("{q} has more than {exponent} decimals"),
            Fault::TooLarge => format!("{q} is too large"),
            Fault::Ambiguous => format!(
                "{q} is ambiguous: its one separator could mark thousands or decimals; \
                 write the decimals (1.234,00 or 1,234.00) or set csv.decimal_separator"
            ),
        })
    }
}

/// [`parse_amount`] and the currency marker, if the text had one.
fn read_amount(
    s: &str,
    sep: DecimalSeparator,
    exponent: u8,
) -> Result<(i64, Option<Marker>), DomainError> {
    read(s, sep, exponent).map_err(|fault| fault.reason(s, exponent))
}

fn read(s: &str, sep: DecimalSeparator, exponent: u8) -> Result<(i64, Option<Marker>), Fault> {
    let (body, negative, marker) = split_decorations(s)?;
    let minor = read_number(body, sep, exponent)?;
    Ok((if negative { -minor } else { minor }, marker))
}

fn set_marker(marker: &mut Option<Marker>, new: Marker) -> Result<(), Fault> {
    match marker {
        Some(_) => Err(Fault::TwoMarkers),
        None => {
            *marker = Some(new);
            Ok(())
        }
    }
}

fn is_symbol(c: char) -> bool {
    matches!(c, '€' | '$' | '£' | '¥')
}

fn code_marker(code: &str) -> Result<Marker, Fault> {
    Currency::parse(code)
        .map(Marker::Code)
        .map_err(|_| Fault::UnknownCurrency)
}

/// Peels whitespace, sign, parentheses and currency marker off both ends of `s`: the
/// bare number, whether it is negative, and the marker.
fn split_decorations(s: &str) -> Result<(&str, bool, Option<Marker>), Fault> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(Fault::Empty);
    }
    let mut marker = None;
    let mut sign = None::<bool>; // Some(negative) once a sign or `(` was seen
    let mut open = false;
    while let Some(c) = {
        rest = rest.trim_start();
        rest.chars().next()
    } {
        match c {
            '-' | '+' | '(' if sign.is_some() => {
                return Err(if c == '(' && open {
                    Fault::Parentheses
                } else {
                    Fault::TwoSigns
                });
            }
            '-' | '+' => sign = Some(c == '-'),
            '(' => {
                sign = Some(true);
                open = true;
            }
            c if is_symbol(c) => set_marker(&mut marker, Marker::Symbol(c))?,
            c if c.is_ascii_alphabetic() => {
                let b = rest.as_bytes();
                let is_code = b.len() >= 3
                    && b[..3].iter().all(u8::is_ascii_alphabetic)
                    && !rest[3..].starts_with(char::is_alphabetic);
                if !is_code {
                    return Err(Fault::NotAnAmount);
                }
                set_marker(&mut marker, code_marker(&rest[..3])?)?;
                rest = &rest[3..];
                continue;
            }
            _ => break,
        }
        rest = &rest[c.len_utf8()..];
    }
    let mut closed = false;
    while let Some(c) = {
        rest = rest.trim_end();
        rest.chars().next_back()
    } {
        match c {
            ')' if !open || closed => return Err(Fault::Parentheses),
            ')' => closed = true,
            c if is_symbol(c) => set_marker(&mut marker, Marker::Symbol(c))?,
            c if c.is_ascii_alphabetic() => {
                let b = rest.as_bytes();
                let n = b.len();
                let is_code = n >= 3
                    && b[n - 3..].iter().all(u8::is_ascii_alphabetic)
                    && !rest[..n - 3].ends_with(char::is_alphabetic);
                if !is_code {
                    return Err(Fault::NotAnAmount);
                }
                set_marker(&mut marker, code_marker(&rest[n - 3..])?)?;
                rest = &rest[..n - 3];
                continue;
            }
            _ => break,
        }
        rest = &rest[..rest.len() - c.len_utf8()];
    }
    if open != closed {
        return Err(Fault::Parentheses);
    }
    Ok((rest, sign == Some(true), marker))
}

/// The kinds of separator an amount may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sep {
    Dot,
    Comma,
    Space,
    Apostrophe,
}

fn separator(c: char) -> Option<Sep> {
    match c {
        '.' => Some(Sep::Dot),
        ',' => Some(Sep::Comma),
        ' ' | '\u{A0}' | '\u{202F}' => Some(Sep::Space),
        '\'' => Some(Sep::Apostrophe),
        _ => None,
    }
}

/// Reads a bare, unsigned number (`1.234,56`) into minor units.
fn read_number(body: &str, sep: DecimalSeparator, exponent: u8) -> Result<i64, Fault> {
    if exponent > MAX_EXPONENT {
        return Err(Fault::TooLarge);
    }
    // Pass 1: check the characters and count the separators.
    let (mut dots, mut commas, mut spaces, mut apostrophes) = (0u32, 0u32, 0u32, 0u32);
    let (mut last_dot, mut last_comma) = (None, None);
    let mut after_separator = true; // the number must start with a digit
    for (i, c) in body.char_indices() {
        if c.is_ascii_digit() {
            after_separator = false;
            continue;
        }
        let kind = separator(c).ok_or(Fault::NotAnAmount)?;
        if after_separator {
            return Err(Fault::Malformed);
        }
        after_separator = true;
        match kind {
            Sep::Dot => (dots, last_dot) = (dots + 1, Some(i)),
            Sep::Comma => (commas, last_comma) = (commas + 1, Some(i)),
            Sep::Space => spaces += 1,
            Sep::Apostrophe => apostrophes += 1,
        }
    }
    if body.is_empty() {
        return Err(Fault::NotAnAmount);
    }
    if after_separator {
        return Err(Fault::Malformed);
    }

    // Which `.` or `,` (if any) is the decimal separator.
    let explicit = |count: u32, last: Option<usize>| match count {
        0 | 1 => Ok(last),
        _ => Err(Fault::TwoDecimalSeparators),
    };
    let decimal = match sep {
        DecimalSeparator::Dot => explicit(dots, last_dot)?,
        DecimalSeparator::Comma => explicit(commas, last_comma)?,
        DecimalSeparator::Auto => match (last_dot, last_comma) {
            (Some(d), Some(c)) if d > c => explicit(dots, Some(d))?,
            (Some(_), Some(c)) => explicit(commas, Some(c))?,
            (Some(p), None) => lone_kind(body, dots, p, exponent)?,
            (None, Some(p)) => lone_kind(body, commas, p, exponent)?,
            (None, None) => None,
        },
    };

    // One kind of thousands separator per amount.
    let decimal_kind = decimal.map(|p| {
        if Some(p) == last_dot {
            Sep::Dot
        } else {
            Sep::Comma
        }
    });
    let punctuation_groups = match decimal_kind {
        Some(Sep::Dot) => commas,
        Some(_) => dots,
        None => dots + commas,
    };
    let kinds = [punctuation_groups, spaces, apostrophes];
    if kinds.iter().filter(|&&n| n > 0).count() > 1 {
        return Err(Fault::MixedGroups);
    }

    let (int, frac) = match decimal {
        Some(p) => (&body[..p], &body[p + 1..]),
        None => (body, ""),
    };
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        // a thousands separator after the decimal separator: `1.234,56` read with `Dot`
        return Err(Fault::Malformed);
    }
    if frac.len() > usize::from(exponent) {
        return Err(Fault::TooManyDecimals);
    }

    // Pass 2: the integer part, with its thousands groups checked.
    let mut units: i64 = 0;
    let mut significant = 0u32;
    let mut group = 0usize;
    let mut grouped = false;
    for c in int.chars() {
        match c.to_digit(10) {
            Some(d) => {
                if units > 0 || d > 0 {
                    significant += 1;
                    if significant > MAX_INTEGER_DIGITS {
                        return Err(Fault::TooLarge);
                    }
                }
                units = units * 10 + i64::from(d);
                group += 1;
            }
            None => {
                // first group: 1 to 3 digits, no leading zero; later groups: 3 digits
                let bad = if grouped {
                    group != 3
                } else {
                    group > 3 || int.starts_with('0')
                };
                if bad {
                    return Err(Fault::BadGroups);
                }
                grouped = true;
                group = 0;
            }
        }
    }
    if grouped && group != 3 {
        return Err(Fault::BadGroups);
    }

    let mut fraction: i64 = 0;
    for b in frac.bytes() {
        fraction = fraction * 10 + i64::from(b - b'0');
    }
    let scale = |digits: usize| 10i64.checked_pow(u32::try_from(digits).ok()?);
    let padding = usize::from(exponent) - frac.len();
    scale(usize::from(exponent))
        .and_then(|unit| units.checked_mul(unit))
        .zip(scale(padding).and_then(|pad| fraction.checked_mul(pad)))
        .and_then(|(whole, part)| whole.checked_add(part))
        .ok_or(Fault::TooLarge)
}

/// With `Auto`, the role of the only `.` or `,` kind in an amount, at `last`, seen
/// `count` times: the decimal separator's position, or `None` for thousands.
///
/// A single separator followed by exactly three digits (`12.345`) could be either: in a
/// currency without decimals it can only mark thousands, in any other it is refused as
/// ambiguous — reading a three-decimal export as thousands would ask 1000 times the
/// amount.
fn lone_kind(body: &str, count: u32, last: usize, exponent: u8) -> Result<Option<usize>, Fault> {
    let after = &body[last + 1..];
    let three_digits_follow = after.len() == 3 && after.bytes().all(|b| b.is_ascii_digit());
    // Only a first group of 1 to 3 digits (no leading zero) can be read as thousands.
    let before = body[..last].trim_start_matches(['-', '+']);
    let could_be_thousands = three_digits_follow
        && (1..=3).contains(&before.len())
        && before.bytes().all(|b| b.is_ascii_digit())
        && !before.starts_with('0');
    if count > 1 || (could_be_thousands && exponent == 0) {
        Ok(None)
    } else if could_be_thousands {
        Err(Fault::Ambiguous)
    } else {
        Ok(Some(last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DecimalSeparator::{Auto, Comma, Dot};
    use proptest::prelude::*;

    fn eur(s: &str) -> Result<i64, DomainError> {
        parse_amount(s, Auto, 2)
    }

    fn reason(s: &str, sep: DecimalSeparator, exponent: u8) -> String {
        match parse_amount(s, sep, exponent) {
            Ok(m) => panic!("{s:?} should be rejected, read as {m}"),
            Err(e) => e.to_string(),
        }
    }

    // ---- Currency ----

    #[test]
    fn currency_exponents() {
        let exp = |s: &str| Currency::parse(s).unwrap().exponent();
        assert_eq!(exp("EUR"), 2);
        assert_eq!(exp("USD"), 2);
        assert_eq!(exp("GBP"), 2);
        for zero in [
            "JPY", "KRW", "ISK", "CLP", "VND", "UGX", "XOF", "XAF", "XPF",
        ] {
            assert_eq!(exp(zero), 0, "{zero}");
        }
        for three in ["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"] {
            assert_eq!(exp(three), 3, "{three}");
        }
    }

    #[test]
    fn currency_trims_and_uppercases() {
        for s in ["EUR", "eur", "Eur", " EUR ", "\teur\n"] {
            let c = Currency::parse(s).unwrap();
            assert_eq!(c, Currency::EUR, "{s:?}");
            assert_eq!(c.code(), "EUR");
        }
        assert_eq!(Currency::parse("kwd").unwrap().code(), "KWD");
        assert_eq!(Currency::EUR.to_string(), "EUR");
    }

    #[test]
    fn currency_rejects_unknown_codes() {
        for s in ["EURO", "EU", "", "ABC", "E1R", "€", "€UR", "US D"] {
            assert!(Currency::parse(s).is_err(), "{s:?}");
        }
        assert_eq!(
            Currency::parse("EURO").unwrap_err().to_string(),
            "\"EURO\" is not an ISO 4217 currency code"
        );
    }

    #[test]
    fn currency_rejects_funds_metals_and_testing_codes() {
        for s in [
            "XAU", "XAG", "XPT", "XPD", "XXX", "XTS", "XDR", "XBA", "XSU", "XUA", "CLF", "CHE",
            "CHW", "BOV", "COU", "MXV", "USN", "UYI", "UYW",
        ] {
            assert!(Currency::parse(s).is_err(), "{s:?} should be rejected");
        }
        assert_eq!(
            Currency::parse("xau").unwrap_err().to_string(),
            "\"xau\" is an ISO 4217 fund, precious-metal or testing code, not a currency"
        );
    }

    #[test]
    fn currency_rejects_replaced_codes() {
        assert_eq!(
            Currency::parse("HRK").unwrap_err().to_string(),
            "\"HRK\" is no longer an active ISO 4217 currency (replaced by EUR)"
        );
        assert!(Currency::parse("NLG").is_err());
        assert!(Currency::parse("DEM").is_err());
    }

    /// Every three-letter code, for tests that sweep the whole table.
    fn all_codes() -> impl Iterator<Item = String> {
        let letters = || b'A'..=b'Z';
        letters().flat_map(move |a| {
            letters().flat_map(move |b| {
                letters().map(move |c| String::from_utf8(vec![a, b, c]).unwrap())
            })
        })
    }

    #[test]
    fn every_accepted_currency_is_ordinary_with_a_small_exponent() {
        let accepted: Vec<Currency> = all_codes()
            .filter_map(|c| Currency::parse(&c).ok())
            .collect();
        assert!(accepted.len() > 140, "only {} currencies", accepted.len());
        for c in accepted {
            let iso = iso_currency::Currency::from_code(c.code()).unwrap();
            assert!(iso.flags().is_empty(), "{}", c.code());
            assert!(c.exponent() <= 4, "{}", c.code());
            assert_eq!(Some(u16::from(c.exponent())), iso.exponent());
        }
    }

    #[test]
    fn symbol_tables_match_the_crate_symbols() {
        let sorted = |t: &[&str]| t.windows(2).all(|w| w[0] < w[1]);
        assert!(sorted(&DOLLAR_CODES) && sorted(&POUND_CODES) && sorted(&YEN_CODES));
        for code in all_codes() {
            let Some(iso) = iso_currency::Currency::from_code(&code) else {
                continue;
            };
            let symbol = iso.symbol().symbol;
            if iso.flags().is_empty() {
                assert_eq!(
                    symbol.contains('$'),
                    DOLLAR_CODES.contains(&code.as_str()),
                    "{code} {symbol}"
                );
                assert_eq!(
                    symbol.contains('£'),
                    POUND_CODES.contains(&code.as_str()),
                    "{code} {symbol}"
                );
                assert_eq!(
                    symbol.contains('¥'),
                    YEN_CODES.contains(&code.as_str()),
                    "{code} {symbol}"
                );
            }
        }
    }

    // ---- format_minor ----

    #[test]
    fn format_minor_examples() {
        assert_eq!(format_minor(123456, 2), "1234.56");
        assert_eq!(format_minor(10, 2), "0.10");
        assert_eq!(format_minor(-5, 2), "-0.05");
        assert_eq!(format_minor(1234, 0), "1234");
        assert_eq!(format_minor(1, 3), "0.001");
        assert_eq!(format_minor(0, 2), "0.00");
        assert_eq!(format_minor(0, 0), "0");
        assert_eq!(format_minor(100, 2), "1.00");
        assert_eq!(format_minor(-123456, 2), "-1234.56");
        assert_eq!(format_minor(12345, 4), "1.2345");
        assert_eq!(format_minor(9_999_999_999, 2), "99999999.99");
        assert_eq!(format_minor(i64::MAX, 2), "92233720368547758.07");
        assert_eq!(format_minor(i64::MIN, 2), "-92233720368547758.08");
    }

    #[test]
    fn money_to_decimal_string_uses_the_currency_exponent() {
        let jpy = Currency::parse("JPY").unwrap();
        let kwd = Currency::parse("KWD").unwrap();
        assert_eq!(
            Money {
                minor: 123456,
                currency: Currency::EUR
            }
            .to_decimal_string(),
            "1234.56"
        );
        assert_eq!(
            Money {
                minor: 1234,
                currency: jpy
            }
            .to_decimal_string(),
            "1234"
        );
        assert_eq!(
            Money {
                minor: 1234,
                currency: kwd
            }
            .to_decimal_string(),
            "1.234"
        );
    }

    // ---- parse_amount: the examples ----

    #[test]
    fn eur_auto_examples() {
        let cases = [
            ("1.234,56", 123456),
            ("1,234.56", 123456),
            ("€ 12,50", 1250),
            ("12.5", 1250),
            ("12", 1200),
            ("0.01", 1),
            ("€1,234.56", 123456),
            ("1 234,56 €", 123456),
            ("EUR 99.999.999,99", 9999999999),
            ("-12,50", -1250),
            ("(12.50)", -1250),
            ("1'234.56", 123456),
            ("0", 0),
        ];
        for (s, want) in cases {
            assert_eq!(eur(s), Ok(want), "{s:?}");
        }
    }

    #[test]
    fn jpy_examples() {
        for (s, want) in [
            ("1.234", 1234),
            ("1,234", 1234),
            ("1234", 1234),
            ("¥1,234", 1234),
            ("0", 0),
        ] {
            assert_eq!(parse_amount(s, Auto, 0), Ok(want), "{s:?}");
        }
        assert_eq!(
            reason("12.5", Auto, 0),
            "\"12.5\" has decimals, but the currency has none"
        );
        assert!(parse_amount("12,50", Auto, 0).is_err());
        assert!(parse_amount("1234.00", Auto, 0).is_err());
        assert!(parse_amount("1.234", Dot, 0).is_err());
        assert_eq!(parse_amount("1.234", Comma, 0), Ok(1234));
    }

    #[test]
    fn three_decimal_currencies() {
        assert!(reason("1.234", Auto, 3).contains("ambiguous"));
        assert_eq!(parse_amount("1.234", Dot, 3), Ok(1234));
        assert_eq!(parse_amount("1234.567", Auto, 3), Ok(1234567));
        assert_eq!(parse_amount("1,234.567", Auto, 3), Ok(1234567));
        assert_eq!(parse_amount("0.5", Auto, 3), Ok(500));
        assert_eq!(parse_amount("12", Auto, 3), Ok(12000));
        assert_eq!(parse_amount("1,234", Dot, 3), Ok(1_234_000));
        assert!(parse_amount("1.2345", Auto, 3).is_err());
    }

    #[test]
    fn four_decimal_exponent() {
        assert_eq!(parse_amount("1.2345", Auto, 4), Ok(12345));
        assert_eq!(parse_amount("1,5", Auto, 4), Ok(15000));
    }

    #[test]
    fn auto_single_separator_rules() {
        // one kind, once, exactly three digits after a first group of 1 to 3 digits:
        // thousands or three decimals? Refused as ambiguous in a currency with decimals.
        for s in ["1.234", "1,234", "12,345", "-1.234", "€ 1.234", "999.999"] {
            assert!(reason(s, Auto, 2).contains("ambiguous"), "{s}");
        }
        // with the separator configured, they read as the configuration says
        assert_eq!(parse_amount("1.234", Comma, 2), Ok(123400));
        assert_eq!(parse_amount("1,234", Dot, 2), Ok(123400));
        // a first group that cannot be thousands: the separator is decimal (and then
        // three decimals are too many for EUR)
        assert!(reason("1234.567", Auto, 2).contains("more than 2 decimals"));
        assert!(reason("0.123", Auto, 2).contains("more than 2 decimals"));
        // otherwise decimal
        assert_eq!(eur("12,5"), Ok(1250));
        assert_eq!(eur("1.50"), Ok(150));
        assert_eq!(eur("1234,56"), Ok(123456));
        // one kind, several times: thousands
        assert_eq!(eur("1.234.567"), Ok(123456700));
        assert_eq!(eur("1,234,567"), Ok(123456700));
        // both kinds: the last is the decimal separator
        assert_eq!(eur("1.234.567,8"), Ok(123456780));
        assert_eq!(eur("1,234,567.8"), Ok(123456780));
    }

    #[test]
    fn explicit_separators() {
        assert_eq!(
            parse_amount("1.234", Dot, 2).map_err(|e| e.to_string()),
            Err("\"1.234\" has more than 2 decimals".into())
        );
        assert_eq!(parse_amount("1.234", Comma, 2), Ok(123400));
        assert_eq!(parse_amount("1,234", Dot, 2), Ok(123400));
        assert_eq!(parse_amount("1,23", Comma, 2), Ok(123));
        assert_eq!(parse_amount("1,234.56", Dot, 2), Ok(123456));
        assert_eq!(parse_amount("1.234,56", Comma, 2), Ok(123456));
        assert_eq!(parse_amount("12", Dot, 2), Ok(1200));
        // the other convention is refused, not reinterpreted
        assert!(parse_amount("1.234,56", Dot, 2).is_err());
        assert!(parse_amount("1,234.56", Comma, 2).is_err());
        assert_eq!(
            reason("1.234.567", Dot, 2),
            "\"1.234.567\" has more than one decimal separator"
        );
    }

    #[test]
    fn signs_markers_and_parentheses() {
        let cases = [
            ("-€ 12,50", -1250),
            ("€ -12,50", -1250),
            ("€-12,50", -1250),
            ("- 12,50", -1250),
            ("+12,50", 1250),
            ("+€12.50", 1250),
            ("(€ 12,50)", -1250),
            ("€ (12,50)", -1250),
            ("(12,50 €)", -1250),
            ("(12,50) €", -1250),
            ("( 12.50 )", -1250),
            ("12,50€", 1250),
            ("EUR12.50", 1250),
            ("12.50EUR", 1250),
            ("eur 12.50", 1250),
            ("12.50 EUR", 1250),
            ("-EUR 12.50", -1250),
            ("$12.50", 1250),
            ("£12.50", 1250),
            ("USD 12.50", 1250),
            ("  12,50  ", 1250),
            ("\u{a0}12,50\u{202f}€", 1250),
            ("-0", 0),
            ("-0,00", 0),
            ("(0.00)", 0),
        ];
        for (s, want) in cases {
            assert_eq!(eur(s), Ok(want), "{s:?}");
        }
        assert_eq!(parse_amount("¥ 1.234", Auto, 0), Ok(1234));
    }

    #[test]
    fn thousands_separator_kinds() {
        for s in [
            "1 234 567,89",
            "1\u{a0}234\u{a0}567,89",
            "1\u{202f}234\u{202f}567,89",
            "1'234'567.89",
            "1.234.567,89",
            "1,234,567.89",
        ] {
            assert_eq!(eur(s), Ok(123456789), "{s:?}");
        }
        assert_eq!(eur("1 234"), Ok(123400));
        assert_eq!(eur("1'234"), Ok(123400));
        // one number may mix the three Unicode spaces: they are one kind
        assert_eq!(eur("1 234\u{a0}567"), Ok(123456700));
    }

    // ---- parse_amount: the error classes ----

    #[test]
    fn rejects_empty() {
        for s in ["", "   ", "\t"] {
            assert_eq!(reason(s, Auto, 2), "amount is empty", "{s:?}");
        }
        for s in ["€", "-", "()", "EUR", "( )", "- €"] {
            assert!(eur(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn rejects_letters_and_garbage() {
        for s in [
            "abc", "12abc", "1e5", "12 EURO", "twelve", "12.50x", "x12", "0x10", "1_000", "1/2",
            "12%", "NaN", "inf", "12,-", "€€12", "#12",
        ] {
            assert!(eur(s).is_err(), "{s:?} should be rejected");
        }
        assert_eq!(reason("twelve", Auto, 2), "\"twelve\" is not an amount");
        assert_eq!(
            reason("12 ABC", Auto, 2),
            "\"12 ABC\" does not name an ISO 4217 currency"
        );
        assert_eq!(
            reason("€ 12 $", Auto, 2),
            "\"€ 12 $\" has more than one currency marker"
        );
        assert!(eur("EUR 12 EUR").is_err());
        assert!(eur("XAU 12").is_err());
    }

    #[test]
    fn rejects_two_signs() {
        for s in [
            "--1", "+-1", "-+1", "-€-12", "-(12)", "(-12)", "((12))", "- - 1",
        ] {
            assert!(eur(s).is_err(), "{s:?} should be rejected");
        }
        assert_eq!(reason("--1", Auto, 2), "\"--1\" has more than one sign");
        // a trailing sign is not read
        assert!(eur("12-").is_err());
        assert!(eur("12,50 -").is_err());
    }

    #[test]
    fn rejects_unbalanced_parentheses() {
        for s in ["(12", "12)", "(12))", "€ (12"] {
            assert!(eur(s).is_err(), "{s:?}");
        }
        assert_eq!(
            reason("(12.50", Auto, 2),
            "\"(12.50\" has unbalanced parentheses"
        );
    }

    #[test]
    fn rejects_misplaced_separators() {
        for s in [
            "1..2",
            "1,,2",
            ".5",
            ",5",
            "5.",
            "5,",
            "1.,2",
            "1 ,2",
            "1  234",
            "1.234,56.78",
            "1,234.56,78",
            "1. 234",
        ] {
            assert!(eur(s).is_err(), "{s:?} should be rejected");
        }
        assert_eq!(
            reason("1..2", Auto, 2),
            "\"1..2\" is not a well-formed amount"
        );
    }

    #[test]
    fn rejects_badly_formed_groups() {
        for s in [
            "1,23,4.00",
            "1,2,3",
            "12,34,567.00",
            "1234,567",
            "1.23.456,00",
            "1 23 456",
            "1'2345.00",
            "0,123.45",
            "0.500",
            "1,234,56.00",
            "1.2345.678",
        ] {
            assert!(eur(s).is_err(), "{s:?} should be rejected");
        }
        assert_eq!(
            reason("1,23,4.00", Auto, 2),
            "\"1,23,4.00\" has badly formed thousands groups"
        );
    }

    #[test]
    fn rejects_mixed_thousands_separators() {
        for s in ["1.234 567,00", "1'234,567.00", "1 234'567", "1,234.567,00"] {
            assert!(eur(s).is_err(), "{s:?} should be rejected");
        }
        assert_eq!(
            reason("1'234 567.00", Auto, 2),
            "\"1'234 567.00\" mixes different thousands separators"
        );
    }

    #[test]
    fn rejects_too_many_decimals_even_zeros() {
        assert_eq!(
            reason("12.345", Dot, 2),
            "\"12.345\" has more than 2 decimals"
        );
        assert_eq!(
            reason("12,345", Comma, 2),
            "\"12,345\" has more than 2 decimals"
        );
        // with `Auto`, a lone separator before exactly three digits is ambiguous: refused,
        // never read as 1000 times the amount
        assert!(reason("12.345", Auto, 2).contains("ambiguous"));
        assert!(reason("12,345", Auto, 2).contains("ambiguous"));
        // but three decimals are refused whenever the form says they are decimals
        assert_eq!(
            reason("1,012.345", Auto, 2),
            "\"1,012.345\" has more than 2 decimals"
        );
        assert_eq!(
            reason("12.3456", Auto, 2),
            "\"12.3456\" has more than 2 decimals"
        );
        assert_eq!(
            reason("12.500", Dot, 2),
            "\"12.500\" has more than 2 decimals"
        );
        assert!(eur("0.001").is_err());
        assert!(eur("1,234.567").is_err());
        assert_eq!(reason("1.25", Auto, 1), "\"1.25\" has more than 1 decimal");
    }

    #[test]
    fn rejects_too_large() {
        assert_eq!(eur("999999999999999.99"), Ok(99_999_999_999_999_999));
        assert_eq!(eur("999.999.999.999.999"), Ok(99_999_999_999_999_900));
        assert_eq!(
            reason("1000000000000000", Auto, 2),
            "\"1000000000000000\" is too large"
        );
        assert!(eur("1.000.000.000.000.000").is_err());
        assert!(eur("99999999999999999999999999").is_err());
        // leading zeros are not digits that count
        assert_eq!(eur("0000000000000000012.50"), Ok(1250));
        // 15 digits fit, but not with 4 decimals on top: i64 overflow is refused
        assert_eq!(
            parse_amount("922337203685477", Auto, 4),
            Ok(9_223_372_036_854_770_000)
        );
        assert!(parse_amount("999999999999999.9999", Auto, 4).is_err());
        // an exponent no i64 can carry
        assert!(parse_amount("1", Auto, 19).is_err());
        assert!(parse_amount("1", Auto, 255).is_err());
    }

    #[test]
    fn reason_quotes_the_trimmed_value_and_truncates() {
        let long = format!("{}x", "1".repeat(60));
        let e = reason(&long, Auto, 2);
        assert_eq!(e, format!("\"{}…\" is not an amount", "1".repeat(40)));
        assert_eq!(
            reason("  12.345 ", Dot, 2),
            "\"12.345\" has more than 2 decimals"
        );
    }

    // ---- Money::parse: the marker must fit the currency ----

    #[test]
    fn money_parse_checks_the_marker() {
        let usd = Currency::parse("USD").unwrap();
        let jpy = Currency::parse("JPY").unwrap();
        let gbp = Currency::parse("GBP").unwrap();
        assert_eq!(
            Money::parse("€ 1.234,56", Auto, Currency::EUR),
            Ok(Money {
                minor: 123456,
                currency: Currency::EUR
            })
        );
        assert_eq!(Money::parse("1234.56", Auto, usd).unwrap().minor, 123456);
        assert_eq!(Money::parse("$1,234.56", Auto, usd).unwrap().minor, 123456);
        assert_eq!(Money::parse("usd 5", Auto, usd).unwrap().minor, 500);
        assert_eq!(Money::parse("¥1,234", Auto, jpy).unwrap().minor, 1234);
        assert_eq!(Money::parse("£ 3.50", Dot, gbp).unwrap().minor, 350);
        for (s, c) in [
            ("$ 12.50", Currency::EUR),
            ("USD 12.50", Currency::EUR),
            ("€ 12.50", usd),
            ("£ 12.50", Currency::EUR),
            ("¥12", Currency::EUR),
            ("EUR 12", jpy),
        ] {
            assert!(Money::parse(s, Auto, c).is_err(), "{s:?} in {c}");
        }
        assert_eq!(
            Money::parse("$ 12.50", Auto, Currency::EUR)
                .unwrap_err()
                .to_string(),
            "\"$ 12.50\" is not an amount in EUR"
        );
        // the amount's own errors come first, with the currency's exponent
        assert_eq!(
            Money::parse("12.5", Auto, jpy).unwrap_err().to_string(),
            "\"12.5\" has decimals, but the currency has none"
        );
    }

    // ---- no allocation on the happy path ----

    mod counting {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        thread_local! {
            static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
        }

        /// The system allocator, counting allocations per thread, so that a test can
        /// prove a function does not allocate (tests run on parallel threads).
        pub struct Counting;

        fn count() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }

        // SAFETY: every call is forwarded unchanged to `System`.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                count();
                unsafe { System.alloc(layout) }
            }
            unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
                count();
                unsafe { System.alloc_zeroed(layout) }
            }
            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                count();
                unsafe { System.realloc(ptr, layout, new_size) }
            }
            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                unsafe { System.dealloc(ptr, layout) }
            }
        }

        #[global_allocator]
        static COUNTING: Counting = Counting;

        pub fn allocations_in(f: impl FnOnce()) -> usize {
            let before = ALLOCATIONS.with(Cell::get);
            f();
            ALLOCATIONS.with(Cell::get) - before
        }
    }

    #[test]
    fn happy_path_does_not_allocate() {
        let inputs = [
            ("1.234,56", Auto),
            ("1,234.56", Auto),
            ("€ 12,50", Auto),
            ("12.5", Auto),
            ("EUR 99.999.999,99", Auto),
            ("(12.50)", Auto),
            ("1 234,56 €", Auto),
            ("1\u{202f}234,56", Comma),
            ("1'234.56", Dot),
            ("-€ 12,50", Comma),
            ("12.50 eur", Dot),
            ("0", Auto),
        ];
        let mut amounts = [0i64; 12];
        let mut money = [0i64; 12];
        let mut exponent = 0;
        let n = counting::allocations_in(|| {
            for (i, (s, sep)) in inputs.into_iter().enumerate() {
                let s = std::hint::black_box(s);
                amounts[i] = parse_amount(s, sep, 2).unwrap_or(i64::MIN);
                money[i] = Money::parse(s, sep, Currency::EUR).map_or(i64::MIN, |m| m.minor);
            }
            exponent = Currency::parse(std::hint::black_box("eur")).map_or(9, |c| c.exponent());
        });
        assert_eq!(n, 0, "parsing allocated {n} times");
        let want = [
            123456, 123456, 1250, 1250, 9999999999, -1250, 123456, 123456, 123456, -1250, 1250, 0,
        ];
        assert_eq!(amounts, want);
        assert_eq!(money, want);
        assert_eq!(exponent, 2);
        // and the counter does count: a failure allocates its reason
        assert!(counting::allocations_in(|| drop(eur("x"))) > 0);
    }

    // ---- round trips ----

    /// `int` with `sep` between groups of three digits: `1234567, "."` → `"1.234.567"`.
    fn grouped(int: i64, sep: &str) -> String {
        let digits = int.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push_str(sep);
            }
            out.push(c);
        }
        out
    }

    /// `minor` written in every notation the parser accepts, each with the explicit
    /// separator that matches it. With `trim`, trailing zero decimals are left out too
    /// (`12.5`, `12`); that is only unambiguous for exponents below 3.
    fn notations(minor: i64, exponent: u8, trim: bool) -> Vec<(String, DecimalSeparator)> {
        let unit = 10i64.pow(u32::from(exponent));
        let int = minor / unit;
        let frac = match exponent {
            0 => String::new(),
            _ => format!("{:0width$}", minor % unit, width = usize::from(exponent)),
        };
        let plain = int.to_string();
        let dec = |int: &str, point: &str, frac: &str| {
            if frac.is_empty() {
                int.to_owned()
            } else {
                format!("{int}{point}{frac}")
            }
        };
        let mut forms = Vec::new();
        let mut fracs = vec![frac.as_str()];
        if trim {
            fracs.push(frac.trim_end_matches('0'));
        }
        for f in fracs {
            let en = dec(&grouped(int, ","), ".", f);
            let nl = dec(&grouped(int, "."), ",", f);
            forms.extend([
                (dec(&plain, ".", f), Dot),
                (dec(&plain, ",", f), Comma),
                (en.clone(), Dot),
                (nl.clone(), Comma),
                (format!("€ {nl}"), Comma),
                (format!("€{en}"), Dot),
                (format!("{nl} €"), Comma),
                (format!("EUR {}", dec(&plain, ".", f)), Dot),
                (dec(&grouped(int, "\u{202f}"), ",", f), Comma),
                (dec(&grouped(int, " "), ",", f), Comma),
                (dec(&grouped(int, "\u{a0}"), ",", f), Comma),
                (dec(&grouped(int, "'"), ".", f), Dot),
            ]);
        }
        forms
    }

    /// One `.` or `,` in the text, followed by exactly three digits: the shape `Auto` may
    /// refuse as ambiguous.
    fn ambiguous_shape(text: &str) -> bool {
        let seps: Vec<usize> = text.match_indices(['.', ',']).map(|(i, _)| i).collect();
        let [i] = seps[..] else { return false };
        let after: String = text[i + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        after.len() == 3
    }

    /// The safety property: with the matching explicit separator the text reads back
    /// exactly; with `Auto` it reads back exactly or is refused as ambiguous — never read
    /// as another number.
    fn assert_round_trip(minor: i64, exponent: u8, trim: bool) {
        for (text, explicit) in notations(minor, exponent, trim) {
            for sep in [Auto, explicit] {
                let got = parse_amount(&text, sep, exponent);
                if sep == Auto
                    && ambiguous_shape(&text)
                    && let Err(e) = &got
                {
                    assert!(e.0.contains("ambiguous"), "{text:?}: {e}");
                    continue;
                }
                assert_eq!(got, Ok(minor), "{text:?} {sep:?} exp {exponent}");
                let negatives = [format!("-{text}"), format!("({text})")];
                for neg in negatives {
                    assert_eq!(
                        parse_amount(&neg, sep, exponent),
                        Ok(-minor),
                        "{neg:?} {sep:?} exp {exponent}"
                    );
                }
            }
        }
    }

    #[test]
    fn notations_write_what_the_examples_say() {
        let forms: Vec<String> = notations(123456, 2, false)
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        for want in [
            "1234.56",
            "1234,56",
            "1,234.56",
            "1.234,56",
            "€ 1.234,56",
            "€1,234.56",
            "1.234,56 €",
            "EUR 1234.56",
            "1\u{202f}234,56",
            "1 234,56",
            "1'234.56",
        ] {
            assert!(
                forms.iter().any(|f| f == want),
                "{want:?} missing from {forms:?}"
            );
        }
        let trimmed: Vec<String> = notations(1250, 2, true)
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert!(trimmed.iter().any(|f| f == "12.5"));
        let whole: Vec<String> = notations(1200, 2, true)
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert!(whole.iter().any(|f| f == "12"));
    }

    #[test]
    fn round_trip_edge_values() {
        for minor in [
            1,
            9,
            10,
            99,
            100,
            101,
            999,
            1000,
            1001,
            99_999,
            100_000,
            123_456,
            100_000_000,
            123_456_789,
            9_999_999_999,
        ] {
            assert_round_trip(minor, 2, true);
        }
        for minor in [1, 999, 1000, 1_000_000, 99_999_999] {
            assert_round_trip(minor, 0, true);
            assert_round_trip(minor, 3, false);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn every_notation_reads_back_eur(minor in 1i64..=9_999_999_999) {
            assert_round_trip(minor, 2, true);
        }

        #[test]
        fn every_notation_reads_back_other_exponents(minor in 1i64..=9_999_999_999, exponent in prop::sample::select(vec![0u8, 3, 4])) {
            assert_round_trip(minor, exponent, exponent == 0);
        }

        #[test]
        fn format_then_parse_is_identity(minor in -99_999_999_999_999_999i64..=99_999_999_999_999_999) {
            prop_assert_eq!(parse_amount(&format_minor(minor, 2), Dot, 2), Ok(minor));
            prop_assert_eq!(parse_amount(&format_minor(minor, 2), Auto, 2), Ok(minor));
        }

        #[test]
        fn format_then_parse_is_identity_for_every_exponent(minor in -999_999_999_999_999i64..=999_999_999_999_999, exponent in 0u8..=4) {
            prop_assert_eq!(parse_amount(&format_minor(minor, exponent), Dot, exponent), Ok(minor));
        }

        #[test]
        fn beyond_fifteen_integer_digits_is_refused_not_misread(minor in prop_oneof![i64::MIN..=-100_000_000_000_000_000i64, 100_000_000_000_000_000i64..=i64::MAX]) {
            prop_assert!(parse_amount(&format_minor(minor, 2), Dot, 2).is_err());
        }

        #[test]
        fn never_panics(s in "\\PC{0,30}", exponent in 0u8..=20) {
            for sep in [Auto, Dot, Comma] {
                let _ = parse_amount(&s, sep, exponent);
            }
        }

        #[test]
        fn never_panics_on_amount_like_text(s in "[-+()€$ 0-9.,'\u{a0}\u{202f}EURx]{0,24}") {
            for sep in [Auto, Dot, Comma] {
                if let Ok(minor) = parse_amount(&s, sep, 2) {
                    // whatever is accepted reads back from its canonical form
                    prop_assert_eq!(parse_amount(&format_minor(minor, 2), Dot, 2), Ok(minor));
                }
            }
        }
    }
}
