//! Rendering: the subject, plain text and HTML of one payment-link mail.
//!
//! Owns the templates (built in for `nl`, `en`, `de`, `fr`, each overridable file by file
//! from `email.templates_dir`), the choice of language (anything else falls back to `en`)
//! and how amounts and due dates are written in each language. Templates are MiniJinja
//! (Jinja2 syntax) with strict undefined variables; `*.html` templates auto-escape every
//! value, so a customer name such as `<script>` arrives as text. It only produces strings:
//! it never builds MIME, never sends and never touches the database.
//!
//! Formats, chosen to match how invoices are usually written in each language:
//!
//! | language | amount (EUR)  | amount (other) | due date           |
//! |----------|---------------|----------------|--------------------|
//! | `nl`     | `€ 1.234,56`  | `USD 1.234,56` | `21 november 2026` |
//! | `en`     | `€1,234.56`   | `USD 1,234.56` | `21 November 2026` |
//! | `de`     | `1.234,56 €`  | `1.234,56 USD` | `21.11.2026`       |
//! | `fr`     | `1 234,56 €`  | `1 234,56 USD` | `21/11/2026`       |
//!
//! Spaces are plain ASCII spaces. The number of decimals is the currency's exponent (JPY: none).
//! A language added only through `templates_dir` gets the `en` formats.
//!
//! # Template variables
//!
//! `customer_name` (may be empty), `customer_email`, `invoice_reference`, `amount`
//! (formatted), `amount_minor`, `currency_code`, `due_date` (formatted), `due_date_iso`,
//! `language`, `link_uri`, `qr_url` (none when there is no QR code), `qr_inline` (true
//! when the QR image is attached and shown with `<img src="cid:qr">`),
//! `replaces_earlier_link`, `sender_name`, and in the text and HTML parts also `subject`.
//! Blocks trim the newline that follows them (`trim_blocks`, `lstrip_blocks`).
//!
//! `merchant` holds the `[merchant]` identity: `name` (falls back to `sender_name`),
//! `address`, `kvk`, `phone`, `website`, `iban` (as configured), and `iban_grouped` (upper
//! case in groups of four, `NL91 ABNA 0417 1643 00`); each is none when not set.
//! `creditor_reference` is the invoice's ISO 11649 structured creditor reference
//! ([`CreditorRef::of_invoice`]; `RF69F20260042`) and `creditor_reference_grouped` the
//! same in groups of four (`RF69 F202 6004 2`), as a customer types it: the reference a
//! transfer is recognised by. Both are always set. When `merchant.iban` is set, every
//! built-in mail (link mail, replacement, each reminder) offers paying by transfer: the
//! amount, `merchant.iban_grouped`, `merchant.name` and `creditor_reference_grouped`, and
//! asks to quote exactly that reference.
//!
//! After a partial payment ([`MailContext::received_minor`]), `amount_received` is what
//! was received and `amount_remaining` what remains, which is what the link asks for
//! (`amount`), both formatted like `amount`; both are none otherwise. The built-in link
//! mail then says what was received and that the rest can be paid through the link.
//!
//! Reminders (`<lang>.<kind>.subject.txt`, `.txt`, `.html`, kind `before_due`, `overdue`
//! or `final_notice`) add `reminder_kind`, `reminder_step`, `days_overdue`, and for the
//! final notice `notice_deadline`, `collection_costs` and `amount_with_costs` (none
//! otherwise). The built-in reminder bodies extend their language's link mail
//! (`{% extends "nl.txt" %}`) and replace its `{% block message %}`, so the greeting, the
//! link, the QR code and the merchant's foot are written once per language; an override
//! of a link template must keep that block (checked at load). A language without
//! templates for a kind gets that kind in English.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{Datelike, NaiveDate};
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value, context};

use super::MailError;
use crate::domain::{CreditorRef, ReminderKind};

/// The languages with built-in templates and formats.
pub const BUILTIN_LANGUAGES: [&str; 4] = ["nl", "en", "de", "fr"];

/// The language used when a customer's language has no templates.
pub const FALLBACK_LANGUAGE: &str = "en";

/// The three template files of one mail, as suffixes after `<lang>.` (the link mail) or
/// `<lang>.<kind>.` (a reminder: `before_due`, `overdue`, `final_notice`).
const PARTS: [&str; 3] = ["subject.txt", "txt", "html"];

/// The template name prefix of a mail after the language: empty for the link mail,
/// `<kind>.` for a reminder.
fn kind_prefix(kind: Option<ReminderKind>) -> String {
    kind.map(|k| format!("{}.", k.as_str())).unwrap_or_default()
}

