//! Text values from the export: invoice references, customer names, e-mail addresses.
use super::DomainError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceRef(String);
impl InvoiceRef {
    pub fn parse(s: &str) -> Result<InvoiceRef, DomainError> {
        Ok(InvoiceRef(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerName(String);
impl CustomerName {
    pub fn parse(s: &str) -> Result<CustomerName, DomainError> {
        Ok(CustomerName(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress(String);
impl EmailAddress {
    pub fn parse(s: &str) -> Result<EmailAddress, DomainError> {
        Ok(EmailAddress(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
