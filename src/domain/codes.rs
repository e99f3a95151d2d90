//! ISO 639-1 languages and ISO 3166-1 alpha-2 countries.
//!
//! Both go to the CM payment-link API as they are (`language_code`, `country_code`), so
//! only codes that the standards assign are let through: a typo in an export is rejected
//! with its row instead of failing at the API. The tables are static and sorted; a
//! lookup is a binary search without allocation.
use super::{DomainError, quoted};
use std::fmt;

/// An ISO 639-1 language, shown lowercase (`"nl"`), as the CM API and the mail
/// templates expect.
///
/// Parsing is case-insensitive because exports and the config write `NL` as often
/// as `nl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Language(&'static str);

impl Language {
    /// Reads a two-letter ISO 639-1 code, trimmed, in any case; refuses anything else
    /// (three-letter ISO 639-2 codes like `nld`, withdrawn codes like `iw`), so that
    /// a payment page is never asked for a language that does not exist.
    pub fn parse(s: &str) -> Result<Language, DomainError> {
        lookup(s, &ISO_639_1, u8::to_ascii_lowercase)
            .map(Language)
            .ok_or_else(|| {
                DomainError(format!(
                    "{} is not an ISO 639-1 language code (two letters, e.g. \"nl\")",
                    quoted(s.trim())
                ))
            })
    }

