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
pub(crate) const HINT_LIMITS: &str =
    "see the [limits], [budgets] and [store] tables in docs/LIMITS.md";
pub(crate) const HINT_PUBLIC_URL: &str = "write the URL callers use to reach the endpoint, e.g. \"https://mcp.example.com/mcp\" (no query or fragment)";
pub(crate) const HINT_IDENTITY_SECRET: &str = "write identity_secret = \"<64 hex digits>\" (e.g. from `openssl rand -hex 32`), or identity_secret_env = \"VAR\" to read it from the environment; share it with the upstream";
pub(crate) use turnpike_oauth::conf::HINT_OAUTH;
pub(crate) const HINT_TELEMETRY: &str =
    "see [telemetry] in the configuration reference (README.md)";
