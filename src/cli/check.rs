//! `check`: one verdict per part of the setup, in plain words.

use std::io::Write;
use std::path::Path;

use super::*;

/// `check`: each step prints `ok` or `FAILED` with the reason, in plain words.
pub(super) fn check(path: &Path) -> anyhow::Result<Outcome> {
    let mut out = std::io::stdout().lock();
    let mut failed = 0;
    let mut verdict = |what: &str, result: Result<String, String>| -> std::io::Result<()> {
        match result {
            Ok(detail) => writeln!(out, "ok      {what}: {detail}"),
            Err(why) => {
                failed += 1;
                writeln!(out, "FAILED  {what}: {why}")
            }
        }
    };
    let config = match Config::load(path) {
        Ok(c) => {
            verdict("config", Ok(path.display().to_string()))?;
            c
        }
        Err(e) => {
            verdict("config", Err(e.to_string()))?;
            return Ok(Outcome {
                exit: Exit::Fatal,
                message: Some("the config cannot be read; nothing else was checked".into()),
            });
        }
    };
    let db = &config.storage.database;
    let database = if db.exists() {
        Store::open(db)
            .and_then(|s| {
                s.quick_check()?;
                let n = invoices::count_all(&s)?;
                Ok(format!(
                    "{} (schema {}, {n} invoices)",
                    db.display(),
                    s.schema_version()?
                ))
            })
            .map_err(|e| format!("{e:#}"))
    } else {
        match db
            .parent()
            .map(|d| d.exists() || std::fs::create_dir_all(d).is_ok())
        {
            Some(true) | None => Ok(format!(
                "{} (not created yet; the first run creates it)",
                db.display()
            )),
            Some(false) => Err(format!("{}: its folder cannot be created", db.display())),
        }
    };
    verdict("database", database)?;
    let inbox = &config.inbox.dir;
    verdict(
        "inbox",
        if inbox.is_dir() {
            Ok(inbox.display().to_string())
        } else {
            Err(format!("{} does not exist", inbox.display()))
        },
    )?;
    if config.bank.enabled {
        verdict("bank", check_bank(&config))?;
    }
    let rt = runtime()?;
    let (cm, qr) = rt.block_on(async {
        let conn = match CmConnection::open(&config).await {
            Ok(c) => c,
            Err(e) => return (Err(format!("{e:#}")), None),
        };
        // Name the endpoint really asked: the embedded sandbox's, not the default URL.
        let embedded = if config.cm.base_url.trim() == "sandbox" {
            " (the embedded sandbox)"
        } else {
            ""
        };
        let cm = conn
            .client
            .check_credentials()
            .await
            .map(|()| {
                format!(
                    "a token was issued by {}{embedded}",
                    conn.client.token_url()
                )
            })
            .map_err(|e| e.to_string());
        let qr = match &conn.qr {
            Some(q) => Some(
                q.check_credentials()
                    .await
                    .map(|()| format!("a token was issued by {}{embedded}", q.token_url()))
                    .map_err(|e| e.to_string()),
            ),
            None => None,
        };
        conn.close().await;
        (cm, qr)
    });
    verdict("CM token", cm)?;
    if let Some(qr) = qr {
        verdict("iDEAL QR token", qr)?;
    }
    let mail = rt.block_on(async {
        let postman = Postman::from_config(&config.email).map_err(|e| e.to_string())?;
        let mailer = postman.sender.mailer();
        let r = mailer.check_relay().await;
        mailer.shutdown().await;
        // The reason only: "will retry" is the cycle's business, not a check's.
        r.map(|relay| {
            let smtputf8 = match relay.smtputf8 {
                None => "",
                Some(true) => "; offers SMTPUTF8: yes",
                Some(false) => {
                    "; offers SMTPUTF8: no (addresses with non-ASCII local parts cannot be mailed)"
                }
            };
            format!("{} answers{smtputf8}", mailer.endpoint())
        })
        .map_err(|e| format!("{} does not answer: {}", mailer.endpoint(), e.reason()))
    });
    verdict("mail", mail)?;
    verdict(
        "schedule",
        Ok(format!(
            "daemon.schedule `{}` next runs {}",
            config.daemon.schedule,
            config
                .daemon
                .schedule
                .upcoming(chrono::Local::now(), 3)
                .iter()
                .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    )?;
    drop(out);
    Ok(if failed == 0 {
        Outcome::ok()
    } else {
        Outcome {
            exit: Exit::Fatal,
            message: Some(format!("{failed} check(s) failed")),
        }
    })
}

/// `[bank]`: the inbox exists and can be read, the archive and rejected folders can be
/// made, the accounts are set, and the transfer alternative in mails has its IBAN.
fn check_bank(config: &Config) -> Result<String, String> {
    let bank = &config.bank;
    std::fs::read_dir(&bank.inbox).map_err(|e| {
        format!(
            "the bank inbox {} cannot be read: {e}",
            bank.inbox.display()
        )
    })?;
    for (key, dir) in [
        ("bank.archive_dir", &bank.archive_dir),
        ("bank.rejected_dir", &bank.rejected_dir),
    ] {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("{key} {} cannot be created: {e}", dir.display()))?;
    }
    let mut said = format!(
        "inbox {}, account(s) {}",
        bank.inbox.display(),
        bank.accounts.join(", ")
    );
    match config
        .merchant
        .iban
        .as_deref()
        .map(crate::config::normalise_account)
    {
        None => {
            said.push_str("; merchant.iban is not set, so mails do not offer paying by transfer")
        }
        Some(iban) if !bank.knows(&iban) => {
            return Err(format!(
                "merchant.iban {iban} is not one of bank.accounts: transfers customers make to it would never be read"
            ));
        }
        Some(_) => {}
    }
    Ok(said)
}
