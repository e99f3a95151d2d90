//! Secrets never leak, in any spelling (raw, URL-encoded, JSON-escaped, as typed in the
//! config): not in config errors, `check`, logs at any level, or stderr.

use crate::common;

use common::{SandboxHost, TestEnv, default_csv};
use invoice_sync::sandbox::{Faults, Misroute, SandboxOptions};

/// No spelling of `secret` in `text`, whole or cut short (a truncated quote of a body
/// leaks the start of a secret just as well).
fn assert_no_spelling(text: &str, secret: &str) {
    for spelling in invoice_sync::redact::spellings(secret) {
        assert!(!text.contains(&spelling), "{spelling:?} leaked in:\n{text}");
        let start: String = spelling.chars().take(6).collect();
        assert!(
            !text.contains(&start),
            "{start:?} (a cut-off {spelling:?}) leaked in:\n{text}"
        );
    }
}

/// The harm seen: a TOML error on the `client_secret` line printed the secret in the
/// error snippet, on stderr and in `check`.
#[test]
fn a_config_error_on_a_secret_line_never_shows_the_secret() {
    let cases = [
        (
            "client_secret = \"Sup3r\\qS3cret-Value\"",
            "Sup3r\\qS3cret-Value",
        ),
        ("client_secret = \"Sup3rS3cret-Value", "Sup3rS3cret-Value"),
        ("client_secret = 987654321987", "987654321987"),
    ];
    for (line, secret) in cases {
        let env = TestEnv::new("");
        std::fs::write(
            &env.config,
            format!("[cm]\nclient_id = \"merchant-1\"\n{line}\n"),
        )
        .unwrap();
        for args in [&["run"][..], &["check"], &["-v", "status"]] {
            let r = env.run(args);
            assert_ne!(r.code, 0, "{args:?}: {line}");
            let all = format!("{}{}", r.stdout, r.stderr);
            assert!(
                all.contains("client_secret") || all.contains("line 3"),
                "{all}"
            );
            assert_no_spelling(&all, secret);
            let inner = secret.trim_matches('"');
            assert!(!all.contains(inner), "{inner} leaked:\n{all}");
        }
    }
}

/// The harm seen: a token endpoint that echoes its form leaked the URL-encoded secret
/// into the logs.
#[test]
fn a_token_endpoint_that_echoes_the_form_never_gets_it_logged() {
    let host = SandboxHost::start(SandboxOptions::default());
    let secret = "pa ss/w+rd&x=ü\"q";
    let toml_secret = secret.replace('"', "\\\"");
    let env = TestEnv::new(&common::merge_toml(
        // A short client id puts the secret early in the echoed form.
        &host
            .cm_toml()
            .replace("test-secret", "PLACEHOLDER")
            .replace("test-client", "m"),
        "",
    ));
    let config = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("PLACEHOLDER", &toml_secret);
    std::fs::write(&env.config, config).unwrap();
    env.drop_file(
        "a.csv",
        default_csv(&[("INV-1", "a@example.com", "A", "10", "2099-12-01")]),
    );
    host.sb().set_faults(Faults {
        token: Some(Misroute::EchoRequest),
        ..Faults::default()
    });
    for args in [
        &["-vv", "run"][..],
        &["--log-format", "json", "-v", "run"],
        &["check"],
    ] {
        let r = env.run(args);
        assert_ne!(r.code, 0, "{args:?}");
        let all = format!("{}{}", r.stdout, r.stderr);
        assert!(all.contains("token"), "{all}");
        assert_no_spelling(&all, secret);
    }
    assert_eq!(
        env.invoice("INV-1")["state"],
        "open",
        "and nothing was failed"
    );
}
