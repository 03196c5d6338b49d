//! Server configuration: command-line flags, each also readable from a `WATTLAS_*` environment variable.

use std::net::{IpAddr, SocketAddr};

use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;

/// Command line of `wattlas-server`.
#[derive(Debug, Parser)]
#[command(
    name = "wattlas-server",
    version,
    about = "Wattlas: GPU energy per job, on TimescaleDB"
)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// PostgreSQL + TimescaleDB connection URL.
    #[arg(long, env = "DATABASE_URL", global = true, value_parser = parse_secret, hide_env_values = true)]
    pub database_url: Option<SecretString>,
    /// Settings of the running server.
    #[command(flatten)]
    pub config: Config,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run migrations, then serve HTTP (the default).
    Serve,
    /// Run the database migrations and exit.
    Migrate {
        /// Change nothing: say which migrations would run (exit 0: none; 1: some would run; 2: the
        /// database cannot be migrated by this release, e.g. a newer release migrated it).
        #[arg(long)]
        check: bool,
    },
    /// Write an energy statement of a set of jobs (format from the file's extension: pdf, md, tex,
    /// json or csv).
    Statement(StatementArgs),
    /// Manage users (make the first admin here; later ones on the admin pages too).
    User {
        /// What to do.
        #[command(subcommand)]
        action: UserAction,
    },
}

/// `wattlas-server statement ...`: the jobs list's filters, or explicit jobs.
#[derive(Debug, Clone, Args)]
pub struct StatementArgs {
    /// Jobs of this user.
    #[arg(long)]
    pub user: Option<String>,
    /// Jobs with this tag, `key:value`.
    #[arg(long)]
    pub tag: Option<String>,
    /// Jobs at this site.
    #[arg(long)]
    pub site: Option<String>,
    /// Jobs running at or after this time (RFC 3339 or YYYY-MM-DD).
    #[arg(long)]
    pub from: Option<String>,
    /// Jobs starting before this time (RFC 3339 or YYYY-MM-DD, that day included).
    #[arg(long)]
    pub to: Option<String>,
    /// Only these jobs (repeatable).
    #[arg(long = "job")]
    pub jobs: Vec<String>,
    /// Output file; its extension picks the format.
    #[arg(short, long)]
    pub output: std::path::PathBuf,
}

/// `wattlas-server user ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum UserAction {
    /// Create a user. The password is read from standard input (its first line) unless --no-password.
    Add {
        /// The scheduler's user name (a researcher sees the jobs of this user).
        name: String,
        /// researcher, staff or admin.
        #[arg(long, default_value = "researcher")]
        role: crate::db::users::Role,
        /// No password: the user signs in through the trusted proxy header only.
        #[arg(long)]
        no_password: bool,
    },
    /// Set a user's password, read from standard input (its first line).
    Passwd {
        /// User name.
        name: String,
    },
    /// Create an API token for a user and print it (shown once).
    Token {
        /// User name.
        name: String,
        /// What the token is for.
        #[arg(long, default_value = "cli")]
        label: String,
    },
    /// List users.
    List,
}

