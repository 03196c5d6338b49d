//! Who is calling, and what they may see.
//!
//! Credentials, in the order they are tried (`identify`, run once per request by `middleware`):
//! 1. `Authorization: Bearer`: the bootstrap admin token from the environment, a user's API token, a
//!    node's token or a meter's token. Tokens are 32 random bytes stored as sha256 digests: there is
//!    nothing to brute-force, so a fast digest is right, and the lookup by digest reveals nothing by timing.
//! 2. The session cookie of a signed-in user (`session`).
//! 3. When configured, a trusted reverse proxy's user header (single sign-on); the user is created as a
//!    researcher on first sight, and gets a session so that forms carry a CSRF token like everyone's.
//!
//! Cookies and the proxy header are ambient credentials: on the JSON API they only read (GET/HEAD);
//! writes need a bearer token. Page forms check the session's CSRF token.
//!
//! This module only names its parts: `identify` (the middleware and the extractors), `session`
//! (cookies, sessions, CSRF), `limit` (sign-in rate limits), `writer_tokens`, `nav` (the page
//! header's view of the viewer). `Caller` and `JobScope` are the domain's (`service::caller`).

pub mod identify;
pub mod limit;
pub(crate) mod nav;
pub(crate) mod operator;
pub mod remembered;
pub mod session;
pub(crate) mod who;
pub(crate) mod writer_tokens;

pub use crate::service::caller::{new_token, token_digest, Caller, JobScope};
pub(crate) use crate::service::password;
pub(crate) use identify::{error_pages_with_nav, middleware, Identity, Viewer};
pub(crate) use nav::Nav;
pub(crate) use operator::operator_token;
pub(crate) use writer_tokens::WriterTokens;
