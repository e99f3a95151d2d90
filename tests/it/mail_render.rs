//! The rendered mail per language: golden files, escaping, QR, replacement notice,
//! template overrides.
//!
//! Golden files live in `tests/golden/mail/<case>.{subject.txt,txt,html}` and are compared
//! exactly. After a deliberate change of wording or layout, rewrite them with
//! `UPDATE_GOLDEN=1 cargo test --test it -- mail_render` and review the diff.
//!
//! The creditor reference a mail quotes is checked by an independent implementation of
//! ISO 11649: python-stdnum (`python3 -m pip install python-stdnum`; CI installs it).

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use invoice_sync::domain::ReminderKind;
use invoice_sync::domain::{CreditorRef, InvoiceRef};
use invoice_sync::mail::{
    MailContext, MailError, QrCode, ReminderContext, RenderedMail, Templates, render,
};

fn ctx(language: &str) -> MailContext {
    MailContext {
        invoice_reference: InvoiceRef::parse("INV-2026-0042").unwrap(),
        customer_name: "Jan de Vries".into(),
        customer_email: "jan@customer.example".into(),
        amount_minor: 123_456,
        currency_code: "EUR".into(),
        currency_exponent: 2,
        due_date: NaiveDate::from_ymd_opt(2026, 11, 21).unwrap(),
        language: language.into(),
        link_uri: "https://pay.example/l/abc123?ref=INV-2026-0042&lang=x".into(),
        qr: None,
        replaces_earlier_link: false,
        received_minor: None,
        sender_name: "Accounts".into(),
        merchant: merchant(),
        reminder: None,
    }
}

fn merchant() -> invoice_sync::config::Merchant {
    invoice_sync::config::Merchant {
        name: Some("Bloemenhandel Het Tulpje B.V.".into()),
        address: Some("Dorpsstraat 1, 1234 AB Ergens".into()),
        kvk: Some("12345678".into()),
        phone: Some("+31 20 123 4567".into()),
        website: Some("https://tulpje.example".into()),
        iban: Some("NL91ABNA0417164300".into()),
    }
}

fn with_qr_png(mut c: MailContext) -> MailContext {
    c.qr = Some(QrCode {
        url: "https://pay.example/qr/abc123.png".into(),
        png: Some(vec![0x89, b'P', b'N', b'G']),
    });
    c
}

fn with_qr_url(mut c: MailContext) -> MailContext {
    c.qr = Some(QrCode {
        url: "https://pay.example/qr/abc123.png".into(),
        png: None,
    });
    c
}

fn replacing(mut c: MailContext) -> MailContext {
    c.replaces_earlier_link = true;
    c
}

/// The revision after a bank transfer of € 40.00 on an invoice of € 100.00: the link asks
/// for the € 60.00 that remains.
fn after_partial_payment(mut c: MailContext) -> MailContext {
    c.amount_minor = 6_000;
    c.received_minor = Some(4_000);
    c
}

fn without_iban(mut c: MailContext) -> MailContext {
    c.merchant.iban = None;
    c
}

/// A reminder of `kind` sent on 5 January 2027 (45 days after the due date); the final
/// notice states the statutory costs for € 1,234.56: 15 % = € 185.18 (rounded half up).
fn reminding(mut c: MailContext, kind: ReminderKind) -> MailContext {
    c.reminder = Some(ReminderContext {
        kind,
        step: if kind == ReminderKind::BeforeDue {
            -3
        } else {
            45
        },
        sent_on: NaiveDate::from_ymd_opt(2027, 1, 5).unwrap(),
        collection_costs_minor: (kind == ReminderKind::FinalNotice)
            .then(|| collection_costs(c.amount_minor)),
    });
    c
}

fn collection_costs(minor: i64) -> i64 {
    invoice_sync::domain::collection::statutory_collection_costs(minor)
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/mail")
}