/// Every built-in template: per language, the link mail and each reminder kind.
const BUILTIN: [(&str, &str); 48] = [
    ("nl.subject.txt", include_str!("templates/nl.subject.txt")),
    ("nl.txt", include_str!("templates/nl.txt")),
    ("nl.html", include_str!("templates/nl.html")),
    (
        "nl.before_due.subject.txt",
        include_str!("templates/nl.before_due.subject.txt"),
    ),
    (
        "nl.before_due.txt",
        include_str!("templates/nl.before_due.txt"),
    ),
    (
        "nl.before_due.html",
        include_str!("templates/nl.before_due.html"),
    ),
    (
        "nl.overdue.subject.txt",
        include_str!("templates/nl.overdue.subject.txt"),
    ),
    ("nl.overdue.txt", include_str!("templates/nl.overdue.txt")),
    ("nl.overdue.html", include_str!("templates/nl.overdue.html")),
    (
        "nl.final_notice.subject.txt",
        include_str!("templates/nl.final_notice.subject.txt"),
    ),
    (
        "nl.final_notice.txt",
        include_str!("templates/nl.final_notice.txt"),
    ),
    (
        "nl.final_notice.html",
        include_str!("templates/nl.final_notice.html"),
    ),
    ("en.subject.txt", include_str!("templates/en.subject.txt")),
    ("en.txt", include_str!("templates/en.txt")),
    ("en.html", include_str!("templates/en.html")),
    (
        "en.before_due.subject.txt",
        include_str!("templates/en.before_due.subject.txt"),
    ),
    (
        "en.before_due.txt",
        include_str!("templates/en.before_due.txt"),
    ),
    (
        "en.before_due.html",
        include_str!("templates/en.before_due.html"),
    ),
    (
        "en.overdue.subject.txt",
        include_str!("templates/en.overdue.subject.txt"),
    ),
    ("en.overdue.txt", include_str!("templates/en.overdue.txt")),
    ("en.overdue.html", include_str!("templates/en.overdue.html")),
    (
        "en.final_notice.subject.txt",
        include_str!("templates/en.final_notice.subject.txt"),
    ),
    (
        "en.final_notice.txt",
        include_str!("templates/en.final_notice.txt"),
    ),
    (
        "en.final_notice.html",
        include_str!("templates/en.final_notice.html"),
    ),
    ("de.subject.txt", include_str!("templates/de.subject.txt")),
    ("de.txt", include_str!("templates/de.txt")),
    ("de.html", include_str!("templates/de.html")),
    (
        "de.before_due.subject.txt",
        include_str!("templates/de.before_due.subject.txt"),
    ),
    (
        "de.before_due.txt",
        include_str!("templates/de.before_due.txt"),
    ),
    (
        "de.before_due.html",
        include_str!("templates/de.before_due.html"),
    ),
    (
        "de.overdue.subject.txt",
        include_str!("templates/de.overdue.subject.txt"),
    ),
    ("de.overdue.txt", include_str!("templates/de.overdue.txt")),
    ("de.overdue.html", include_str!("templates/de.overdue.html")),
    (
        "de.final_notice.subject.txt",
        include_str!("templates/de.final_notice.subject.txt"),
    ),
    (
        "de.final_notice.txt",
        include_str!("templates/de.final_notice.txt"),
    ),
    (
        "de.final_notice.html",
        include_str!("templates/de.final_notice.html"),
    ),
    ("fr.subject.txt", include_str!("templates/fr.subject.txt")),
    ("fr.txt", include_str!("templates/fr.txt")),
    ("fr.html", include_str!("templates/fr.html")),
    (
        "fr.before_due.subject.txt",
        include_str!("templates/fr.before_due.subject.txt"),
    ),
    (
        "fr.before_due.txt",
        include_str!("templates/fr.before_due.txt"),
    ),
    (
        "fr.before_due.html",
        include_str!("templates/fr.before_due.html"),
    ),
    (
        "fr.overdue.subject.txt",
        include_str!("templates/fr.overdue.subject.txt"),
    ),
    ("fr.overdue.txt", include_str!("templates/fr.overdue.txt")),
    ("fr.overdue.html", include_str!("templates/fr.overdue.html")),
    (
        "fr.final_notice.subject.txt",
        include_str!("templates/fr.final_notice.subject.txt"),
    ),
    (
        "fr.final_notice.txt",
        include_str!("templates/fr.final_notice.txt"),
    ),
    (
        "fr.final_notice.html",
        include_str!("templates/fr.final_notice.html"),
    ),
];

/// A QR code to show in the mail (iDEAL QR, when enabled).
///
/// The URL always exists; the PNG bytes exist when the image was fetched, and are then
/// attached inline so the mail shows it without loading remote images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrCode {
    /// Where the QR image (or the QR payment page) can be opened.
    pub url: String,
    /// The QR image itself, attached as `cid:qr` when present.
    pub png: Option<Vec<u8>>,
}

