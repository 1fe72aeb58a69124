//! The hints shown under problems, shared by the readers of several sections.

pub(crate) const HINT_ONE_UPSTREAM: &str =
    "give exactly one of url = \"http://host:port/mcp\" or command = [\"program\", \"arg\", …]";
pub(crate) const HINT_URL: &str =
    "write an absolute http:// or https:// URL, e.g. \"http://127.0.0.1:3001/mcp\"";
pub(crate) const HINT_COMMAND: &str = "write the program and its arguments as an array of strings";
pub(crate) const HINT_PATH: &str = "write the endpoint path starting with \"/\", e.g. \"/mcp\"";
pub(crate) const HINT_HOSTS: &str =
    "list the Host names clients use, e.g. [\"localhost\", \"127.0.0.1\"], or [\"*\"] to accept any";
pub(crate) const HINT_POSITIVE: &str = "use a whole number of at least 1";
/// The longest upstream time limit accepted (a day).
pub(crate) const MAX_UPSTREAM_TIMEOUT_SECS: u64 = 86_400;
pub(crate) const HINT_TIMEOUT: &str = "use a whole number of seconds from 1 to 86400";
pub(crate) const HINT_EFFORT: &str =
    "an effort is a number of expected hashes, at least 1 (e.g. 200000)";
pub(crate) const HINT_PRICE: &str =
    "write `free = true`, or `pow = <effort>` and/or `l402 = { sat = <n> }`, e.g. `pow = 200000`";
pub(crate) const HINT_L402: &str = "write l402 = { msat = <n> } or { sat = <n> }, optionally with mode = \"per_call\" | \"balance\" | \"time_pass\" and bundle = <n> (balance: credit per invoice, in the price's unit; time_pass: seconds)";
pub(crate) const HINT_NO_LIGHTNING: &str = "add a [lightning] section naming the node that creates invoices, e.g. [lightning] backend = \"lnd\", url = \"https://127.0.0.1:8080\", macaroon_path = \"…/invoice.macaroon\" (or backend = \"dev\" to try it out, never in production)";
pub(crate) const HINT_LIGHTNING: &str = "see the [lightning] section in docs/L402.md: backend = \"lnd\" | \"cln\" | \"phoenixd\" | \"lnbits\" | \"nwc\" | \"dev\" and that backend's keys";
pub(crate) const HINT_L402_TABLE: &str = "see the [l402] section in docs/L402.md";
pub(crate) const HINT_OAUTH_PRICE: &str = "write oauth = true (any valid token for this resource) or oauth = { scopes = [\"deploy:write\"] }";
pub(crate) const HINT_NO_OAUTH: &str = "add an [oauth] section naming your authorization server, e.g. [oauth] issuer = \"https://auth.example.com\" (see docs/OAUTH.md)";
pub(crate) const HINT_LIMITS: &str =
    "see the [limits], [budgets] and [store] tables in docs/LIMITS.md";
pub(crate) const HINT_OAUTH: &str = "see the [oauth] section in docs/OAUTH.md";
pub(crate) const HINT_PUBLIC_URL: &str = "write the URL callers use to reach the endpoint, e.g. \"https://mcp.example.com/mcp\" (no query or fragment)";
pub(crate) const HINT_IDENTITY_SECRET: &str = "write identity_secret = \"<64 hex digits>\" (e.g. from `openssl rand -hex 32`), or identity_secret_env = \"VAR\" to read it from the environment; share it with the upstream";
pub(crate) const HINT_TELEMETRY: &str =
    "see [telemetry] in the configuration reference (README.md)";
