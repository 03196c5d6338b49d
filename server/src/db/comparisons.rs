//! Stored power-cap comparisons (`cap_comparisons`).

use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::types::Json;
use sqlx::PgPool;

/// The stored comparison of `tag` (`key:value`) for `owner` (None: everyone's jobs), when no finished
/// job of the tag has changed since it was stored: `Some(None)` where the jobs were not comparable.
pub async fn fresh<T: DeserializeOwned + Send + Unpin + 'static>(
    db: &PgPool,
    tag: &str,
    owner: Option<&str>,
) -> sqlx::Result<Option<Json<Option<T>>>> {
    let Some((key, value)) = tag.split_once([':', '=']) else {
        return Ok(None);
    };
    sqlx::query_scalar(
        r#"select c.body
        from cap_comparisons c
        where c.tag = $1
            and c.owner = coalesce($2, '')
            and not exists (
                select 1
                from jobs j
                left join job_energy e on e.job_id = j.id
                where j.end_time is not null
                    and j.tags ->> $3 = $4
                    and ($2::text is null or j.user_name = $2)
                    and (e.job_id is null or e.stale or e.computed_at > c.computed_at
                        or j.end_time > c.computed_at))"#,
    )
    .bind(tag)
    .bind(owner)
    .bind(key)
    .bind(value)
    .fetch_optional(db)
    .await
}

/// Stores a comparison computed now.
pub async fn store<T: Serialize + Sync>(
    db: &PgPool,
    tag: &str,
    owner: Option<&str>,
    body: &Option<T>,
) -> sqlx::Result<()> {
    sqlx::query(
        r#"insert into cap_comparisons (tag, owner, computed_at, body)
        values ($1, coalesce($2, ''), now(), $3)
        on conflict (tag, owner) do update
        set computed_at = excluded.computed_at, body = excluded.body"#,
    )
    .bind(tag)
    .bind(owner)
    .bind(Json(body))
    .execute(db)
    .await?;
    Ok(())
}