/// Settings of the running server, shared by every request through `AppState`.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "WATTLAS_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// A read replica (a hot standby, `scripts/db replica`) for the heavy reads that may lag by seconds:
    /// PUE pages and APIs, per-GPU charts, the fleet exposition. Unset: everything on DATABASE_URL.
    /// Used only while it is at most WATTLAS_REPLICA_MAX_LAG_S behind the primary.
    #[arg(long, env = "WATTLAS_READ_DATABASE_URL", value_parser = parse_secret, hide_env_values = true)]
    pub read_database_url: Option<SecretString>,
    /// How far behind the primary the read replica may be, s, for reads to go there; beyond it they go
    /// to the primary and /readyz says "degraded" (still 200: the server works).
    #[arg(long, env = "WATTLAS_REPLICA_MAX_LAG_S", default_value_t = 10.0, value_parser = parse_max_lag)]
    pub replica_max_lag_s: f64,
    /// Bootstrap admin bearer token: admin may call every API. Unset: no admin access.
    #[arg(long, env = "WATTLAS_ADMIN_TOKEN", value_parser = parse_secret, hide_env_values = true)]
    pub admin_token: Option<SecretString>,
    /// Bearer token that may read `/metrics` (Prometheus' `authorization` credentials); the admin
    /// token may too. Without either, `/metrics` answers 401: it is not public.
    #[arg(long, env = "WATTLAS_METRICS_TOKEN", value_parser = parse_secret, hide_env_values = true)]
    pub metrics_token: Option<SecretString>,
    /// Days raw 100 ms samples are kept; per-minute rollups are kept forever.
    #[arg(long, env = "WATTLAS_RAW_RETENTION_DAYS", default_value_t = 30)]
    pub raw_retention_days: u32,
    /// Longest interval between two samples of a GPU that energy integration bridges, ms.
    #[arg(long, env = "WATTLAS_MAX_GAP_MS", default_value_t = 1000)]
    pub max_gap_ms: i64,
    /// Seconds between two runs of the rollup task.
    #[arg(long, env = "WATTLAS_ROLLUP_INTERVAL_S", default_value_t = 10)]
    pub rollup_interval_s: u64,
    /// Age in seconds raw data must reach before it is rolled up (late samples of a minute settle first).
    #[arg(long, env = "WATTLAS_ROLLUP_SETTLE_S", default_value_t = 90)]
    pub rollup_settle_s: u64,
    /// Seconds after an hour's end before its raw blocks are rewritten into one packed block per GPU.
    #[arg(long, env = "WATTLAS_COMPACT_AFTER_S", default_value_t = 300)]
    pub compact_after_s: u64,
    /// Seconds between two retention runs (drop_chunks of raw samples).
    #[arg(long, env = "WATTLAS_RETENTION_INTERVAL_S", default_value_t = 3600)]
    pub retention_interval_s: u64,
    /// Largest request body accepted, after gzip decoding, in bytes.
    #[arg(long, env = "WATTLAS_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Seconds a client has to send a request's headers, counted from when the connection is idle:
    /// an idle or header-trickling connection (slowloris) is closed after it.
    #[arg(long, env = "WATTLAS_HEADER_TIMEOUT_S", default_value_t = 20)]
    pub header_timeout_s: u64,
    /// Open connections at most; past it the oldest idle one is closed for a new one, and a new one
    /// is closed at once when none is idle.
    #[arg(long, env = "WATTLAS_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Open connections of one client address at most (not counting the trusted proxies'): past it
    /// that client's oldest idle connection is closed for a new one, else the new one. A browser opens
    /// 6, a collector 2, Prometheus' remote write up to 50 shards, a script sending batches at once more:
    /// a quarter of the default total, so one client never holds it.
    #[arg(
        long,
        env = "WATTLAS_MAX_CONNECTIONS_PER_CLIENT",
        default_value_t = 256
    )]
    pub max_connections_per_client: usize,
    /// Tasks that store live GPU batches, each committing every batch waiting as one transaction.
    #[arg(long, env = "WATTLAS_INGEST_WRITERS", default_value_t = 2)]
    pub ingest_writers: usize,
    /// Batches waiting for a writer at most; past it ingest answers 503 and collectors spool.
    #[arg(long, env = "WATTLAS_INGEST_QUEUE", default_value_t = 4096)]
    pub ingest_queue: usize,
    /// Largest number of database connections.
    #[arg(long, env = "WATTLAS_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
    /// Hours a browser session lasts after sign-in.
    #[arg(long, env = "WATTLAS_SESSION_HOURS", default_value_t = 12)]
    pub session_hours: u32,
    /// Seconds a token or session this server confirmed is still honoured while the database is
    /// unreachable (a failover, a restart): pages and read APIs keep answering. 0: never.
    #[arg(long, env = "WATTLAS_IDENTITY_GRACE_S", default_value_t = 600)]
    pub identity_grace_s: u64,
    /// Mark cookies Secure (sent over HTTPS only; browsers also send them to http://localhost).
    #[arg(long, env = "WATTLAS_COOKIE_SECURE", default_value_t = true, action = clap::ArgAction::Set)]
    pub cookie_secure: bool,
    /// Single sign-on: the header in which a trusted reverse proxy names the signed-in user (e.g.
    /// X-Remote-User). Users seen first this way are created as researchers.
    #[arg(long, env = "WATTLAS_TRUSTED_USER_HEADER")]
    pub trusted_user_header: Option<String>,
    /// Addresses of the reverse proxies whose user header and X-Forwarded-For are believed
    /// (comma-separated). None by default: a proxy must be named, and it must strip the user header
    /// from what clients send.
    #[arg(long, env = "WATTLAS_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Webhook receivers allowed at internal addresses (comma-separated host names, addresses or CIDR
    /// blocks): others must resolve to public addresses only.
    #[arg(long, env = "WATTLAS_WEBHOOK_ALLOW", value_delimiter = ',')]
    pub webhook_allow: Vec<Allowed>,
    /// The address people reach this server at (e.g. `https://wattlas.example.org`), printed in
    /// statements' verify links; without it, the scheme-less `Host` a request came to, as http.
    #[arg(long, env = "WATTLAS_PUBLIC_URL")]
    pub public_url: Option<String>,
}

impl Config {
    /// Defaults as on the command line, with the given admin token: for tests and embedding.
    pub fn with_admin_token(token: &str) -> Self {
        let mut config = Cli::parse_from(["wattlas-server"]).config;
        config.admin_token = Some(SecretString::from(token.to_owned()));
        config
    }
}

fn parse_max_lag(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.05..=86_400.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?}: seconds from 0.05 to 86400")),
    }
}

fn parse_secret(s: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(s.to_owned()))
}

/// One entry of the allow-list: a host name, or an address block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    /// A host name, as written in URLs (lower case).
    Host(String),
    /// Addresses `net/prefix` (an address alone is its /32 or /128).
    Block(IpAddr, u8),
}

impl std::str::FromStr for Allowed {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = s.split_once('/').unwrap_or((s, ""));
        match addr.parse::<IpAddr>() {
            Ok(ip) => {
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let prefix = if prefix.is_empty() {
                    max
                } else {
                    prefix
                        .parse::<u8>()
                        .ok()
                        .filter(|p| *p <= max)
                        .ok_or_else(|| format!("'{s}': the prefix must be 0 to {max}"))?
                };
                Ok(Self::Block(ip, prefix))
            }
            Err(_) if prefix.is_empty() && !s.is_empty() => Ok(Self::Host(s.to_ascii_lowercase())),
            Err(_) => Err(format!("'{s}' is neither a host name nor an address block")),
        }
    }
}

impl Allowed {
    /// Whether `ip` is in this block (never for a host name: those match by name).
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Self::Block(IpAddr::V4(net), p), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(*p)).unwrap_or(0);
                u32::from(*net) & mask == u32::from(ip) & mask
            }
            (Self::Block(IpAddr::V6(net), p), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(*p)).unwrap_or(0);
                u128::from(*net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}