/// Compares `mail` with the golden files of `case`, or rewrites them with UPDATE_GOLDEN=1.
fn check_golden(case: &str, mail: &RenderedMail) {
    let dir = golden_dir();
    let parts = [
        ("subject.txt", format!("{}\n", mail.subject)),
        ("txt", mail.text.clone()),
        ("html", mail.html.clone()),
    ];
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    for (ext, actual) in parts {
        let path = dir.join(format!("{case}.{ext}"));
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read {}: {e}; run UPDATE_GOLDEN=1 cargo test --test it -- mail_render",
                path.display()
            )
        });
        if expected != actual {
            let line = expected
                .lines()
                .zip(actual.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
            panic!(
                "{} differs from the rendered mail at line {}:\n  golden:   {:?}\n  rendered: {:?}\n(UPDATE_GOLDEN=1 rewrites the golden files)",
                path.display(),
                line + 1,
                expected.lines().nth(line),
                actual.lines().nth(line),
            );
        }
    }
}

#[test]
fn golden_mails_per_language() {
    let t = Templates::builtin();
    let cases: Vec<(&str, MailContext)> = vec![
        ("nl", ctx("nl")),
        ("en", ctx("en")),
        ("de", ctx("de")),
        ("fr", ctx("fr")),
        ("nl-replaces-qr-inline", replacing(with_qr_png(ctx("nl")))),
        ("en-replaces-qr-inline", replacing(with_qr_png(ctx("en")))),
        ("de-replaces-qr-inline", replacing(with_qr_png(ctx("de")))),
        ("fr-replaces-qr-inline", replacing(with_qr_png(ctx("fr")))),
        ("es-falls-back-to-en", ctx("es")),
        ("nl-no-iban", without_iban(ctx("nl"))),
        (
            "nl-partial-payment",
            replacing(after_partial_payment(ctx("nl"))),
        ),
        (
            "en-partial-payment",
            replacing(after_partial_payment(ctx("en"))),
        ),
        (
            "de-partial-payment",
            replacing(after_partial_payment(ctx("de"))),
        ),
        (
            "fr-partial-payment",
            replacing(after_partial_payment(ctx("fr"))),
        ),
        ("en-jpy-no-name-qr-url", {
            let mut c = with_qr_url(ctx("en"));
            c.customer_name = String::new();
            c.currency_code = "JPY".into();
            c.currency_exponent = 0;
            c.amount_minor = 1_234_567;
            c
        }),
    ];
    for (case, c) in cases {
        check_golden(case, &render(&c, &t).unwrap());
    }
}

/// Each reminder kind in each built-in language: the amount still due, the original due
/// date, the link and QR code, the merchant identity; the final notice its term and costs.
#[test]
fn golden_reminders_per_language_and_kind() {
    let t = Templates::builtin();
    for lang in ["nl", "en", "de", "fr"] {
        for kind in ReminderKind::ALL {
            let c = reminding(with_qr_png(ctx(lang)), kind);
            let mail = render(&c, &t).unwrap();
            check_golden(&format!("{lang}-{}", kind.as_str()), &mail);
            for part in [&mail.text, &mail.html] {
                assert!(
                    part.contains("https://pay.example/l/abc123"),
                    "{lang} {kind:?}"
                );
                assert!(
                    part.contains("Bloemenhandel Het Tulpje B.V."),
                    "{lang} {kind:?}"
                );
                assert!(
                    part.contains("Dorpsstraat 1, 1234 AB Ergens"),
                    "{lang} {kind:?}"
                );
            }
            assert!(mail.html.contains("cid:qr"), "{lang} {kind:?}");
        }
    }
    let nl = render(&reminding(ctx("nl"), ReminderKind::FinalNotice), &t).unwrap();
    assert!(nl.text.contains("€ 1.234,56"), "{}", nl.text);
    assert!(nl.text.contains("21 november 2026"), "{}", nl.text);
    assert!(nl.text.contains("€ 185,18"), "{}", nl.text);
    assert!(nl.text.contains("€ 1.419,74"), "{}", nl.text);
    assert!(nl.text.contains("19 januari 2027"), "{}", nl.text);
    // A language without reminder templates writes them in English.
    let es = render(&reminding(ctx("es"), ReminderKind::Overdue), &t).unwrap();
    assert!(es.subject.starts_with("Payment reminder"), "{}", es.subject);
}

