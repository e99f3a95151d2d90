//! The CM client of one configured account, and the embedded sandbox behind it when
//! `cm.base_url = "sandbox"` (demos): one place that turns `[cm]` into a client.

use std::path::PathBuf;

use anyhow::Context;

use super::CmClient;
use crate::config::Config;

/// A CM client for the configured account; with `cm.base_url = "sandbox"`, a simulator
/// started in this process (its state kept beside the database), for demos.
pub struct CmConnection {
    /// The client; cheap to clone, shares one token and one throttle.
    pub client: CmClient,
    /// The iDEAL QR client when `ideal_qr.enabled`, on the same throttle.
    pub qr: Option<super::idealqr::IdealQrClient>,
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
            Some(super::idealqr::IdealQrClient::new(
                &qr_settings,
                &settings,
                qr_secret,
                client.throttle(),
                super::RetryPolicy::default(),
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
