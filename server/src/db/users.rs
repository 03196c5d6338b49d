//! Users, their sessions and their API tokens.

use crate::ids::{TokenId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// What a user may see and do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type,
)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Their own jobs; the sites' PUE pages.
    Researcher,
    /// Every job; the facility pages (meters).
    Staff,
    /// Everything, and users, sites, nodes, meters and tokens.
    Admin,
}

impl Role {
    /// The role's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Researcher => "researcher",
            Self::Staff => "staff",
            Self::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "researcher" => Ok(Self::Researcher),
            "staff" => Ok(Self::Staff),
            "admin" => Ok(Self::Admin),
            other => Err(format!(
                "unknown role '{other}': expected researcher, staff or admin"
            )),
        }
    }
}

/// A user row (without the password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct User {
    /// Id.
    pub id: UserId,
    /// The scheduler's user name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Disabled users cannot sign in and their sessions and tokens stop working.
    pub disabled: bool,
    /// Whether a password is set (else: trusted header only).
    pub has_password: bool,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// The columns of `User`, from `users u`.
const USER_FIELDS: &str =
    "u.id, u.name, u.role, u.disabled, u.password_hash is not null as has_password, u.created_at";

/// Creates a user; `None` when the name is taken.
pub(crate) async fn create(
    db: &PgPool,
    name: &str,
    role: Role,
    password_hash: Option<&str>,
) -> sqlx::Result<Option<UserId>> {
    sqlx::query_scalar(
        r#"insert into users (name, role, password_hash)
        values ($1, $2, $3)
        on conflict (name) do nothing
        returning id"#,
    )
    .bind(name)
    .bind(role)
    .bind(password_hash)
    .fetch_optional(db)
    .await
}

/// A user by name, creating it as a researcher without password if missing (trusted-header sign-in).
pub(crate) async fn get_or_create_external(db: &PgPool, name: &str) -> sqlx::Result<User> {
    sqlx::query(
        r#"insert into users (name, role)
        values ($1, 'researcher')
        on conflict (name) do nothing"#,
    )
    .bind(name)
    .execute(db)
    .await?;
    by_name(db, name).await?.ok_or(sqlx::Error::RowNotFound)
}

/// All users by name.
pub(crate) async fn list(db: &PgPool) -> sqlx::Result<Vec<User>> {
    sqlx::query_as(&format!(
        "select {USER_FIELDS}\n        from users u\n        order by u.name"
    ))
    .fetch_all(db)
    .await
}

/// A user by name.
pub async fn by_name(db: &PgPool, name: &str) -> sqlx::Result<Option<User>> {
    sqlx::query_as(&format!(
        "select {USER_FIELDS}\n        from users u\n        where u.name = $1"
    ))
    .bind(name)
    .fetch_optional(db)
    .await
}

/// A user's id and password hash, for sign-in (disabled users are not returned).
pub(crate) async fn password_hash(
    db: &PgPool,
    name: &str,
) -> sqlx::Result<Option<(UserId, Option<String>)>> {
    sqlx::query_as(
        r#"select id, password_hash
        from users
        where name = $1
            and not disabled"#,
    )
    .bind(name)
    .fetch_optional(db)
    .await
}

/// What changing a password ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ended {
    /// Sessions signed out.
    pub sessions: u64,
    /// API tokens revoked.
    pub tokens: u64,
}

