//! The page header's view of the viewer: name, role, which links, the sign-out form's token.

/// The page header's view of the viewer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Nav {
    /// Signed-in name, if any.
    pub user: Option<String>,
    /// Role name.
    pub role: &'static str,
    /// Show staff links.
    pub staff: bool,
    /// Show admin links.
    pub admin: bool,
    /// For the sign-out form.
    pub csrf: String,
}
