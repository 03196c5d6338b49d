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
pub async fn create(
    db: &PgPool,
    name: &str,
    timezone: &str,
    fallback_pue: f64,
) -> sqlx::Result<Option<Site>> {
    sqlx::query_as(
        r#"insert into sites (name, timezone, fallback_pue)
        values ($1, $2, $3)
        on conflict (name) do nothing
        returning id, name, timezone"#,
    )
    .bind(name)
    .bind(timezone)
    .bind(fallback_pue)
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

/// A site with its fallback PUE, for the sites page.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SiteRow {
    /// Name.
    pub name: String,
    /// IANA zone.
    pub timezone: String,
    /// PUE charged to hours without meter data.
    pub fallback_pue: f64,
}

/// All sites with their fallback PUE, by name.
pub async fn list_with_fallback(db: &PgPool) -> sqlx::Result<Vec<SiteRow>> {
    sqlx::query_as(
        r#"select name, timezone, fallback_pue
        from sites
        order by name"#,
    )
    .fetch_all(db)
    .await
}
