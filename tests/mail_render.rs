//! The rendered mail per language: golden files, escaping, QR, replacement notice,
//! template overrides.
//!
//! Golden files live in `tests/golden/mail/<case>.{subject.txt,txt,html}` and are compared
//! exactly. After a deliberate change of wording or layout, rewrite them with
//! `UPDATE_GOLDEN=1 cargo test --test mail_render` and review the diff.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use invoice_sync::mail::{MailContext, MailError, QrCode, RenderedMail, Templates, render};

fn ctx(language: &str) -> MailContext {
    MailContext {
        invoice_reference: "INV-2026-0042".into(),
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
        c.invoice_reference = r#"A"onmouseover="x'&<b>"#.into();
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
