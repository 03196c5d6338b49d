//! People: accounts, roles, passwords, sessions ended, and their API tokens. Sign-in's rate limits and
//! cookies are the web edge's (`auth`, `routes::account`); what is stored goes through here.

use super::error::{Error, Result};
use super::{caller, password};
use crate::db;
use crate::ids::{TokenId, UserId};
use crate::service::Context;

pub use crate::db::users::{ApiToken, Ended, Role, User};

/// A role from its name (`researcher`, `staff`, `admin`).
pub(crate) fn role(text: &str) -> Result<Role> {
    text.parse::<Role>()
        .map_err(|e| Error::invalid("role", e.to_string()))
}

/// Every user, by name.
pub(crate) async fn list(cx: &Context) -> Result<Vec<User>> {
    Ok(db::users::list(&cx.db).await?)
}

/// A user by name.
pub(crate) async fn by_name(cx: &Context, name: &str) -> Result<Option<User>> {
    Ok(db::users::by_name(&cx.db, name).await?)
}

/// A user's id and stored password hash (none: signs in through the trusted header only).
pub(crate) async fn password_hash(
    cx: &Context,
    name: &str,
) -> Result<Option<(UserId, Option<String>)>> {
    Ok(db::users::password_hash(&cx.db, name).await?)
}

/// Creates a user of `role` (its name), with a password or none (the trusted header only); returns it.
pub(crate) async fn create(
    cx: &Context,
    name: &str,
    role_name: &str,
    new_password: Option<String>,
) -> Result<User> {
    super::check_user_name(name)?;
    let role = role(role_name)?;
    let hash = match new_password.filter(|p| !p.is_empty()) {
        None => None,
        Some(p) => {
            password::check_new(&p, name)?;
            Some(password::hash(p).await?)
        }
    };
    db::users::create(&cx.db, name, role, hash.as_deref())
        .await?
        .ok_or_else(|| Error::Conflict(format!("name: user '{name}' exists")))?;
    db::users::by_name(&cx.db, name)
        .await?
        .ok_or_else(|| Error::internal("user vanished"))
}

/// What an admin's change of a user did.
pub(crate) struct Updated {
    /// The role now.
    pub role: Role,
    /// Disabled now.
    pub disabled: bool,
    /// Sessions and tokens a new password ended, if one was set.
    pub password: Option<Ended>,
}

/// An admin (`acting`) sets a user's role and whether disabled, and a new password if not empty (which
/// signs the user out everywhere and revokes their tokens). An admin cannot demote or disable
/// themselves.
pub(crate) async fn update(
    cx: &Context,
    acting: &str,
    name: &str,
    role_name: &str,
    disabled: bool,
    new_password: String,
) -> Result<Updated> {
    let role = role(role_name)?;
    if name == acting && (role != Role::Admin || disabled) {
        return Err(Error::invalid(
            "role",
            "you cannot take away your own admin role or disable yourself",
        ));
    }
    if !db::users::update(&cx.db, name, role, disabled).await? {
        return Err(Error::NotFound(format!("no user '{name}'")));
    }
    let password = if new_password.is_empty() {
        None
    } else {
        Some(set_password(cx, name, new_password, None).await?)
    };
    Ok(Updated {
        role,
        disabled,
        password,
    })
}

/// Checks and sets a user's new password; ends every session but the one whose token is `keep` and
/// revokes the user's API tokens.
pub(crate) async fn set_password(
    cx: &Context,
    name: &str,
    new_password: String,
    keep: Option<&str>,
) -> Result<Ended> {
    password::check_new(&new_password, name)?;
    let hash = password::hash(new_password).await?;
    let keep = keep.map(caller::token_digest);
    Ok(
        db::users::set_password(&cx.db, name, Some(&hash), keep.as_deref())
            .await?
            .unwrap_or_default(),
    )
}

/// Ends the session whose cookie holds `token`.
pub(crate) async fn end_session(cx: &Context, token: &str) -> Result<()> {
    Ok(db::users::delete_session(&cx.db, &caller::token_digest(token)).await?)
}

/// A user's API tokens (not their secrets).
pub(crate) async fn tokens(cx: &Context, user_id: UserId) -> Result<Vec<ApiToken>> {
    Ok(db::users::tokens(&cx.db, user_id).await?)
}

/// A new API token of a user, labelled (1 to 100 characters): the secret is returned once, never stored.
pub(crate) async fn create_token(cx: &Context, user_id: UserId, label: &str) -> Result<String> {
    let label = label.trim();
    if label.is_empty() || label.len() > 100 {
        return Err(Error::invalid("label", "1 to 100 characters"));
    }
    let token = caller::new_token("wat");
    db::users::create_token(&cx.db, user_id, label, &caller::token_digest(&token)).await?;
    Ok(token)
}

/// Revokes one of a user's API tokens.
pub(crate) async fn revoke_token(cx: &Context, user_id: UserId, token_id: TokenId) -> Result<()> {
    if db::users::revoke_token(&cx.db, user_id, token_id).await? {
        Ok(())
    } else {
        Err(Error::NotFound("no such token of yours".into()))
    }
}
