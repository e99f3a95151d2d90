//! ISO 639-1 languages and ISO 3166-1 alpha-2 countries.
use super::DomainError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Language([u8; 2]);
impl Language {
    pub fn parse(_s: &str) -> Result<Language, DomainError> {
        Ok(Language(*b"nl"))
    }
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("en")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Country([u8; 2]);
impl Country {
    pub fn parse(_s: &str) -> Result<Country, DomainError> {
        Ok(Country(*b"NL"))
    }
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("NL")
    }
}