/// Reminder templates are overridable like the link mail's, one file at a time; a kind
/// given in part is refused at load, naming what is missing.
#[test]
fn reminder_templates_override_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "nl.overdue.subject.txt",
        "Herinnering {{ invoice_reference }}: {{ amount }} ({{ days_overdue }} dagen te laat)\n",
    );
    let t = Templates::load(Some(dir.path())).unwrap();
    let m = render(&reminding(ctx("nl"), ReminderKind::Overdue), &t).unwrap();
    assert_eq!(
        m.subject,
        "Herinnering INV-2026-0042: € 1.234,56 (45 dagen te laat)"
    );
    let builtin = render(
        &reminding(ctx("nl"), ReminderKind::Overdue),
        &Templates::builtin(),
    )
    .unwrap();
    assert_eq!(m.text, builtin.text);

    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "es.subject.txt",
        "Factura {{ invoice_reference }}\n",
    );
    write(dir.path(), "es.txt", "{{ link_uri }}\n");
    write(dir.path(), "es.html", "<p>{{ link_uri }}</p>\n");
    write(
        dir.path(),
        "es.final_notice.txt",
        "{{ collection_costs }}\n",
    );
    let e = Templates::load(Some(dir.path())).unwrap_err().to_string();
    assert!(e.contains("es.final_notice.subject.txt"), "{e}");
    assert!(e.contains("es.final_notice.html"), "{e}");
}

/// The built-in reminders extend the link mail's template and replace its `message`
/// block: an override of `nl.txt` that drops the block is refused at load (its reminders
/// would read like the first mail), one that keeps it gives its layout to the reminders.
#[test]
fn a_link_template_override_keeps_the_block_the_reminders_replace() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "nl.txt",
        "Beste {{ customer_name }},\n{{ link_uri }}\n",
    );
    let e = Templates::load(Some(dir.path())).unwrap_err().to_string();
    assert!(e.contains("nl.txt"), "{e}");
    assert!(e.contains("block message"), "{e}");

    write(
        dir.path(),
        "nl.txt",
        "Hallo {{ customer_name }},\n{% block message %}Betaal {{ amount }}.\n{% endblock %}{{ link_uri }}\n",
    );
    let t = Templates::load(Some(dir.path())).unwrap();
    let m = render(&reminding(ctx("nl"), ReminderKind::Overdue), &t).unwrap();
    assert!(
        m.text
            .starts_with("Hallo Jan de Vries,\nVolgens onze administratie"),
        "{}",
        m.text
    );
    assert!(
        m.text
            .ends_with("https://pay.example/l/abc123?ref=INV-2026-0042&lang=x\n"),
        "{}",
        m.text
    );
}

/// One Message-ID per reminder step, the same on every retry, other than the link mail's.
#[test]
fn each_reminder_step_has_its_own_deterministic_message_id() {
    let cfg = invoice_sync::config::Email {
        from: Some(
            invoice_sync::config::Mailbox::parse("Billing <billing@merchant.example>").unwrap(),
        ),
        ..Default::default()
    };
    let t = Templates::builtin();
    let id = |c: &MailContext| invoice_sync::mail::compose(c, 1, None, &t, &cfg).unwrap().1;
    let link = id(&ctx("en"));
    let step7 = id(&reminding(ctx("en"), ReminderKind::Overdue));
    let mut later = reminding(ctx("en"), ReminderKind::Overdue);
    later.reminder.as_mut().unwrap().sent_on = NaiveDate::from_ymd_opt(2027, 2, 1).unwrap();
    assert_eq!(step7, id(&later), "a retry days later keeps its id");
    let before = id(&reminding(ctx("en"), ReminderKind::BeforeDue));
    assert_ne!(link, step7);
    assert_ne!(before, step7);
    assert!(step7.ends_with("@merchant.example>"), "{step7}");
}

#[test]
fn amounts_and_dates_are_written_for_the_language() {
    let t = Templates::builtin();
    for (lang, amount, usd, date) in [
        ("nl", "€ 1.234,56", "USD 1.234,56", "21 november 2026"),
        ("en", "€1,234.56", "USD 1,234.56", "21 November 2026"),
        ("de", "1.234,56 €", "1.234,56 USD", "21.11.2026"),
        ("fr", "1 234,56 €", "1 234,56 USD", "21/11/2026"),
    ] {
        let m = render(&ctx(lang), &t).unwrap();
        for part in [&m.text, &m.html] {
            assert!(part.contains(amount), "{lang}: {part}");
            assert!(part.contains(date), "{lang}: {part}");
        }
        let mut c = ctx(lang);
        c.currency_code = "USD".into();
        let m = render(&c, &t).unwrap();
        assert!(m.text.contains(usd), "{lang}: {}", m.text);
    }
}

