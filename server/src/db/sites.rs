//! Sites: a named place with an IANA time zone.

use crate::ids::SiteId;
use sqlx::PgPool;

/// A site row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Site {
    /// Id.
    pub id: SiteId,
    /// Unique name.
    pub name: String,
    /// IANA time zone.
    pub timezone: String,
}

/// Creates a site; `None` when the name is taken.
pub(crate) async fn create(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
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
    .fetch_optional(&mut **tx)
    .await
}

/// A site by name.
pub(crate) async fn by_name(
    db: impl sqlx::PgExecutor<'_>,
    name: &str,
) -> sqlx::Result<Option<Site>> {
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
pub(crate) async fn by_id(db: &PgPool, id: SiteId) -> sqlx::Result<Option<Site>> {
    sqlx::query_as(
        r#"select id, name, timezone
        from sites
        where id = $1"#,
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

/// A site with its settings: fallback PUE, carbon intensity, price.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct SiteRow {
    /// Id.
    pub id: SiteId,
    /// Name.
    pub name: String,
    /// IANA zone.
    pub timezone: String,
    /// PUE charged to hours without meter data.
    pub fallback_pue: f64,
    /// Static grid carbon intensity, g CO2e/kWh.
    pub carbon_g_per_kwh: Option<f64>,
    /// Electricity price per kWh.
    pub price_per_kwh: Option<f64>,
    /// ISO 4217 currency of the price.
    pub currency: String,
    /// Most nodes the site may hold for its write token to register one more.
    pub node_quota: i32,
}

const SITE_COLUMNS: &str =
    "select id, name, timezone, fallback_pue, carbon_g_per_kwh, price_per_kwh, currency, node_quota\n        from sites";

/// All sites with their settings, by name.
pub(crate) async fn list_with_fallback(db: &PgPool) -> sqlx::Result<Vec<SiteRow>> {
    sqlx::query_as(&format!("{SITE_COLUMNS}\n        order by name"))
        .fetch_all(db)
        .await
}

/// A site's settings by id.
pub(crate) async fn settings(db: &PgPool, id: SiteId) -> sqlx::Result<Option<SiteRow>> {
    sqlx::query_as(&format!("{SITE_COLUMNS}\n        where id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Changes the settings given (others stay); `None` when there is no such site.
pub(crate) async fn update_settings(
    db: impl sqlx::PgExecutor<'_>,
    name: &str,
    fallback_pue: Option<f64>,
    carbon_g_per_kwh: Option<f64>,
    price_per_kwh: Option<f64>,
    currency: Option<&str>,
    node_quota: Option<i32>,
) -> sqlx::Result<Option<SiteRow>> {
    sqlx::query_as(
        r#"update sites
        set fallback_pue = coalesce($2, fallback_pue),
            carbon_g_per_kwh = coalesce($3, carbon_g_per_kwh),
            price_per_kwh = coalesce($4, price_per_kwh),
            currency = coalesce($5, currency),
            node_quota = coalesce($6, node_quota)
        where name = $1
        returning id, name, timezone, fallback_pue, carbon_g_per_kwh, price_per_kwh, currency,
            node_quota"#,
    )
    .bind(name)
    .bind(fallback_pue)
    .bind(carbon_g_per_kwh)
    .bind(price_per_kwh)
    .bind(currency)
    .bind(node_quota)
    .fetch_optional(db)
    .await
}

/// The nodes a site holds and its node quota, its row locked until the transaction ends.
pub(crate) async fn nodes_and_quota_for_update(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    site_id: SiteId,
) -> sqlx::Result<(i64, i32)> {
    let quota: i32 = sqlx::query_scalar("select node_quota from sites where id = $1 for update")
        .bind(site_id)
        .fetch_one(&mut **tx)
        .await?;
    let held: i64 = sqlx::query_scalar("select count(*) from nodes where site_id = $1")
        .bind(site_id)
        .fetch_one(&mut **tx)
        .await?;
    Ok((held, quota))
}

/// The site of a write token: (id, name).
pub(crate) async fn by_write_token_digest(
    db: &PgPool,
    digest: &[u8],
) -> sqlx::Result<Option<(SiteId, String)>> {
    sqlx::query_as("select id, name from sites where write_token_sha256 = $1")
        .bind(digest)
        .fetch_optional(db)
        .await
}

/// Sets (or replaces) a site's write token; false when there is no such site.
pub(crate) async fn set_write_token(db: &PgPool, name: &str, digest: &[u8]) -> sqlx::Result<bool> {
    let done = sqlx::query("update sites set write_token_sha256 = $2 where name = $1")
        .bind(name)
        .bind(digest)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}
