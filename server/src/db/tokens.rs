//! Collector tokens with a grace (nodes and meters, migration 0015): a replaced token keeps working
//! until the collector first uses the new one, or for 24 hours at most. One mechanism for both tables.

use sqlx::PgPool;

/// A table whose rows hold a collector's token digest (`token_sha256`) and the one it replaced
/// (`prev_token_sha256` until `prev_token_until`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Holder {
    /// `nodes`.
    Nodes,
    /// `meters`.
    Meters,
}

impl Holder {
    fn table(self) -> &'static str {
        match self {
            Self::Nodes => "nodes",
            Self::Meters => "meters",
        }
    }
}

/// The condition, on the row aliased `alias`, that digest `$1` is its token or the replaced one still
/// in its grace.
pub fn matches(alias: &str) -> String {
    format!(
        "{alias}.token_sha256 = $1\n            or ({alias}.prev_token_sha256 = $1 and {alias}.prev_token_until > now())"
    )
}

/// Replaces the token digest of the row named `name`, the old one kept in its grace; `false` when
/// there is no such row.
pub(crate) async fn replace(
    db: &PgPool,
    holder: Holder,
    name: &str,
    token_digest: &[u8],
) -> sqlx::Result<bool> {
    let done = sqlx::query(&format!(
        r#"update {}
        set prev_token_sha256 = token_sha256, prev_token_until = now() + interval '24 hours',
            token_sha256 = $2
        where name = $1"#,
        holder.table()
    ))
    .bind(name)
    .bind(token_digest)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The first use of a new token (digest) ends its predecessor's grace; whether one ended (token caches
/// must then forget the old one).
pub(crate) async fn end_grace(db: &PgPool, holder: Holder, digest: &[u8]) -> sqlx::Result<bool> {
    let done = sqlx::query(&format!(
        r#"update {} set prev_token_sha256 = null, prev_token_until = null
        where token_sha256 = $1 and prev_token_sha256 is not null"#,
        holder.table()
    ))
    .bind(digest)
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}