#[test]
fn every_language_says_plainly_that_the_earlier_link_no_longer_works() {
    let t = Templates::builtin();
    for (lang, phrase) in [
        ("nl", "werkt niet meer"),
        ("en", "no longer works"),
        ("de", "funktioniert nicht mehr"),
        ("fr", "ne fonctionne plus"),
    ] {
        let plain = render(&ctx(lang), &t).unwrap();
        assert!(!plain.text.contains(phrase), "{lang}");
        let m = render(&replacing(ctx(lang)), &t).unwrap();
        assert!(m.text.contains(phrase), "{lang}: {}", m.text);
        assert!(m.html.contains(phrase), "{lang}: {}", m.html);
        assert_ne!(
            m.subject, plain.subject,
            "{lang}: the subject says it is new"
        );
    }
}

#[test]
fn every_language_shows_the_qr_code() {
    let t = Templates::builtin();
    for lang in ["nl", "en", "de", "fr"] {
        let none = render(&ctx(lang), &t).unwrap();
        assert!(!none.html.contains("<img"), "{lang}");
        assert!(!none.text.contains("qr/abc123.png"), "{lang}");

        let inline = render(&with_qr_png(ctx(lang)), &t).unwrap();
        assert!(inline.html.contains(r#"<img src="cid:qr""#), "{lang}");

        let url = render(&with_qr_url(ctx(lang)), &t).unwrap();
        assert!(
            url.html
                .contains(r#"<img src="https://pay.example/qr/abc123.png""#),
            "{lang}: {}",
            url.html
        );
        assert!(
            url.text.contains("https://pay.example/qr/abc123.png"),
            "{lang}"
        );
    }
}

/// A customer must see who asks for the money: every mail, in every language, text and
/// HTML, shows the `[merchant]` identity; the QR block says to scan it and names iDEAL.
#[test]
fn every_mail_shows_the_merchant_and_the_qr_block_says_scan_ideal() {
    let t = Templates::builtin();
    let m = merchant();
    for lang in ["nl", "en", "de", "fr"] {
        let mail = render(&with_qr_url(ctx(lang)), &t).unwrap();
        for part in [&mail.text, &mail.html] {
            for value in [
                m.name.as_deref().unwrap(),
                m.address.as_deref().unwrap(),
                m.kvk.as_deref().unwrap(),
                m.phone.as_deref().unwrap(),
                m.website.as_deref().unwrap(),
                // The IBAN as banks print it, in the transfer paragraph.
                "NL91 ABNA 0417 1643 00",
            ] {
                assert!(part.contains(value), "{lang}: no {value:?} in\n{part}");
            }
            assert!(part.contains("iDEAL"), "{lang}: {part}");
            assert!(part.to_lowercase().contains("scan"), "{lang}: {part}");
        }
        // Without a [merchant] section the foot still names the sender.
        let mut bare = ctx(lang);
        bare.merchant = Default::default();
        let mail = render(&bare, &t).unwrap();
        assert!(
            mail.text.contains("-- \nAccounts\n"),
            "{lang}: {}",
            mail.text
        );
        assert!(!mail.text.contains("IBAN"), "{lang}: {}", mail.text);
    }
}

#[test]
fn csv_values_are_escaped_in_html_in_every_language() {
    let t = Templates::builtin();
    for lang in ["nl", "en", "de", "fr", "xx"] {
        let mut c = ctx(lang);
        c.customer_name = "<script>alert(1)</script>".into();
        c.invoice_reference = InvoiceRef::parse(r#"A"onmouseover="x'&<b>"#).unwrap();
        let m = render(&c, &t).unwrap();
        assert!(!m.html.contains("<script>"), "{lang}: {}", m.html);
        assert!(
            m.html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{lang}"
        );
        assert!(!m.html.contains("<b>"), "{lang}");
        assert!(
            m.html
                .contains("A&quot;onmouseover=&quot;x&#39;&amp;&lt;b&gt;"),
            "{lang}: {}",
            m.html
        );
        // The link's `&` is escaped in the HTML too, which is what HTML requires.
        assert!(m.html.contains("ref=INV-2026-0042&amp;lang=x"), "{lang}");
        // Plain text is not HTML: it shows the values as they are.
        assert!(m.text.contains("<script>alert(1)</script>"), "{lang}");
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn files_in_templates_dir_override_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "en.subject.txt",
        "Your invoice {{ invoice_reference }} from Merchant\n",
    );
    write(dir.path(), "README.md", "not a template");
    let t = Templates::load(Some(dir.path())).unwrap();
    let m = render(&ctx("en"), &t).unwrap();
    assert_eq!(m.subject, "Your invoice INV-2026-0042 from Merchant");
    let builtin = render(&ctx("en"), &Templates::builtin()).unwrap();
    assert_eq!(m.html, builtin.html.replace(&builtin.subject, &m.subject));
    assert_eq!(m.text, builtin.text, "only the subject was overridden");
    let nl = render(&ctx("nl"), &t).unwrap();
    assert_eq!(nl, render(&ctx("nl"), &Templates::builtin()).unwrap());
}

#[test]
fn a_new_language_needs_all_three_files() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "es.html", "<p>Hola {{ customer_name }}</p>\n");
    let e = Templates::load(Some(dir.path())).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("es.subject.txt"), "{msg}");
    assert!(msg.contains("es.txt"), "{msg}");

    write(
        dir.path(),
        "es.subject.txt",
        "Enlace de pago para la factura {{ invoice_reference }}\n",
    );
    write(
        dir.path(),
        "es.txt",
        "Hola {{ customer_name }}:\n{{ link_uri }}\n",
    );
    let t = Templates::load(Some(dir.path())).unwrap();
    assert!(t.languages().any(|l| l == "es"));
    let m = render(&ctx("es"), &t).unwrap();
    assert_eq!(m.subject, "Enlace de pago para la factura INV-2026-0042");
    assert_eq!(m.html, "<p>Hola Jan de Vries</p>\n");
}

#[test]
fn a_template_that_does_not_parse_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "nl.html",
        "<p>{% if customer_name %}unclosed</p>\n",
    );
    let e = Templates::load(Some(dir.path())).unwrap_err();
    assert!(matches!(e, MailError::Template { .. }), "{e:?}");
    let path = dir.path().join("nl.html").display().to_string();
    assert!(e.to_string().contains(&path), "{e}");
}

