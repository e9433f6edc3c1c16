//! What registry operations fail with.

use super::*;

/// What a registry operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// No live service has this uuid.
    #[error("service {0:?} not found")]
    NotFound(String),
    /// No live service matches a callback's fields.
    #[error("{0}")]
    NoMatch(String),
    /// A live service has this uuid already.
    #[error("service {uuid:?} is already registered{}", owned_by(owner.as_deref()))]
    Conflict {
        /// The uuid asked for.
        uuid: String,
        /// The `Owner` of the registration holding it.
        owner: Option<String>,
    },
    /// The request names an owner other than the service's: only the agent
    /// that registered a service may renew or remove it.
    #[error("service {uuid:?} belongs to {}, not to {asked:?}: only its owner may renew or remove it", owner.as_deref().map_or_else(|| "no owner".to_string(), |o| format!("{o:?}")))]
    NotOwner {
        /// The service's uuid.
        uuid: String,
        /// The service's `Owner`.
        owner: Option<String>,
        /// The owner the request named.
        asked: String,
    },
    /// A callback would give a service more than
    /// [`MAX_CALLBACKS_PER_SERVICE`]; nothing was changed.
    #[error(
        "service {uuid:?} holds {MAX_CALLBACKS_PER_SERVICE} callbacks already (the limit): callback {callback:?} was not added anywhere"
    )]
    TooManyCallbacks {
        /// The service at the limit.
        uuid: String,
        /// The callback refused.
        callback: String,
    },
    /// A field is invalid; nothing was changed.
    #[error("{message}")]
    Invalid {
        /// The JSON field at fault (`Host`, `Port`, ...).
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The store failed; nothing was changed in memory.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn owned_by(owner: Option<&str>) -> String {
    owner.map(|o| format!(" by {o:?}")).unwrap_or_default()
}
