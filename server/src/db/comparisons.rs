//! Stored power-cap comparisons (`cap_comparisons`).

use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::types::Json;
use sqlx::PgPool;

/// The stored comparisons of tags (`key:value`) for everyone, those still fresh (no finished job of the
/// tag changed since it was stored; a body of `None`: the jobs were not comparable), by tag: one query
/// for a statement's hundreds of workloads.
pub(crate) async fn fresh<T: DeserializeOwned + Send + Unpin + 'static>(
    db: &PgPool,
    tags: &[String],
) -> sqlx::Result<std::collections::HashMap<String, Json<Option<T>>>> {
    let (mut names, mut keys, mut values) = (Vec::new(), Vec::new(), Vec::new());
    for tag in tags {
        if let Some((key, value)) = tag.split_once([':', '=']) {
            names.push(tag.as_str());
            keys.push(key);
            values.push(value);
        }
    }
    let rows: Vec<(String, Json<Option<T>>)> = sqlx::query_as(
        r#"select c.tag, c.body
        from unnest($1::text[], $2::text[], $3::text[]) as t(tag, key, value)
        join cap_comparisons c on c.tag = t.tag and c.owner = ''
        where not exists (
            select 1
            from jobs j
            left join job_energy e on e.job_id = j.id
            where j.end_time is not null
                -- Containment, which the tags' GIN index answers (`->>` read every job: ~20 ms at
                -- 100,000 jobs, for each of a statement's 300 tags).
                and j.tags @> jsonb_build_object(t.key, t.value)
                and (e.job_id is null or e.stale or e.computed_at > c.computed_at
                    or j.end_time > c.computed_at))"#,
    )
    .bind(&names)
    .bind(&keys)
    .bind(&values)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Stores a comparison computed now.
pub(crate) async fn store<T: Serialize + Sync>(
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
