//! Who is calling, in the domain's words (`Caller`), which jobs they may see (`JobScope`), and the
//! tokens collectors and people hold (random, stored as digests). The web edge (`auth`) finds the
//! caller of a request; services take it.

use crate::ids::{MeterId, NodeId, SiteId};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::db::users::{Role, User};
use crate::service::Error;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The bootstrap admin token: may call every API.
    Admin,
    /// A person, by API token, session or trusted header.
    User(User),
    /// A node's collector: may write its own node's data and jobs.
    Node {
        /// Node id.
        id: NodeId,
        /// Node name.
        name: String,
        /// The node's site id.
        site_id: SiteId,
    },
    /// A facility meter's collector: may write its own meter's readings.
    Meter {
        /// Meter id.
        id: MeterId,
        /// Meter name.
        name: String,
    },
    /// A site's write token (its Prometheus' remote write): may write the GPU series of the site's nodes.
    Site {
        /// Site id.
        id: SiteId,
        /// Site name.
        name: String,
    },
}

/// Which jobs a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobScope {
    /// Every job (staff, admin).
    All,
    /// The jobs of this user name (researchers).
    Own(String),
}

impl JobScope {
    /// The jobs a person of `role` named `name` may see: researchers their own, others all.
    pub(crate) fn for_person(role: Role, name: &str) -> Self {
        match role {
            Role::Researcher => Self::Own(name.to_owned()),
            Role::Staff | Role::Admin => Self::All,
        }
    }

    /// Whether a job of `user_name` is visible.
    pub(crate) fn allows(&self, user_name: &str) -> bool {
        match self {
            Self::All => true,
            Self::Own(own) => own == user_name,
        }
    }

    /// The owner every listed job must have, if restricted.
    pub(crate) fn owner(&self) -> Option<String> {
        match self {
            Self::All => None,
            Self::Own(own) => Some(own.clone()),
        }
    }
}

impl Caller {
    /// The role of a person, or of the bootstrap admin token; collectors have none.
    pub(crate) fn role(&self) -> Option<Role> {
        match self {
            Self::Admin => Some(Role::Admin),
            Self::User(u) => Some(u.role),
            Self::Node { .. } | Self::Meter { .. } | Self::Site { .. } => None,
        }
    }

    /// Only admins (the token or a user) may pass.
    pub(crate) fn require_admin(&self) -> Result<(), Error> {
        match self.role() {
            Some(Role::Admin) => Ok(()),
            _ => Err(Error::Forbidden("this needs an admin".into())),
        }
    }

    /// Staff and admins may pass (facility pages and data: meters, nodes).
    pub(crate) fn require_staff(&self) -> Result<(), Error> {
        match self.role() {
            Some(Role::Staff | Role::Admin) => Ok(()),
            _ => Err(Error::Forbidden("this needs staff or admin".into())),
        }
    }

    /// People may pass (site PUE pages and data); collectors' tokens only write.
    pub(crate) fn require_person(&self) -> Result<(), Error> {
        match self.role() {
            Some(_) => Ok(()),
            None => Err(Error::Forbidden(
                "collector tokens only write data: reading needs a user's token".into(),
            )),
        }
    }

    /// For routes that write measurements and jobs (collectors and admins): an admin user acts as the
    /// admin token; other people are refused.
    pub(crate) fn writer(self) -> Result<Caller, Error> {
        match self {
            Self::User(u) if u.role == Role::Admin => Ok(Self::Admin),
            Self::User(u) => Err(Error::Forbidden(format!(
                "user '{}' ({}) cannot write measurements or jobs: that is for collectors and admins",
                u.name,
                u.role.as_str()
            ))),
            other => Ok(other),
        }
    }

    /// The jobs this caller may read.
    pub(crate) fn job_scope(&self) -> Result<JobScope, Error> {
        match self {
            Self::User(u) => Ok(JobScope::for_person(u.role, &u.name)),
            Self::Admin => Ok(JobScope::All),
            Self::Node { .. } | Self::Meter { .. } | Self::Site { .. } => {
                self.require_person()?;
                Ok(JobScope::All)
            }
        }
    }
}

/// A new random token with a recognisable prefix.
pub fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!(
        "{prefix}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The digest stored for a token.
pub fn token_digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}
