//! The rendered mail per language: golden files, escaping, QR, replacement notice,
//! template overrides.
//!
//! Golden files live in `tests/golden/mail/<case>.{subject.txt,txt,html}` and are compared
//! exactly. After a deliberate change of wording or layout, rewrite them with
//! `UPDATE_GOLDEN=1 cargo test --test mail_render` and review the diff.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use invoice_sync::domain::InvoiceRef;
use invoice_sync::domain::ReminderKind;
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
                "cannot read {}: {e}; run UPDATE_GOLDEN=1 cargo test --test mail_render",
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
                m.iban.as_deref().unwrap(),
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
