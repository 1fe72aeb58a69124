//! The `[x402]` table in the gateway's configuration, as the rails that take EIP-3009 payments
//! read it: the table itself ([`section`]) and the one [`Token`] of a build ([`shared_token`]).
//! Its checks and the x402 price key are the x402 rail's (`turnpike_x402::conf`).

use std::sync::Arc;

use turnpike_conf::{Build, BuildError, Sections};

use crate::token::{Token, X402Config, SHARED_KEY};

/// The table: `[x402]`.
pub const TABLE: &str = "x402";

/// The `[x402]` table of `sections`, when the file has one.
pub fn section(sections: &Sections) -> Option<&X402Config> {
    sections.get::<X402Config>(TABLE)
}

/// The one [`Token`] of `[x402]` in this build, made by the first rail that asks
/// ([`turnpike_conf::Services::shared`]): the node of `rpc_url`, the settler (the facilitator,
/// or the key of `settle_key_file`/`settle_key_env`), the bounds on payments checked, and the
/// spend log `data_dir/x402-payments.jsonl`; `None` when the file has no `[x402]`.
pub fn shared_token(build: &Build<'_>) -> Result<Option<Arc<Token>>, BuildError> {
    let Some(cfg) = section(build.sections).cloned() else {
        return Ok(None);
    };
    let data_dir = build.data_dir;
    let any = build.services.shared(SHARED_KEY, &mut || {
        let log = crate::spend::SpendLog::open(&data_dir.join(crate::spend::FILE))
            .map_err(|e| x402_error(format!("spend log: {e}")))?;
        Token::from_config(&cfg)
            .map(|t| Arc::new(t.with_spend_log(log)) as Arc<dyn std::any::Any + Send + Sync>)
            .map_err(x402_error)
    })?;
    any.downcast::<Token>()
        .map(Some)
        .map_err(|_| BuildError("x402 rail: the token was built as something else".into()))
}

fn x402_error(e: impl std::fmt::Display) -> BuildError {
    BuildError(format!("x402 rail: {e}"))
}
