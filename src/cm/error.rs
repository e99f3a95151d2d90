//! What can go wrong talking to CM, sorted by what the caller must do about it.

/// A failed CM call. The variants are the caller's branches: leave it for the next cycle
/// ([`CmError::Transient`]), mark this invoice revision failed with CM's words
/// ([`CmError::Permanent`]), or stop and fix the setup ([`CmError::Auth`],
/// [`CmError::Invalid`]). No variant ever carries the client secret or a bearer token:
/// every text that comes from a response is scrubbed of both before it is stored here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmError {
    /// CM could not be reached or was overloaded, and the retries ran out (or a
    /// `Retry-After` asked for longer than the policy waits). Try again next cycle — but
    /// when `maybe_applied` is set, CM may have acted on the request (a create that timed
    /// out after it was sent): retrying blindly could create a second link.
    #[error("CM is unavailable for now: {message}{}", if *.maybe_applied { " (the request may have been carried out)" } else { "" })]
    Transient {
        /// What happened, in plain words (status or transport error, attempts made).
        message: String,
        /// Whether CM may have carried out the request even though no answer came back.
        maybe_applied: bool,
    },
    /// No token could be had for a reason other than refused credentials: the token
    /// endpoint answered 404 or 405, redirected, showed a gateway's page, or could not be
    /// reached. Nothing was sent with it, so nothing was decided: the work is deferred.
    #[error("no CM token could be had, so nothing was sent: {0}")]
    NoToken(String),
    /// CM refused the request itself (a 4xx other than 401, 408 and 429): sending it again
    /// unchanged will fail again, so this revision of the invoice is failed.
    #[error("CM refused the request (HTTP {status}): {message}")]
    Permanent {
        /// The HTTP status CM answered.
        status: u16,
        /// CM's own message (its `message` / `error` field, else the body, truncated).
        message: String,
    },
    /// The credentials were refused. Retrying cannot help until the configuration changes.
    #[error("CM refused the credentials of client id `{client_id}`: {message}")]
    Auth {
        /// The configured client id (not a secret), to tell which account is meant.
        client_id: String,
        /// What CM said, or what the client concluded.
        message: String,
    },
    /// CM answered with success but a body this client cannot read; the request was
    /// carried out, so it must not be repeated blindly.
    #[error("CM answered HTTP {status} with a body that cannot be read: {message}")]
    Protocol {
        /// The HTTP status CM answered.
        status: u16,
        /// Why the body could not be read.
        message: String,
    },
    /// The request was refused before sending because it cannot be valid (a zero amount)
    /// or the client cannot be built from the settings.
    #[error("{0}")]
    Invalid(String),
}

impl CmError {
    /// Whether the same request may succeed in a later cycle without any change.
    pub fn is_transient(&self) -> bool {
        matches!(self, CmError::Transient { .. } | CmError::NoToken(_))
    }

    /// Whether CM may have carried out the request although it reported no success: the
    /// caller must not repeat a create without checking, or a customer may get two links.
    pub fn maybe_applied(&self) -> bool {
        match self {
            CmError::Transient { maybe_applied, .. } => *maybe_applied,
            CmError::Protocol { status, .. } => (200..300).contains(status),
            _ => false,
        }
    }

    /// Whether CM said the link does not exist (`404`), for callers that treat an unknown
    /// reference differently from other refusals.
    pub fn is_not_found(&self) -> bool {
        matches!(self, CmError::Permanent { status: 404, .. })
    }

    /// The HTTP status CM answered, when there was an answer that explains the failure.
    pub fn status(&self) -> Option<u16> {
        match self {
            CmError::Permanent { status, .. } | CmError::Protocol { status, .. } => Some(*status),
            _ => None,
        }
    }
}