#[test]
fn an_unknown_variable_is_an_error_at_load_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "de.txt", "Hallo {{ kunde }}\n");
    let e = Templates::load(Some(dir.path())).unwrap_err();
    let path = dir.path().join("de.txt").display().to_string();
    assert!(e.to_string().contains(&path), "{e}");
}

#[test]
fn a_subject_template_must_render_one_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "fr.subject.txt",
        "Facture {{ invoice_reference }}\nBcc: someone@example.com\n",
    );
    let e = Templates::load(Some(dir.path())).unwrap_err();
    assert!(e.to_string().contains("one line"), "{e}");
}

#[test]
fn a_missing_templates_dir_is_an_error_and_none_means_builtin() {
    let e = Templates::load(Some(Path::new("/nonexistent/invoice-sync/templates"))).unwrap_err();
    assert!(
        e.to_string()
            .contains("/nonexistent/invoice-sync/templates"),
        "{e}"
    );
    let t = Templates::load(None).unwrap();
    assert_eq!(
        render(&ctx("de"), &t).unwrap(),
        render(&ctx("de"), &Templates::builtin()).unwrap()
    );
}

/// The mail kinds that ask for payment: the link mail, its replacement and each reminder
/// (the final notice included).
fn every_kind(lang: &str) -> Vec<(String, MailContext)> {
    let mut kinds = vec![
        ("link".to_string(), ctx(lang)),
        ("replacement".to_string(), replacing(with_qr_png(ctx(lang)))),
    ];
    for kind in ReminderKind::ALL {
        kinds.push((
            kind.as_str().to_string(),
            reminding(with_qr_png(ctx(lang)), kind),
        ));
    }
    kinds
}

/// The transfer paragraph's wording per language: (how the amount is written, the plain
/// sentence that asks to quote exactly the reference).
const TRANSFER: [(&str, &str, &str); 4] = [
    (
        "nl",
        "€ 1.234,56",
        "Vermeld bij uw overboeking precies dit betalingskenmerk",
    ),
    (
        "en",
        "€1,234.56",
        "Please quote exactly this reference with your transfer",
    ),
    (
        "de",
        "1.234,56 €",
        "Bitte geben Sie bei Ihrer Überweisung genau diese Zahlungsreferenz an",
    ),
    (
        "fr",
        "1 234,56 €",
        "Merci d’indiquer exactement cette référence lors de votre virement",
    ),
];