    /// The code in lowercase, `"nl"`: the form the CM API and the templates use.
    pub fn as_str(&self) -> &str {
        self.0
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// An officially assigned ISO 3166-1 alpha-2 country, shown uppercase (`"NL"`), as the
/// CM API expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Country(&'static str);

impl Country {
    /// Reads an officially assigned alpha-2 code, trimmed, in any case. User-assigned
    /// (`XK`) and reserved codes (`UK`, `EU`) are refused: the API and the card schemes
    /// only know the assigned ones.
    pub fn parse(s: &str) -> Result<Country, DomainError> {
        lookup(s, &ISO_3166_1_ALPHA_2, u8::to_ascii_uppercase)
            .map(Country)
            .ok_or_else(|| {
                let t = s.trim();
                let hint = if t.eq_ignore_ascii_case("uk") {
                    "the United Kingdom is \"GB\""
                } else {
                    "two letters, e.g. \"NL\""
                };
                DomainError(format!(
                    "{} is not an ISO 3166-1 alpha-2 country code ({hint})",
                    quoted(t)
                ))
            })
    }

    /// The code in uppercase, `"NL"`.
    pub fn as_str(&self) -> &str {
        self.0
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// The table entry for `s` (trimmed, two ASCII letters, case folded by `fold`), without
/// allocating.
fn lookup(s: &str, table: &[&'static str], fold: fn(&u8) -> u8) -> Option<&'static str> {
    let &[a, b] = s.trim().as_bytes() else {
        return None;
    };
    let key = [fold(&a), fold(&b)];
    table
        .binary_search_by(|code| code.as_bytes().cmp(&key[..]))
        .ok()
        .map(|i| table[i])
}

/// The ISO 639-1 codes, sorted: the 184 that the ISO 639-3 registration authority
/// (SIL) maps a language to, which includes `sh` (Serbo-Croatian) and leaves out the
/// collective `bh` and the withdrawn `iw`, `in`, `ji`, `jw`, `mo`.
const ISO_639_1: [&str; 184] = [
    "aa", "ab", "ae", "af", "ak", "am", "an", "ar", "as", "av", "ay", "az", "ba", "be", "bg", "bi",
    "bm", "bn", "bo", "br", "bs", "ca", "ce", "ch", "co", "cr", "cs", "cu", "cv", "cy", "da", "de",
    "dv", "dz", "ee", "el", "en", "eo", "es", "et", "eu", "fa", "ff", "fi", "fj", "fo", "fr", "fy",
    "ga", "gd", "gl", "gn", "gu", "gv", "ha", "he", "hi", "ho", "hr", "ht", "hu", "hy", "hz", "ia",
    "id", "ie", "ig", "ii", "ik", "io", "is", "it", "iu", "ja", "jv", "ka", "kg", "ki", "kj", "kk",
    "kl", "km", "kn", "ko", "kr", "ks", "ku", "kv", "kw", "ky", "la", "lb", "lg", "li", "ln", "lo",
    "lt", "lu", "lv", "mg", "mh", "mi", "mk", "ml", "mn", "mr", "ms", "mt", "my", "na", "nb", "nd",
    "ne", "ng", "nl", "nn", "no", "nr", "nv", "ny", "oc", "oj", "om", "or", "os", "pa", "pi", "pl",
    "ps", "pt", "qu", "rm", "rn", "ro", "ru", "rw", "sa", "sc", "sd", "se", "sg", "sh", "si", "sk",
    "sl", "sm", "sn", "so", "sq", "sr", "ss", "st", "su", "sv", "sw", "ta", "te", "tg", "th", "ti",
    "tk", "tl", "tn", "to", "tr", "ts", "tt", "tw", "ty", "ug", "uk", "ur", "uz", "ve", "vi", "vo",
    "wa", "wo", "xh", "yi", "yo", "za", "zh", "zu",
];

/// The 249 officially assigned ISO 3166-1 alpha-2 codes, sorted.
const ISO_3166_1_ALPHA_2: [&str; 249] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn strictly_sorted(table: &[&str]) -> bool {
        table.windows(2).all(|w| w[0] < w[1])
    }

    #[test]
    fn tables_are_sorted_and_well_formed() {
        assert!(strictly_sorted(&ISO_639_1));
        assert!(strictly_sorted(&ISO_3166_1_ALPHA_2));
        assert!(
            ISO_639_1
                .iter()
                .all(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_lowercase()))
        );
        assert!(
            ISO_3166_1_ALPHA_2
                .iter()
                .all(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()))
        );
    }

    #[test]
    fn every_table_entry_parses_to_itself() {
        for code in ISO_639_1 {
            assert_eq!(Language::parse(code).unwrap().as_str(), code);
            assert_eq!(
                Language::parse(&code.to_uppercase()).unwrap().as_str(),
                code
            );
        }
        for code in ISO_3166_1_ALPHA_2 {
            assert_eq!(Country::parse(code).unwrap().as_str(), code);
            assert_eq!(Country::parse(&code.to_lowercase()).unwrap().as_str(), code);
        }
    }

    #[test]
    fn language_accepts_any_case_and_shows_lowercase() {
        for s in ["nl", "NL", "Nl", " nl ", "\tNL\r\n"] {
            let l = Language::parse(s).unwrap();
            assert_eq!(l.as_str(), "nl", "{s:?}");
            assert_eq!(l.to_string(), "nl");
        }
        assert_eq!(Language::parse("en").unwrap().as_str(), "en");
        assert_eq!(Language::parse("sh").unwrap().as_str(), "sh");
    }

    #[test]
    fn language_rejects_unassigned_and_other_forms() {
        for s in [
            "xx", "nld", "dut", "n", "", "  ", "n1", "nl-NL", "nl_NL", "iw", "in", "bh", "ñl",
            "eng",
        ] {
            assert!(Language::parse(s).is_err(), "{s:?} should be rejected");
        }
        assert_eq!(
            Language::parse("nld").unwrap_err().to_string(),
            "\"nld\" is not an ISO 639-1 language code (two letters, e.g. \"nl\")"
        );
    }

    #[test]
    fn country_accepts_any_case_and_shows_uppercase() {
        for s in ["NL", "nl", "nL", " NL\t"] {
            let c = Country::parse(s).unwrap();
            assert_eq!(c.as_str(), "NL", "{s:?}");
            assert_eq!(c.to_string(), "NL");
        }
        for s in ["BE", "DE", "GB", "US", "CW", "SS", "AX", "BQ"] {
            assert_eq!(Country::parse(s).unwrap().as_str(), s);
        }
    }

    #[test]
    fn country_rejects_unassigned_reserved_and_alpha_3() {
        for s in [
            "xx", "XX", "NLD", "nld", "UK", "EU", "XK", "AN", "YU", "N", "", "N1", "ÑL",
        ] {
            assert!(Country::parse(s).is_err(), "{s:?} should be rejected");
        }
        assert_eq!(
            Country::parse("xx").unwrap_err().to_string(),
            "\"xx\" is not an ISO 3166-1 alpha-2 country code (two letters, e.g. \"NL\")"
        );
        assert_eq!(
            Country::parse("uk").unwrap_err().to_string(),
            "\"uk\" is not an ISO 3166-1 alpha-2 country code (the United Kingdom is \"GB\")"
        );
    }
}