/// Everything one mail says, taken from the invoice revision and its link.
///
/// Plain strings on purpose: the values were validated when the row was ingested, and the
/// mail layer must not depend on how the store represents them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailContext {
    /// The invoice reference from the export.
    pub invoice_reference: crate::domain::InvoiceRef,
    /// The customer's name; may be empty (the greeting then has no name).
    pub customer_name: String,
    /// The customer's e-mail address (the only recipient).
    pub customer_email: String,
    /// The amount the link asks for, in minor units of the currency.
    pub amount_minor: i64,
    /// ISO 4217 code, e.g. `EUR`.
    pub currency_code: String,
    /// Number of decimals of the currency (2 for EUR, 0 for JPY).
    pub currency_exponent: u8,
    /// The invoice's due date.
    pub due_date: NaiveDate,
    /// ISO 639-1 code, lowercase; unknown languages fall back to [`FALLBACK_LANGUAGE`].
    pub language: String,
    /// The payment link.
    pub link_uri: String,
    /// The QR code, when iDEAL QR is enabled and one was made.
    pub qr: Option<QrCode>,
    /// Who signs the mail: the display name of `email.from` (else its address), so that a
    /// payment request never comes from nobody.
    pub sender_name: String,
    /// The `[merchant]` identity shown at the foot of the mail (its name falls back to
    /// `sender_name`).
    pub merchant: crate::config::Merchant,
    /// True when this mail replaces a link sent earlier (amount or due date changed):
    /// the mail then says that the earlier link no longer works.
    pub replaces_earlier_link: bool,
    /// What was already received by bank transfer, in minor units of the invoice's
    /// currency, when this revision follows a partial payment: the link mail then says
    /// what was received and that the rest ([`MailContext::amount_minor`], what the link
    /// asks for) remains. `None` (or not more than zero) says nothing about it.
    pub received_minor: Option<i64>,
    /// Set for a reminder: which one, and what it adds.
    pub reminder: Option<ReminderContext>,
}

/// What a reminder adds to the mail of its invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReminderContext {
    /// Which templates: before the due date, overdue, or the final notice.
    pub kind: ReminderKind,
    /// The step, in days relative to the due date.
    pub step: i64,
    /// The (local) day the mail is sent: the notice term counts from it.
    pub sent_on: NaiveDate,
    /// For the final notice: the statutory collection costs due after its term, in minor
    /// units of the invoice's currency (euro cents).
    pub collection_costs_minor: Option<i64>,
}

/// The rendered parts of one mail, before MIME.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedMail {
    /// One line, no line break.
    pub subject: String,
    /// The plain-text part.
    pub text: String,
    /// The HTML part (values escaped).
    pub html: String,
}

/// The loaded templates: built-ins plus overrides, checked once at load.
///
/// Loading checks syntax and renders every overridden language once with sample data,
/// so a broken template is an error at start-up (naming the file), not a failed mail.
#[derive(Debug, Clone)]
pub struct Templates {
    env: Environment<'static>,
    /// Where each template came from, for error messages (`built-in nl.html` or a path).
    origins: BTreeMap<String, String>,
    languages: BTreeSet<String>,
}

impl Templates {
    /// The built-in templates only.
    pub fn builtin() -> Templates {
        let mut templates = Templates {
            env: new_environment(),
            origins: BTreeMap::new(),
            languages: BUILTIN_LANGUAGES.iter().map(|l| l.to_string()).collect(),
        };
        for (name, source) in BUILTIN {
            templates
                .add(name, source.to_string(), format!("built-in {name}"))
                .expect("the built-in templates parse");
        }
        templates
    }

