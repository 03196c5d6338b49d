//! Statements as issued: id, digest, what they covered and showed (`statement::verify`).

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::PgPool;

/// An issued statement.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Issued {
    /// Its id.
    pub id: String,
    /// SHA-256 of its JSON form without the digest.
    pub digest: Vec<u8>,
    /// When it was stored.
    pub issued_at: DateTime<Utc>,
    /// Who asked for it (none: the admin token or the command line).
    pub issued_by: Option<String>,
    /// What it covers, in words.
    pub scope: String,
    /// Its own time.
    pub generated_at: DateTime<Utc>,
    /// The jobs behind it.
    pub job_ids: Vec<String>,
    /// What it showed.
    pub shown: Json<serde_json::Value>,
}

/// Stores an issued statement.
pub(crate) async fn insert(db: &PgPool, s: &Issued) -> sqlx::Result<()> {
    sqlx::query(
        r#"insert into issued_statements
            (id, digest, issued_at, issued_by, scope, generated_at, job_ids, shown)
        values ($1, $2, $3, $4, $5, $6, $7, $8)"#,
    )
    .bind(&s.id)
    .bind(&s.digest)
    .bind(s.issued_at)
    .bind(&s.issued_by)
    .bind(&s.scope)
    .bind(s.generated_at)
    .bind(&s.job_ids)
    .bind(&s.shown)
    .execute(db)
    .await?;
    Ok(())
}

/// The statement issued under `id`, if any.
pub(crate) async fn by_id(db: &PgPool, id: &str) -> sqlx::Result<Option<Issued>> {
    sqlx::query_as(
        r#"select id, digest, issued_at, issued_by, scope, generated_at, job_ids, shown
        from issued_statements
        where id = $1"#,
    )
    .bind(id)
    .fetch_optional(db)
    .await
}