/// The paragraph of `part` that holds `needle`: text paragraphs are separated by a blank
/// line, HTML ones start with `<p`.
fn paragraph_with<'a>(part: &'a str, needle: &str, html: bool) -> &'a str {
    let mut paragraphs: Box<dyn Iterator<Item = &str>> = if html {
        Box::new(part.split("<p"))
    } else {
        Box::new(part.split("\n\n"))
    };
    paragraphs
        .find(|p| p.contains(needle))
        .unwrap_or_else(|| panic!("no paragraph with {needle:?} in\n{part}"))
}

/// Product contract: every link mail and reminder offers paying by transfer as the
/// alternative, with the merchant's IBAN (grouped as banks print it) and name, the amount
/// due and the invoice's creditor reference (grouped), and asks to quote exactly that
/// reference; without `merchant.iban` there is no such paragraph.
#[test]
fn every_mail_offers_the_transfer_with_the_creditor_reference() {
    let t = Templates::builtin();
    let creditor = CreditorRef::of_invoice("INV-2026-0042");
    let grouped = creditor.grouped();
    assert_eq!(grouped.replace(' ', ""), creditor.as_str());
    for (lang, amount, quote) in TRANSFER {
        for (kind, c) in every_kind(lang) {
            let mail = render(&c, &t).unwrap();
            for (part, html) in [(&mail.text, false), (&mail.html, true)] {
                let p = paragraph_with(part, "NL91 ABNA 0417 1643 00", html);
                for value in [
                    amount,
                    "Bloemenhandel Het Tulpje B.V.",
                    grouped.as_str(),
                    "IBAN",
                ] {
                    assert!(
                        p.contains(value),
                        "{lang} {kind}: no {value:?} in the transfer paragraph\n{p}"
                    );
                }
                assert!(part.contains(quote), "{lang} {kind}: {part}");
                assert_eq!(
                    part.matches(grouped.as_str()).count(),
                    1,
                    "{lang} {kind}: the reference once"
                );
                // The old foot line quoted the invoice reference instead.
                assert!(!part.contains("NL91ABNA0417164300"), "{lang} {kind}");
            }

            let bare = render(&without_iban(c), &t).unwrap();
            for part in [&bare.text, &bare.html] {
                for absent in ["IBAN", "NL91", creditor.as_str(), grouped.as_str(), quote] {
                    assert!(
                        !part.contains(absent),
                        "{lang} {kind}: {absent:?} without merchant.iban\n{part}"
                    );
                }
                assert!(creditor_references_in(part).is_empty(), "{lang} {kind}");
            }
        }
    }
}

/// The IBAN is printed in groups of four, upper case, however it was configured.
#[test]
fn the_iban_is_grouped_as_banks_print_it() {
    let t = Templates::builtin();
    let mut c = ctx("de");
    c.merchant.iban = Some("de89 3704 00440532013000".into());
    let m = render(&c, &t).unwrap();
    for part in [&m.text, &m.html] {
        assert!(part.contains("DE89 3704 0044 0532 0130 00"), "{part}");
    }
}