    /// The built-ins, with the files of `dir` (`email.templates_dir`) overriding them one
    /// by one: `<lang>.subject.txt`, `<lang>.txt`, `<lang>.html`. A language that is not
    /// built in can be added with all three files. Other files are ignored with a warning.
    pub fn load(dir: Option<&Path>) -> Result<Templates, MailError> {
        let mut templates = Self::builtin();
        let Some(dir) = dir else {
            return Ok(templates);
        };
        let entries = std::fs::read_dir(dir)
            .map_err(|e| MailError::io_path("cannot read the templates folder", dir, e))?;
        let mut overrides = Vec::new();
        for entry in entries {
            let entry = entry
                .map_err(|e| MailError::io_path("cannot read the templates folder", dir, e))?;
            let path = entry.path();
            if !path.is_file() {
                continue;
            }
            let file_name = entry.file_name();
            let Some((lang, name)) = file_name.to_str().and_then(template_name) else {
                tracing::warn!(file = %path.display(), "not a mail template name (expected <lang>.subject.txt, <lang>.txt or <lang>.html); ignored");
                continue;
            };
            let source = std::fs::read_to_string(&path)
                .map_err(|e| MailError::io_path("cannot read the mail template", &path, e))?;
            overrides.push((lang, name, path, source));
        }
        overrides.sort_by(|a, b| a.1.cmp(&b.1));

        let mut changed = BTreeSet::new();
        for (lang, name, path, source) in overrides {
            templates.add(&name, source, path.display().to_string())?;
            changed.insert(lang);
        }
        for lang in &changed {
            // A reminder kind given in part (some of its three files) is an error for
            // any language; one not given at all falls back to the built-in English.
            for kind in ReminderKind::ALL {
                let names: Vec<String> = PARTS
                    .iter()
                    .map(|part| format!("{lang}.{}.{part}", kind.as_str()))
                    .collect();
                let missing: Vec<&String> = names
                    .iter()
                    .filter(|name| !templates.origins.contains_key(*name))
                    .collect();
                if !missing.is_empty() && missing.len() < PARTS.len() {
                    return Err(MailError::Template {
                        template: dir.join(missing[0]).display().to_string(),
                        message: format!(
                            "missing: the {} reminder of {lang} needs all of {} (missing {})",
                            kind.as_str(),
                            names.join(", "),
                            missing
                                .iter()
                                .map(|m| m.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    });
                }
            }
            if !templates.languages.contains(lang) {
                let missing: Vec<String> = PARTS
                    .iter()
                    .map(|part| format!("{lang}.{part}"))
                    .filter(|name| !templates.origins.contains_key(name))
                    .collect();
                if !missing.is_empty() {
                    return Err(MailError::Template {
                        template: dir.join(&missing[0]).display().to_string(),
                        message: format!(
                            "missing: a language without built-in templates needs all of {lang}.subject.txt, {lang}.txt and {lang}.html (missing {})",
                            missing.join(", ")
                        ),
                    });
                }
                templates.languages.insert(lang.clone());
            }
        }
        for lang in &changed {
            for sample in sample_contexts(lang) {
                let mail = render(&sample, &templates)?;
                if mail.subject.contains(['\r', '\n']) {
                    let name = format!(
                        "{}.{}subject.txt",
                        templates
                            .effective_language(lang, sample.reminder.as_ref().map(|r| r.kind)),
                        kind_prefix(sample.reminder.as_ref().map(|r| r.kind))
                    );
                    return Err(MailError::Template {
                        template: templates.origins[&name].clone(),
                        message: "the subject must render as one line".into(),
                    });
                }
                // The built-in reminders extend the link mail's templates and replace
                // their `message` block: an override without it would send reminders
                // that read like the first mail.
                if sample.reminder.is_some() {
                    let link = render(
                        &MailContext {
                            reminder: None,
                            ..sample.clone()
                        },
                        &templates,
                    )?;
                    let lang = templates.effective_language(lang, None);
                    for (part, same) in [
                        ("txt", mail.text == link.text),
                        ("html", mail.html == link.html),
                    ] {
                        if same {
                            return Err(MailError::Template {
                                template: templates.origins[&format!("{lang}.{part}")].clone(),
                                message: "keep `{% block message %}…{% endblock %}` around the message: the reminder templates extend this one and replace that block".into(),
                            });
                        }
                    }
                }
            }
        }
        Ok(templates)
    }

    /// The languages that have templates, built in or added.
    pub fn languages(&self) -> impl Iterator<Item = &str> {
        self.languages.iter().map(String::as_str)
    }

    /// The language a mail for `requested` is written in: itself when it has templates
    /// (for a reminder: that kind's), else [`FALLBACK_LANGUAGE`].
    pub fn effective_language(&self, requested: &str, kind: Option<ReminderKind>) -> String {
        let lang = requested.trim().to_ascii_lowercase();
        let has_kind = kind.is_none_or(|k| {
            self.origins
                .contains_key(&format!("{lang}.{}.txt", k.as_str()))
        });
        if self.languages.contains(&lang) && has_kind {
            lang
        } else {
            FALLBACK_LANGUAGE.to_string()
        }
    }

    fn add(&mut self, name: &str, source: String, origin: String) -> Result<(), MailError> {
        self.env
            .add_template_owned(name.to_string(), source)
            .map_err(|e| MailError::Template {
                template: origin.clone(),
                message: e.to_string(),
            })?;
        self.origins.insert(name.to_string(), origin);
        Ok(())
    }

    fn render_part(&self, name: &str, ctx: &Value) -> Result<String, MailError> {
        let origin = || {
            self.origins
                .get(name)
                .cloned()
                .unwrap_or_else(|| name.to_string())
        };
        let template = self
            .env
            .get_template(name)
            .map_err(|e| MailError::Template {
                template: origin(),
                message: e.to_string(),
            })?;
        // A reminder template extends its language's link template: an error in the
        // parent names the parent's file.
        template.render(ctx).map_err(|e| MailError::Template {
            template: e
                .name()
                .and_then(|n| self.origins.get(n))
                .cloned()
                .unwrap_or_else(origin),
            message: e.to_string(),
        })
    }
}

impl Default for Templates {
    fn default() -> Self {
        Self::builtin()
    }
}

fn new_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    // MiniJinja's HTML escaping also escapes `/`, which turns every link into
    // `https:&#x2f;&#x2f;…`: valid, but hard to read and odd to link checkers. The five
    // characters that matter in text and quoted attributes are enough.
    env.set_formatter(|out, state, value| {
        if state.auto_escape() == AutoEscape::Html && !value.is_safe() && !value.is_none() {
            out.write_str(&escape_html(&value.to_string()))?;
            Ok(())
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(true);
    env
}

pub use crate::domain::text::escape_html;

/// `nl.subject.txt` → `("nl", "nl.subject.txt")`, `nl.overdue.txt` → `("nl",
/// "nl.overdue.txt")`; `None` for anything else.
fn template_name(file_name: &str) -> Option<(String, String)> {
    let (lang, part) = file_name.split_once('.')?;
    let is_lang = lang.len() == 2 && lang.bytes().all(|b| b.is_ascii_lowercase());
    let part = ReminderKind::ALL
        .iter()
        .find_map(|k| {
            part.strip_prefix(k.as_str())
                .and_then(|p| p.strip_prefix('.'))
        })
        .unwrap_or(part);
    (is_lang && PARTS.contains(&part)).then(|| (lang.to_string(), file_name.to_string()))
}

/// Renders the mail for `ctx` in its language (or the fallback).
///
/// Refuses a link or QR URL that is not `http(s)`. Does not check header values for line
/// breaks: [`super::build_message`] does that for every header, whatever produced it.
pub fn render(ctx: &MailContext, templates: &Templates) -> Result<RenderedMail, MailError> {
    check_url("payment link", &ctx.link_uri)?;
    if let Some(qr) = &ctx.qr {
        check_url("QR code URL", &qr.url)?;
    }
    let kind = ctx.reminder.as_ref().map(|r| r.kind);
    let lang = templates.effective_language(&ctx.language, kind);
    let money = |minor: i64| format_amount(minor, &ctx.currency_code, ctx.currency_exponent, &lang);
    let reminder = ctx.reminder.as_ref();
    let costs = reminder.and_then(|r| r.collection_costs_minor);
    let received = ctx.received_minor.filter(|&r| r > 0);
    let creditor = CreditorRef::of_invoice(ctx.invoice_reference.as_str());
    let values = context! {
        reminder_kind => kind.map(ReminderKind::as_str),
        reminder_step => reminder.map(|r| r.step),
        days_overdue => reminder.map(|r| (r.sent_on - ctx.due_date).num_days().max(0)),
        notice_deadline => reminder.and_then(|r| r.sent_on.checked_add_days(chrono::Days::new(14)))
            .map(|d| format_due_date(d, &lang)),
        collection_costs => costs.map(money),
        amount_with_costs => costs.map(|c| money(ctx.amount_minor.saturating_add(c))),
        language => &lang,
        customer_name => ctx.customer_name.trim(),
        customer_email => ctx.customer_email.trim(),
        invoice_reference => &ctx.invoice_reference,
        amount => format_amount(ctx.amount_minor, &ctx.currency_code, ctx.currency_exponent, &lang),
        amount_minor => ctx.amount_minor,
        currency_code => ctx.currency_code.trim().to_ascii_uppercase(),
        due_date => format_due_date(ctx.due_date, &lang),
        due_date_iso => ctx.due_date.format("%Y-%m-%d").to_string(),
        amount_received => received.map(money),
        amount_remaining => received.map(|_| money(ctx.amount_minor)),
        creditor_reference => creditor.as_str(),
        creditor_reference_grouped => creditor.grouped(),
        link_uri => &ctx.link_uri,
        qr_url => ctx.qr.as_ref().map(|q| q.url.as_str()),
        qr_inline => ctx.qr.as_ref().is_some_and(|q| q.png.is_some()),
        replaces_earlier_link => ctx.replaces_earlier_link,
        sender_name => ctx.sender_name.trim(),
        merchant => context! {
            name => ctx.merchant.name.as_deref().map(str::trim).filter(|n| !n.is_empty())
                .unwrap_or(ctx.sender_name.trim()),
            address => ctx.merchant.address.as_deref().map(str::trim),
            kvk => ctx.merchant.kvk.as_deref().map(str::trim),
            phone => ctx.merchant.phone.as_deref().map(str::trim),
            website => ctx.merchant.website.as_deref().map(str::trim),
            iban => ctx.merchant.iban.as_deref().map(str::trim),
            iban_grouped => ctx.merchant.iban.as_deref().map(grouped_iban),
        },
    };
    let base = format!("{lang}.{}", kind_prefix(kind));
    let subject = templates
        .render_part(&format!("{base}subject.txt"), &values)?
        .trim()
        .to_string();
    let values = context! { subject => &subject, ..values };
    Ok(RenderedMail {
        text: templates.render_part(&format!("{base}txt"), &values)?,
        html: templates.render_part(&format!("{base}html"), &values)?,
        subject,
    })
}

/// An IBAN as banks print it: upper case, in groups of four (`NL91 ABNA 0417 1643 00`),
/// whatever spacing it was configured with.
fn grouped_iban(iban: &str) -> String {
    let compact: Vec<char> = iban
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    compact
        .chunks(4)
        .map(|group| group.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

fn check_url(field: &'static str, url: &str) -> Result<(), MailError> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let ok = (lower.starts_with("https://") || lower.starts_with("http://"))
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(MailError::Url {
            field,
            value: url.to_string(),
        })
    }
}

/// An amount as a customer reading `language` expects it (see the module table).
///
/// Integer arithmetic only; `exponent` is the currency's number of decimals.
pub fn format_amount(minor: i64, currency_code: &str, exponent: u8, language: &str) -> String {
    let (group_sep, decimal_sep) = match language {
        "nl" | "de" => ('.', ','),
        "fr" => (' ', ','),
        _ => (',', '.'),
    };
    let exponent = u32::from(exponent.min(18));
    let scale = 10u128.pow(exponent);
    let abs = u128::from(minor.unsigned_abs());
    let digits = group_thousands(abs / scale, group_sep);
    let number = if exponent == 0 {
        digits
    } else {
        format!(
            "{digits}{decimal_sep}{:0width$}",
            abs % scale,
            width = exponent as usize
        )
    };
    let sign = if minor < 0 { "-" } else { "" };
    let code = currency_code.trim().to_ascii_uppercase();
    let euro = code == "EUR";
    match language {
        "nl" if euro => format!("€ {sign}{number}"),
        "nl" => format!("{code} {sign}{number}"),
        "de" | "fr" if euro => format!("{sign}{number} €"),
        "de" | "fr" => format!("{sign}{number} {code}"),
        _ if euro => format!("{sign}€{number}"),
        _ => format!("{sign}{code} {number}"),
    }
}

fn group_thousands(n: u128, sep: char) -> String {
    let plain = n.to_string();
    let mut out = String::with_capacity(plain.len() + plain.len() / 3);
    for (i, c) in plain.chars().enumerate() {
        if i > 0 && (plain.len() - i).is_multiple_of(3) {
            out.push(sep);
        }
        out.push(c);
    }
    out
}

const MONTHS_NL: [&str; 12] = [
    "januari",
    "februari",
    "maart",
    "april",
    "mei",
    "juni",
    "juli",
    "augustus",
    "september",
    "oktober",
    "november",
    "december",
];
const MONTHS_EN: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A due date as a customer reading `language` expects it (see the module table).
pub fn format_due_date(date: NaiveDate, language: &str) -> String {
    let (d, m, y) = (date.day(), date.month(), date.year());
    match language {
        "nl" => format!("{d} {} {y}", MONTHS_NL[m as usize - 1]),
        "de" => format!("{d:02}.{m:02}.{y}"),
        "fr" => format!("{d:02}/{m:02}/{y}"),
        _ => format!("{d} {} {y}", MONTHS_EN[m as usize - 1]),
    }
}

/// Contexts that exercise every branch of a template, for the check at load.
fn sample_contexts(lang: &str) -> Vec<MailContext> {
    // Every `[merchant]` key set, so the transfer paragraph and the foot's lines render.
    let merchant = crate::config::Merchant {
        name: Some("Sample Merchant".into()),
        address: Some("Sample Street 1, 1234 AB Sample Town".into()),
        kvk: Some("12345678".into()),
        phone: Some("+31 20 123 4567".into()),
        website: Some("https://merchant.example".into()),
        iban: Some("NL91ABNA0417164300".into()),
    };
    let base = MailContext {
        invoice_reference: crate::domain::InvoiceRef::parse("INV-0001").unwrap(),
        customer_name: "Sample Customer".into(),
        customer_email: "customer@example.com".into(),
        amount_minor: 123_456,
        currency_code: "EUR".into(),
        currency_exponent: 2,
        due_date: NaiveDate::from_ymd_opt(2026, 11, 21).expect("a valid date"),
        language: lang.to_string(),
        link_uri: "https://pay.example/link".into(),
        qr: None,
        replaces_earlier_link: false,
        received_minor: None,
        sender_name: "Accounts".into(),
        merchant: Default::default(),
        reminder: None,
    };
    let mut samples: Vec<MailContext> = ReminderKind::ALL
        .iter()
        .flat_map(|&kind| [(kind, Default::default()), (kind, merchant.clone())])
        .map(|(kind, merchant)| MailContext {
            reminder: Some(ReminderContext {
                kind,
                step: 7,
                sent_on: NaiveDate::from_ymd_opt(2026, 11, 28).expect("a valid date"),
                collection_costs_minor: (kind == ReminderKind::FinalNotice).then_some(20_685),
            }),
            qr: Some(QrCode {
                url: "https://pay.example/qr.png".into(),
                png: None,
            }),
            merchant,
            ..base.clone()
        })
        .collect();
    samples.extend([
        base.clone(),
        MailContext {
            customer_name: String::new(),
            qr: Some(QrCode {
                url: "https://pay.example/qr.png".into(),
                png: None,
            }),
            replaces_earlier_link: true,
            received_minor: Some(40_000),
            sender_name: "Accounts".into(),
            merchant,
            ..base.clone()
        },
        MailContext {
            qr: Some(QrCode {
                url: "https://pay.example/qr.png".into(),
                png: Some(vec![0x89, b'P', b'N', b'G']),
            }),
            ..base
        },
    ]);
    samples
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_per_language() {
        assert_eq!(format_amount(123_456, "EUR", 2, "nl"), "€ 1.234,56");
        assert_eq!(format_amount(123_456, "EUR", 2, "en"), "€1,234.56");
        assert_eq!(format_amount(123_456, "EUR", 2, "de"), "1.234,56 €");
        assert_eq!(format_amount(123_456, "EUR", 2, "fr"), "1 234,56 €");
        assert_eq!(format_amount(123_456, "usd", 2, "en"), "USD 1,234.56");
        assert_eq!(format_amount(123_456, "USD", 2, "nl"), "USD 1.234,56");
        assert_eq!(format_amount(123_456, "USD", 2, "de"), "1.234,56 USD");
        assert_eq!(format_amount(123_456, "JPY", 0, "en"), "JPY 123,456");
        assert_eq!(format_amount(123_456, "JPY", 0, "nl"), "JPY 123.456");
    }

    #[test]
    fn amount_edges() {
        assert_eq!(format_amount(5, "EUR", 2, "nl"), "€ 0,05");
        assert_eq!(format_amount(0, "EUR", 2, "en"), "€0.00");
        assert_eq!(format_amount(100_000, "EUR", 2, "en"), "€1,000.00");
        assert_eq!(format_amount(99_999, "EUR", 2, "en"), "€999.99");
        assert_eq!(format_amount(-123_456, "EUR", 2, "en"), "-€1,234.56");
        assert_eq!(format_amount(-123_456, "EUR", 2, "de"), "-1.234,56 €");
        assert_eq!(format_amount(1_234_567, "BHD", 3, "en"), "BHD 1,234.567");
        assert_eq!(
            format_amount(i64::MIN, "EUR", 2, "en"),
            "-€92,233,720,368,547,758.08"
        );
        assert_eq!(format_amount(123_456, "EUR", 2, "es"), "€1,234.56");
    }

    #[test]
    fn due_dates_per_language() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 21).unwrap();
        assert_eq!(format_due_date(d, "nl"), "21 november 2026");
        assert_eq!(format_due_date(d, "en"), "21 November 2026");
        assert_eq!(format_due_date(d, "de"), "21.11.2026");
        assert_eq!(format_due_date(d, "fr"), "21/11/2026");
        let d = NaiveDate::from_ymd_opt(2027, 3, 5).unwrap();
        assert_eq!(format_due_date(d, "nl"), "5 maart 2027");
        assert_eq!(format_due_date(d, "de"), "05.03.2027");
        assert_eq!(format_due_date(d, "fr"), "05/03/2027");
    }

    #[test]
    fn html_escaping_covers_the_five_characters() {
        assert_eq!(
            escape_html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(
            escape_html("https://x.example/a?b=1"),
            "https://x.example/a?b=1"
        );
    }

    #[test]
    fn template_names() {
        assert_eq!(
            template_name("nl.subject.txt"),
            Some(("nl".into(), "nl.subject.txt".into()))
        );
        assert_eq!(
            template_name("es.html"),
            Some(("es".into(), "es.html".into()))
        );
        assert_eq!(template_name("NL.html"), None);
        assert_eq!(template_name("nl.htm"), None);
        assert_eq!(template_name("README.md"), None);
        assert_eq!(template_name("nld.txt"), None);
    }

    #[test]
    fn every_builtin_language_renders_every_branch() {
        let t = Templates::builtin();
        for lang in BUILTIN_LANGUAGES {
            for ctx in sample_contexts(lang) {
                let m = render(&ctx, &t).unwrap();
                assert!(!m.subject.contains('\n'), "{lang}: {}", m.subject);
                assert!(m.text.contains("https://pay.example/link"), "{lang}");
                assert!(m.html.contains("INV-0001"), "{lang}");
                // The transfer paragraph exactly when there is an IBAN to transfer to.
                let creditor = CreditorRef::of_invoice("INV-0001").grouped();
                for part in [&m.text, &m.html] {
                    let iban = ctx.merchant.iban.is_some();
                    assert_eq!(part.contains("NL91 ABNA 0417 1643 00"), iban, "{lang}");
                    assert_eq!(part.contains(&creditor), iban, "{lang}: {part}");
                    if ctx.received_minor.is_some() {
                        assert!(part.contains(&money(40_000, lang)), "{lang}: {part}");
                    }
                }
            }
        }
    }

    fn money(minor: i64, lang: &str) -> String {
        format_amount(minor, "EUR", 2, lang)
    }

    #[test]
    fn ibans_are_grouped_in_fours() {
        assert_eq!(grouped_iban("NL91ABNA0417164300"), "NL91 ABNA 0417 1643 00");
        assert_eq!(
            grouped_iban(" nl91 abna 0417 1643 00 "),
            "NL91 ABNA 0417 1643 00"
        );
        assert_eq!(
            grouped_iban("DE89370400440532013000"),
            "DE89 3704 0044 0532 0130 00"
        );
    }

    #[test]
    fn the_transfer_and_partial_payment_keys_are_in_the_context() {
        let mut t = Templates::builtin();
        t.add(
            "en.subject.txt",
            "{{ creditor_reference }}|{{ creditor_reference_grouped }}|{{ merchant.iban }}|{{ merchant.iban_grouped }}|{{ amount_received or '-' }}|{{ amount_remaining or '-' }}".into(),
            "test".into(),
        )
        .unwrap();
        let mut ctx = sample_contexts("en")
            .into_iter()
            .find(|c| c.reminder.is_none())
            .unwrap();
        ctx.received_minor = None;
        ctx.invoice_reference = crate::domain::InvoiceRef::parse("F20260042").unwrap();
        ctx.merchant.iban = Some("nl91 abna 0417164300".into());
        ctx.amount_minor = 6_000;
        assert_eq!(
            render(&ctx, &t).unwrap().subject,
            "RF69F20260042|RF69 F202 6004 2|nl91 abna 0417164300|NL91 ABNA 0417 1643 00|-|-"
        );
        ctx.received_minor = Some(4_000);
        assert_eq!(
            render(&ctx, &t).unwrap().subject,
            "RF69F20260042|RF69 F202 6004 2|nl91 abna 0417164300|NL91 ABNA 0417 1643 00|€40.00|€60.00"
        );
        // Nothing received is nothing to say.
        ctx.received_minor = Some(0);
        assert!(render(&ctx, &t).unwrap().subject.ends_with("|-|-"));
    }

    #[test]
    fn unknown_language_falls_back_to_english() {
        let t = Templates::builtin();
        assert_eq!(t.effective_language("es", None), "en");
        assert_eq!(t.effective_language("NL", None), "nl");
        assert_eq!(t.effective_language("", None), "en");
        assert_eq!(
            t.effective_language("de", Some(ReminderKind::FinalNotice)),
            "de"
        );
        assert_eq!(
            t.effective_language("es", Some(ReminderKind::Overdue)),
            "en"
        );
    }

    #[test]
    fn non_http_links_are_refused() {
        let t = Templates::builtin();
        let mut ctx = sample_contexts("en").remove(0);
        ctx.link_uri = "javascript:alert(1)".into();
        let e = render(&ctx, &t).unwrap_err();
        assert!(matches!(e, MailError::Url { .. }), "{e}");
        ctx.link_uri = "https://pay.example/a b".into();
        assert!(render(&ctx, &t).is_err());
        ctx.link_uri = "HTTPS://pay.example/ok".into();
        assert!(render(&ctx, &t).is_ok());
    }
}
