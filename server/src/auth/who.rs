//! Who a credential was found to be: what `identify` hands on and `remembered` keeps.

use super::nav::Nav;
use crate::db::users::{Role, User};
use crate::service::caller::Caller;

/// A signed-in person's session.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// The person.
    pub user: User,
    /// The token every form of this session carries.
    pub csrf_token: String,
}

impl Session {
    /// What the page header shows for this session.
    pub(crate) fn nav(&self) -> Nav {
        Nav {
            user: Some(self.user.name.clone()),
            role: self.user.role.as_str(),
            staff: self.user.role >= Role::Staff,
            admin: self.user.role == Role::Admin,
            csrf: self.csrf_token.clone(),
        }
    }
}

/// What a credential was found to be.
#[derive(Debug, Clone)]
pub(crate) enum Who {
    /// A bearer token's caller.
    Bearer(Caller),
    /// A session cookie's session.
    Session(Session),
}