/// The merchant name in the transfer paragraph is escaped in HTML like every value;
/// plain text shows it as it is.
#[test]
fn the_transfer_paragraph_escapes_the_merchant_name() {
    let t = Templates::builtin();
    for lang in ["nl", "en", "de", "fr"] {
        let mut c = ctx(lang);
        c.merchant.name = Some(r#"Tulpje & "Zn" <B.V.>"#.into());
        let m = render(&c, &t).unwrap();
        let p = paragraph_with(&m.html, "NL91 ABNA 0417 1643 00", true);
        assert!(
            p.contains("Tulpje &amp; &quot;Zn&quot; &lt;B.V.&gt;"),
            "{lang}: {p}"
        );
        assert!(!m.html.contains("<B.V.>"), "{lang}");
        let p = paragraph_with(&m.text, "NL91 ABNA 0417 1643 00", false);
        assert!(p.contains(r#"Tulpje & "Zn" <B.V.>"#), "{lang}: {p}");
    }
}

/// A new revision after a partial payment by transfer says, in every language, in the
/// link mail and its replacement, what was received and what remains (what the link asks
/// for); without a received amount, or with none above zero, it says nothing of it.
#[test]
fn every_language_says_what_a_partial_payment_left() {
    let t = Templates::builtin();
    for (lang, received, remaining, phrase) in [
        ("nl", "€ 40,00", "€ 60,00", "Wij hebben € 40,00 van factuur"),
        ("en", "€40.00", "€60.00", "We received €40.00 of invoice"),
        (
            "de",
            "40,00 €",
            "60,00 €",
            "Wir haben 40,00 € für die Rechnung",
        ),
        ("fr", "40,00 €", "60,00 €", "Nous avons bien reçu 40,00 €"),
    ] {
        for c in [
            after_partial_payment(ctx(lang)),
            replacing(after_partial_payment(ctx(lang))),
        ] {
            let m = render(&c, &t).unwrap();
            for part in [&m.text, &m.html] {
                let p = paragraph_with(part, received, part == &m.html);
                assert!(p.contains(remaining), "{lang}: no {remaining:?} in\n{p}");
                assert!(p.contains("INV-2026-0042"), "{lang}: {p}");
                let plain = p.replace("<strong>", "").replace("</strong>", "");
                assert!(plain.contains(phrase), "{lang}: no {phrase:?} in\n{p}");
            }
            // The transfer paragraph asks for what remains.
            let p = paragraph_with(&m.text, "NL91 ABNA 0417 1643 00", false);
            assert!(p.contains(remaining), "{lang}: {p}");
        }
        for received_minor in [None, Some(0), Some(-100)] {
            let mut c = after_partial_payment(ctx(lang));
            c.received_minor = received_minor;
            let m = render(&c, &t).unwrap();
            for part in [&m.text, &m.html] {
                assert!(!part.contains(received), "{lang} {received_minor:?}");
                assert!(
                    !part
                        .replace("<strong>", "")
                        .replace("</strong>", "")
                        .contains(phrase),
                    "{lang}"
                );
            }
        }
    }
}

/// A custom template can use every new key; `amount_received` and `amount_remaining` are
/// none unless a received amount is given.
#[test]
fn custom_templates_get_the_creditor_reference_and_the_partial_payment() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "en.subject.txt",
        "{{ creditor_reference }}|{{ creditor_reference_grouped }}|{{ merchant.iban_grouped }}|{{ amount_received or '-' }}|{{ amount_remaining or '-' }}\n",
    );
    let t = Templates::load(Some(dir.path())).unwrap();
    let mut c = ctx("en");
    c.invoice_reference = InvoiceRef::parse("F20260042").unwrap();
    assert_eq!(
        render(&c, &t).unwrap().subject,
        "RF69F20260042|RF69 F202 6004 2|NL91 ABNA 0417 1643 00|-|-"
    );
    let m = render(&after_partial_payment(c), &t).unwrap();
    assert_eq!(
        m.subject,
        "RF69F20260042|RF69 F202 6004 2|NL91 ABNA 0417 1643 00|€40.00|€60.00"
    );
}

/// Every creditor reference printed in `part`: `RF`, two digits, then groups of up to
/// four letters and digits separated by one space (each group but the last full).
fn creditor_references_in(part: &str) -> Vec<String> {
    let b = part.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i + 4 <= b.len() {
        let starts = &b[i..i + 2] == b"RF"
            && b[i + 2].is_ascii_digit()
            && b[i + 3].is_ascii_digit()
            && (i == 0 || !b[i - 1].is_ascii_alphanumeric());
        if !starts {
            i += 1;
            continue;
        }
        let mut end = i + 4;
        let mut last = 4;
        while last == 4 && b.get(end) == Some(&b' ') {
            let group = b[end + 1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric())
                .count();
            if !(1..=4).contains(&group) {
                break;
            }
            end += 1 + group;
            last = group;
        }
        found.push(part[i..end].to_string());
        i = end;
    }
    found
}

/// python-stdnum's verdict on each reference, in one python process: whether ISO 11649
/// holds for it (`is_valid`), and its printed form (`format`, groups of four) when it does.
fn stdnum_iso11649(references: &[String]) -> Vec<(bool, String)> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    const SCRIPT: &str = r"
import sys
from stdnum import iso11649
for line in sys.stdin.read().split('\n')[:-1]:
    ok = iso11649.is_valid(line)
    print(('1' if ok else '0') + '\t' + (iso11649.format(line) if ok else ''))
";
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed to check creditor references with python-stdnum");
    let mut input = String::new();
    for r in references {
        assert!(!r.contains('\n'), "{r:?}");
        input.push_str(r);
        input.push('\n');
    }
    // A python that fails at start closes its input early: its exit status and message
    // below say why, not the broken pipe.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python-stdnum could not check the references (python3 -m pip install python-stdnum; CI installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdicts: Vec<(bool, String)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (ok, formatted) = l.split_once('\t').expect("verdict<TAB>format");
            (ok == "1", formatted.to_string())
        })
        .collect();
    assert_eq!(
        verdicts.len(),
        references.len(),
        "one verdict per reference"
    );
    verdicts
}

