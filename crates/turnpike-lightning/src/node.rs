//! The node `[lightning]` names ([`Node`]): built once per gateway and shared by every rail
//! that bills through it.

use crate::config::{BackendConfig, LightningSection};

/// The node `[lightning]` names, built once and shared by every rail that bills through it (so
/// that the dev wallet pays the invoices of all of them): the backend, and the dev backend
/// itself when that is the one configured.
#[derive(Clone)]
pub struct Node {
    /// The backend invoices are created with.
    pub backend: std::sync::Arc<dyn crate::LightningBackend>,
    /// The same backend by its type, when it is the dev one (its wallet is served beside the
    /// gateway).
    pub dev: Option<std::sync::Arc<crate::dev::DevBackend>>,
}

impl Node {
    /// Connects the backend `section` names (the dev one logs a loud warning).
    pub fn connect(section: &LightningSection) -> Result<Node, crate::LightningError> {
        Ok(match &section.backend {
            BackendConfig::Dev(d) => {
                let dev = std::sync::Arc::new(crate::dev::DevBackend::new(d)?);
                tracing::warn!(
                    target: "turnpike::serve",
                    "!!! {} !!!",
                    crate::dev::NOT_FOR_PRODUCTION
                );
                Node {
                    backend: dev.clone(),
                    dev: Some(dev),
                }
            }
            other => Node {
                backend: crate::connect(other)?,
                dev: None,
            },
        })
    }
}