/// Sets a user's password hash (`None`: trusted header only) and ends what the old password opened:
/// every session but `keep` (the digest of the session that changed it) and every API token. `None`
/// when there is no such user.
pub(crate) async fn set_password(
    db: &PgPool,
    name: &str,
    hash: Option<&str>,
    keep: Option<&[u8]>,
) -> sqlx::Result<Option<Ended>> {
    let mut tx = db.begin().await?;
    let id: Option<i32> =
        sqlx::query_scalar("update users set password_hash = $2 where name = $1 returning id")
            .bind(name)
            .bind(hash)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(id) = id else {
        return Ok(None);
    };
    let sessions = sqlx::query(
        r#"delete from sessions
        where user_id = $1
            and token_sha256 is distinct from $2"#,
    )
    .bind(id)
    .bind(keep)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let tokens = sqlx::query("delete from api_tokens where user_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(Some(Ended { sessions, tokens }))
}

/// Sets a user's role and whether it is disabled; disabling ends its sessions.
pub async fn update(db: &PgPool, name: &str, role: Role, disabled: bool) -> sqlx::Result<bool> {
    let mut tx = db.begin().await?;
    let id: Option<i32> = sqlx::query_scalar(
        "update users set role = $2, disabled = $3 where name = $1 returning id",
    )
    .bind(name)
    .bind(role)
    .bind(disabled)
    .fetch_optional(&mut *tx)
    .await?;
    if let (Some(id), true) = (id, disabled) {
        sqlx::query("delete from sessions where user_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(id.is_some())
}

/// A live session: its user and its CSRF token.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct SessionRow {
    /// The user.
    #[sqlx(flatten)]
    pub user: User,
    /// Forms must carry this.
    pub csrf_token: String,
    /// When it ends.
    pub expires_at: DateTime<Utc>,
}

/// Stores a session.
pub(crate) async fn create_session(
    db: &PgPool,
    token_digest: &[u8],
    user_id: UserId,
    csrf_token: &str,
    expires_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        r#"insert into sessions (token_sha256, user_id, csrf_token, expires_at)
        values ($1, $2, $3, $4)"#,
    )
    .bind(token_digest)
    .bind(user_id)
    .bind(csrf_token)
    .bind(expires_at)
    .execute(db)
    .await?;
    Ok(())
}

/// The unexpired session of a token digest, of an enabled user.
pub(crate) async fn session(db: &PgPool, token_digest: &[u8]) -> sqlx::Result<Option<SessionRow>> {
    sqlx::query_as(&format!(
        r#"select {USER_FIELDS}, s.csrf_token, s.expires_at
        from sessions s
        join users u on u.id = s.user_id
        where s.token_sha256 = $1
            and s.expires_at > now()
            and not u.disabled"#
    ))
    .bind(token_digest)
    .fetch_optional(db)
    .await
}

/// Ends a session, and any expired ones.
pub(crate) async fn delete_session(db: &PgPool, token_digest: &[u8]) -> sqlx::Result<()> {
    sqlx::query("delete from sessions where token_sha256 = $1 or expires_at < now()")
        .bind(token_digest)
        .execute(db)
        .await?;
    Ok(())
}

/// An API token's listing (the token itself is never stored).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ApiToken {
    /// Id.
    pub id: TokenId,
    /// What the user called it.
    pub label: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last accepted.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// Stores a user's API token digest; returns its id.
pub(crate) async fn create_token(
    db: &PgPool,
    user_id: UserId,
    label: &str,
    token_digest: &[u8],
) -> sqlx::Result<TokenId> {
    sqlx::query_scalar(
        r#"insert into api_tokens (user_id, label, token_sha256)
        values ($1, $2, $3)
        returning id"#,
    )
    .bind(user_id)
    .bind(label)
    .bind(token_digest)
    .fetch_one(db)
    .await
}

/// A user's tokens, newest first.
pub(crate) async fn tokens(db: &PgPool, user_id: UserId) -> sqlx::Result<Vec<ApiToken>> {
    sqlx::query_as(
        r#"select id, label, created_at, last_used_at
        from api_tokens
        where user_id = $1
        order by created_at desc, id desc"#,
    )
    .bind(user_id)
    .fetch_all(db)
    .await
}

/// Revokes one of a user's tokens; `false` when it is not theirs.
pub(crate) async fn revoke_token(
    db: &PgPool,
    user_id: UserId,
    token_id: TokenId,
) -> sqlx::Result<bool> {
    let done = sqlx::query("delete from api_tokens where id = $1 and user_id = $2")
        .bind(token_id)
        .bind(user_id)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The enabled user an API token digest belongs to; marks the token used.
pub(crate) async fn by_token_digest(db: &PgPool, digest: &[u8]) -> sqlx::Result<Option<User>> {
    sqlx::query_as(&format!(
        r#"with used as (
            update api_tokens
            set last_used_at = now()
            where token_sha256 = $1
            returning user_id
        )
        select {USER_FIELDS}
        from used
        join users u on u.id = used.user_id
        where not u.disabled"#
    ))
    .bind(digest)
    .fetch_optional(db)
    .await
}