/// The reference printed in each mail, read back out of the text and HTML parts, is a
/// valid ISO 11649 reference for python-stdnum, printed as it prints it, and the one
/// derived from the invoice.
#[test]
fn the_reference_in_every_mail_is_valid_for_python_stdnum() {
    let t = Templates::builtin();
    let mut printed = Vec::new();
    for reference in [
        "INV-2026-0042",
        "F20260042",
        "2026/0042 Ä-ß",
        "a very long invoice reference, with spaces / slashes & <tags> 123",
        "ABCDEFGHIJKLMNOPQRSTU",
    ] {
        for lang in ["nl", "en", "de", "fr"] {
            for (kind, mut c) in every_kind(lang) {
                c.invoice_reference = InvoiceRef::parse(reference).unwrap();
                let expected = CreditorRef::of_invoice(reference).grouped();
                let mail = render(&c, &t).unwrap();
                for part in [&mail.text, &mail.html] {
                    let found = creditor_references_in(part);
                    assert_eq!(
                        found,
                        std::slice::from_ref(&expected),
                        "{reference} {lang} {kind}"
                    );
                    printed.extend(found);
                }
            }
        }
    }
    let verdicts = stdnum_iso11649(&printed);
    for (reference, (valid, formatted)) in printed.iter().zip(verdicts) {
        assert!(valid, "python-stdnum refuses {reference:?}");
        assert_eq!(&formatted, reference, "python-stdnum prints it otherwise");
    }
}

/// Property: whatever the invoice reference (punctuation, any length, non-ASCII, empty),
/// its creditor reference is valid for python-stdnum, compact and grouped, and grouped as
/// python-stdnum groups it. All cases go to one python process.
#[test]
fn every_derived_creditor_reference_is_valid_for_python_stdnum() {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategies = [
        "[A-Za-z0-9]{1,30}".boxed(),
        "[A-Za-z0-9 ./_#:-]{1,100}".boxed(),
        r"\PC{0,100}".boxed(),
        proptest::prelude::any::<String>().boxed(),
    ];
    let mut references: Vec<String> = [
        "",
        " ",
        "1",
        "0",
        "INV-1",
        "INV1",
        "inv 1",
        "ABCDEFGHIJKLMNOPQRSTU",
        "ABCDEFGHIJKLMNOPQRSTUV",
        "ÄÖÜ-ß",
        "請求書-2026-0042",
        "🧾🧾🧾",
        "2026.0042",
        "f20260042",
    ]
    .map(String::from)
    .to_vec();
    for strategy in &strategies {
        for _ in 0..1000 {
            references.push(strategy.new_tree(&mut runner).unwrap().current());
        }
    }
    let creditors: Vec<CreditorRef> = references
        .iter()
        .map(|r| CreditorRef::of_invoice(r))
        .collect();
    let mut asked = Vec::with_capacity(creditors.len() * 2);
    for c in &creditors {
        assert!(c.as_str().len() <= 25, "{c}");
        asked.push(c.as_str().to_string());
        asked.push(c.grouped());
    }
    let verdicts = stdnum_iso11649(&asked);
    for (i, reference) in references.iter().enumerate() {
        let c = &creditors[i];
        for (valid, formatted) in &verdicts[2 * i..2 * i + 2] {
            assert!(valid, "python-stdnum refuses {c} (of {reference:?})");
            assert_eq!(formatted, &c.grouped(), "{reference:?}");
        }
    }
}
