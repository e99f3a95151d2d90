//! What a cycle talks to, set up and torn down in one place for `run`, `daemon`,
//! `deactivate` and `check`: the CM clients of the configured account (and the embedded
//! sandbox behind them when `cm.base_url = "sandbox"`, for demos) and the mail sender.
//!
//! It sits above `cm`, `sandbox` and `mail`, so that none of them knows the others.

use std::path::PathBuf;

use anyhow::Context;

use crate::cm::CmClient;
use crate::config::Config;

/// A CM client for the configured account; with `cm.base_url = "sandbox"`, a simulator
/// started in this process (its state kept beside the database), for demos.
pub struct CmConnection {
    /// The client; cheap to clone, shares one token and one throttle.
    pub client: CmClient,
    /// The iDEAL QR client when `ideal_qr.enabled`, on the same throttle.
    pub qr: Option<crate::cm::idealqr::IdealQrClient>,
    sandbox: Option<crate::sandbox::Sandbox>,
}

impl CmConnection {
    /// Connects (lazily: the token is fetched with the first request).
    pub async fn open(config: &Config) -> anyhow::Result<CmConnection> {
        let secret = config.cm.client_secret_source().resolve()?;
        let mut settings = config.cm.clone();
        let mut sandbox = None;
        if settings.base_url.trim() == "sandbox" {
            use secrecy::ExposeSecret;
            let mut state = config.storage.database.clone().into_os_string();
            state.push(".sandbox.json");
            let opts = crate::sandbox::SandboxOptions {
                client_id: settings.client_id.clone(),
                client_secret: secret.expose_secret().to_string(),
                state_file: Some(PathBuf::from(state)),
                ..Default::default()
            };
            let sb = crate::sandbox::start(([127, 0, 0, 1], 0).into(), opts)
                .await
                .context("cannot start the embedded CM sandbox")?;
            tracing::info!(url = %sb.base_url(), "using the embedded CM sandbox (cm.base_url = \"sandbox\")");
            settings.base_url = sb.base_url();
            sandbox = Some(sb);
        }
        let client = CmClient::new(&settings, secret.clone())?;
        let qr = if config.ideal_qr.enabled {
            let mut qr_settings = config.ideal_qr.clone();
            if qr_settings.base_url.trim() == "sandbox" {
                let Some(sb) = &sandbox else {
                    anyhow::bail!(
                        "ideal_qr.base_url = \"sandbox\" needs cm.base_url = \"sandbox\" too (one embedded simulator serves both)"
                    );
                };
                qr_settings.base_url = sb.base_url();
                qr_settings.token_url =
                    format!("{}/api/v1/authorization/oauth2/token", sb.base_url());
            }
            // Its own credentials when it has them, else the [cm] ones.
            let own = qr_settings.client_secret_source();
            let qr_secret = if qr_settings.client_id.is_some() && own.is_configured() {
                own.resolve()?
            } else {
                secret
            };
            // One throttle for every CM request, links and QR alike.
            Some(crate::cm::idealqr::IdealQrClient::new(
                &qr_settings,
                &settings,
                qr_secret,
                client.throttle(),
                crate::cm::RetryPolicy::default(),
            )?)
        } else {
            None
        };
        Ok(CmConnection {
            client,
            qr,
            sandbox,
        })
    }

    /// Stops the embedded sandbox, if any.
    pub async fn close(self) {
        if let Some(sb) = self.sandbox {
            sb.shutdown().await;
        }
    }
}

/// CM and mail together, as a cycle needs them.
pub struct Services {
    /// The CM clients (and the embedded sandbox, if any).
    pub cm: CmConnection,
    /// The mail sender and templates.
    pub postman: crate::mail::Postman,
}

impl Services {
    /// Sets up mail (checking its settings first, so a mistake there costs no CM call)
    /// and the CM clients.
    pub async fn open(config: &Config) -> anyhow::Result<Services> {
        let postman = crate::mail::Postman::from_config(&config.email)?;
        let cm = CmConnection::open(config).await?;
        Ok(Services { cm, postman })
    }

    /// The borrowed view a cycle takes.
    pub fn cycle(&self) -> crate::cycle::Services<'_> {
        crate::cycle::Services {
            cm: &self.cm.client,
            qr: self.cm.qr.as_ref(),
            mail: &self.postman,
        }
    }

    /// Closes the SMTP session politely and stops the embedded sandbox.
    pub async fn close(self) {
        self.cm.close().await;
        self.postman.sender.mailer().shutdown().await;
    }
}
