//! The MIME message: headers, parts, inline QR image and the Message-ID.
//!
//! Owns the shape of every mail (multipart/alternative of text and HTML; the HTML in a
//! multipart/related with the QR PNG as `cid:qr` when there is one) and the rule that no
//! header value may carry a line break: every value that becomes a header is checked here
//! and refused with [`MailError::HeaderInjection`], before lettre's own encoding. It never
//! sends, never renders templates and never touches the database.

use lettre::Message;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use sha2::{Digest, Sha256};

use super::MailError;
use super::render::{MailContext, RenderedMail};

/// The content id of the inline QR image; the HTML refers to it as `cid:qr`.
pub const QR_CONTENT_ID: &str = "qr";

/// The Message-ID for one revision of one invoice:
/// `<is-{first 32 hex of sha256(reference NUL revision)}@{domain of from}>`.
///
/// Deterministic so that a mail sent twice (a retry after a timeout whose first attempt
/// did arrive) carries the same id and can be recognised as one, while a new revision
/// (new link) gets a new id. A `from` without a usable domain gives `invoice-sync.invalid`.
pub fn message_id(invoice_reference: &str, revision: i64, from: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(invoice_reference.as_bytes());
    hash.update([0u8]);
    hash.update(revision.to_string().as_bytes());
    let hex = hex::encode(hash.finalize());
    format!("<is-{}@{}>", &hex[..32], domain_of(from))
}

fn domain_of(from: &str) -> String {
    let address = match from.rsplit_once('<') {
        Some((_, rest)) => rest.trim_end().trim_end_matches('>'),
        None => from.trim(),
    };
    let domain = address.rsplit_once('@').map_or("", |(_, d)| d.trim());
    let usable = !domain.is_empty()
        && !domain.starts_with(['.', '-'])
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if usable {
        domain.to_ascii_lowercase()
    } else {
        "invoice-sync.invalid".to_string()
    }
}

/// Refuses a header value with CR, LF or another control character (tab is allowed).
fn check_header(field: &'static str, value: &str) -> Result<(), MailError> {
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(MailError::HeaderInjection {
            field,
            value: value.to_string(),
        });
    }
    Ok(())
}

/// The header naming the invoice and revision a mail announces (`INV-1 r2`).
pub const INVOICE_HEADER: &str = "X-Invoice";

/// Builds the mail to the customer of `ctx` from its rendered parts.
///
/// To is the customer's name and address (the name may be empty); From and Reply-To come
/// from `[email]`; `message_id` from [`message_id`]. Every header value is checked for
/// line breaks first, so a hostile name or reference from an export is refused with a
/// clear error instead of being sent.
pub fn build_message(
    rendered: &RenderedMail,
    ctx: &MailContext,
    from: &Mailbox,
    reply_to: Option<&Mailbox>,
    message_id: &str,
    revision: i64,
) -> Result<Message, MailError> {
    check_header("customer name", &ctx.customer_name)?;
    check_header("customer e-mail address", &ctx.customer_email)?;
    check_header("subject", &rendered.subject)?;
    check_header("Message-ID", message_id)?;
    let id_shape = message_id.starts_with('<')
        && message_id.ends_with('>')
        && message_id.contains('@')
        && !message_id.contains(char::is_whitespace);
    if !id_shape {
        return Err(MailError::Build(format!(
            "{message_id:?} is not a Message-ID of the form <id@domain>"
        )));
    }

    let address =
        ctx.customer_email
            .trim()
            .parse()
            .map_err(|e: lettre::address::AddressError| MailError::Address {
                field: "customer e-mail address",
                value: ctx.customer_email.clone(),
                reason: e.to_string(),
            })?;
    let name = ctx.customer_name.trim();
    let to = Mailbox::new((!name.is_empty()).then(|| name.to_string()), address);

    let mut builder = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(rendered.subject.as_str())
        .message_id(Some(message_id.to_string()))
        // Which invoice revision the mail announces: for support, and to name `.eml`
        // files so an operator can find a customer's mail.
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str(INVOICE_HEADER),
            format!("{} r{revision}", ctx.invoice_reference),
        ));
    if let Some(reply_to) = reply_to {
        builder = builder.reply_to(reply_to.clone());
    }

    let html = SinglePart::html(rendered.html.clone());
    let png = ctx.qr.as_ref().and_then(|q| q.png.as_ref());
    let body = match png {
        Some(png) => MultiPart::alternative()
            .singlepart(SinglePart::plain(rendered.text.clone()))
            .multipart(
                MultiPart::related().singlepart(html).singlepart(
                    Attachment::new_inline(QR_CONTENT_ID.to_string())
                        .body(png.clone(), ContentType::parse("image/png").expect("valid")),
                ),
            ),
        None => MultiPart::alternative()
            .singlepart(SinglePart::plain(rendered.text.clone()))
            .singlepart(html),
    };
    builder
        .multipart(body)
        .map_err(|e| MailError::Build(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_is_deterministic_per_revision() {
        let a = message_id("INV-1", 1, "Accounts <billing@Merchant.example>");
        assert_eq!(a, message_id("INV-1", 1, "billing@merchant.example"));
        assert_ne!(a, message_id("INV-1", 2, "billing@merchant.example"));
        assert_ne!(a, message_id("INV-2", 1, "billing@merchant.example"));
        assert!(
            a.starts_with("<is-") && a.ends_with("@merchant.example>"),
            "{a}"
        );
        assert_eq!(a.len(), "<is-".len() + 32 + "@merchant.example>".len());
    }

    #[test]
    fn message_id_matches_the_documented_hash() {
        // sha256("INV-1\x001") computed independently.
        let digest = hex::encode(Sha256::digest(b"INV-1\x001"));
        assert_eq!(
            message_id("INV-1", 1, "a@b.example"),
            format!("<is-{}@b.example>", &digest[..32])
        );
    }

    #[test]
    fn reference_and_revision_cannot_collide() {
        // "A1" rev 1 vs "A" rev 11: the NUL separator keeps them apart.
        assert_ne!(message_id("A1", 1, "a@b.c"), message_id("A", 11, "a@b.c"));
    }

    #[test]
    fn unusable_from_domain_falls_back() {
        assert!(message_id("X", 1, "").ends_with("@invoice-sync.invalid>"));
        assert!(message_id("X", 1, "a@b c").ends_with("@invoice-sync.invalid>"));
        assert!(message_id("X", 1, "a@b>\r\nBcc: x").ends_with("@invoice-sync.invalid>"));
    }

    #[test]
    fn control_characters_are_refused() {
        assert!(check_header("x", "Jan Jansen").is_ok());
        assert!(check_header("x", "Jan\tJansen").is_ok());
        for bad in ["a\rb", "a\nb", "a\r\nBcc: x@y", "a\0b", "a\u{85}b"] {
            assert!(
                matches!(
                    check_header("x", bad),
                    Err(MailError::HeaderInjection { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
