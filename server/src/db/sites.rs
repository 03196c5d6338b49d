//! Sites: a named place with an IANA time zone.

use sqlx::PgPool;

/// A site row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Site {
    /// Id.
    pub id: i32,
    /// Unique name.
    pub name: String,
    /// IANA time zone.
    pub timezone: String,
}

/// Creates a site; `None` when the name is taken.
pub async fn create(db: &PgPool, name: &str, timezone: &str) -> sqlx::Result<Option<Site>> {
    sqlx::query_as(
        r#"insert into sites (name, timezone)
        values ($1, $2)
        on conflict (name) do nothing
        returning id, name, timezone"#,
    )
    .bind(name)
    .bind(timezone)
    .fetch_optional(db)
    .await
}

/// A site by name.
pub async fn by_name(db: &PgPool, name: &str) -> sqlx::Result<Option<Site>> {
    sqlx::query_as(
        r#"select id, name, timezone
        from sites
        where name = $1"#,
    )
    .bind(name)
    .fetch_optional(db)
    .await
}

/// A site by id.
pub async fn by_id(db: &PgPool, id: i32) -> sqlx::Result<Option<Site>> {
    sqlx::query_as(
        r#"select id, name, timezone
        from sites
        where id = $1"#,
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

/// All sites by name.
pub async fn list(db: &PgPool) -> sqlx::Result<Vec<Site>> {
    sqlx::query_as(
        r#"select id, name, timezone
        from sites
        order by name"#,
    )
    .fetch_all(db)
    .await
}
