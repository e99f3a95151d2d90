//! Where secrets come from: the config value, `*_env`, `*_file`, or a systemd credential;
//! read lazily, never logged.

use std::path::{Path, PathBuf};

use secrecy::SecretString;

/// Where one secret comes from: the config value, `<key>_env`, `<key>_file`, or
/// `$CREDENTIALS_DIRECTORY/<credential>` (systemd `LoadCredential=`), in that order of
/// preference. At most one of the three keys may be set.
#[derive(Debug, Clone)]
pub struct SecretSource {
    /// The config key, for messages (`cm.client_secret`).
    pub key: &'static str,
    /// The systemd credential name (`cm_client_secret`).
    pub credential: &'static str,
    /// The value written in the config file.
    pub value: Option<SecretString>,
    /// The environment variable that may hold it.
    pub env: Option<String>,
    /// The file that may hold it.
    pub file: Option<PathBuf>,
}

/// Why a secret could not be had. Never carries the secret itself.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("`{key}`, `{key}_env` and `{key}_file` are alternatives: set only one")]
    /// More than one source is set for the secret.
    Ambiguous {
        /// The config key.
        key: &'static str,
    },
    #[error("`{key}_env` names the environment variable {var}, which is not set")]
    /// The named environment variable is not set.
    EnvMissing {
        /// The config key.
        key: &'static str,
        /// The variable.
        var: String,
    },
    #[error("`{key}_file`: cannot read {path}: {source}")]
    /// One `.eml` file per mail in `email.file_dir`.
    File {
        /// The config key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        #[source]
        /// What the operating system said.
        source: std::io::Error,
    },
    #[error(
        "no `{key}` is configured (set `{key}`, `{key}_env`, `{key}_file`, or provide the systemd credential `{credential}`)"
    )]
    /// No source holds the secret.
    Missing {
        /// The config key.
        key: &'static str,
        /// The credential name.
        credential: &'static str,
    },
}

impl SecretSource {
    /// Whether any source is configured or available (for optional secrets such as SMTP AUTH).
    pub fn is_configured(&self) -> bool {
        self.value.is_some()
            || self.env.is_some()
            || self.file.is_some()
            || credentials_dir().is_some_and(|d| d.join(self.credential).is_file())
    }

    /// Reads the secret. A trailing newline of a file or credential is dropped.
    pub fn resolve(&self) -> Result<SecretString, SecretError> {
        self.resolve_in(credentials_dir().as_deref())
    }

    /// [`SecretSource::resolve`] with the systemd credentials folder given.
    pub fn resolve_in(&self, credentials: Option<&Path>) -> Result<SecretString, SecretError> {
        let set = [
            self.value.is_some(),
            self.env.is_some(),
            self.file.is_some(),
        ];
        if set.iter().filter(|s| **s).count() > 1 {
            return Err(SecretError::Ambiguous { key: self.key });
        }
        if let Some(v) = &self.value {
            return Ok(v.clone());
        }
        if let Some(var) = &self.env {
            return std::env::var(var).map(SecretString::from).map_err(|_| {
                SecretError::EnvMissing {
                    key: self.key,
                    var: var.clone(),
                }
            });
        }
        if let Some(path) = &self.file {
            return read_secret_file(path).map_err(|source| SecretError::File {
                key: self.key,
                path: path.clone(),
                source,
            });
        }
        if let Some(path) = credentials.map(|d| d.join(self.credential))
            && path.is_file()
        {
            return read_secret_file(&path).map_err(|source| SecretError::File {
                key: self.key,
                path,
                source,
            });
        }
        Err(SecretError::Missing {
            key: self.key,
            credential: self.credential,
        })
    }
}

fn credentials_dir() -> Option<PathBuf> {
    std::env::var_os("CREDENTIALS_DIRECTORY")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

fn read_secret_file(path: &Path) -> std::io::Result<SecretString> {
    let mut s = std::fs::read_to_string(path)?;
    while s.ends_with('\n') || s.ends_with('\r') {
        s.pop();
    }
    Ok(SecretString::from(s))
}
