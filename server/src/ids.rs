//! The ids of stored things, each its own type: a node's id cannot be passed where a site's is asked
//! for. They are the database's serial keys (`int4`), read and bound as such (`sqlx` transparent), and
//! shown as the number.

use std::fmt;

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default,
            sqlx::Type, serde::Serialize, serde::Deserialize,
        )]
        #[sqlx(transparent)]
        #[serde(transparent)]
        pub struct $name(pub i32);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id!(
    /// A node (`nodes.id`).
    NodeId
);
id!(
    /// A site (`sites.id`).
    SiteId
);
id!(
    /// A facility meter (`facility_meters.id`).
    MeterId
);
id!(
    /// A person's account (`users.id`).
    UserId
);
id!(
    /// A person's API token (`api_tokens.id`; the token itself is never stored).
    TokenId
);
