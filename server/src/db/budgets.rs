//! Projects' monthly budgets (a project is the `project` tag of jobs), their use this month, and the
//! crossings of 80 % and 100 % with their webhook deliveries.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgPool;

/// A budget.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub(crate) struct Budget {
    /// The `project` tag.
    pub project: String,
    /// IT energy per month, kWh.
    pub kwh_per_month: Option<f64>,
    /// CO2e per month, kg.
    pub co2e_kg_per_month: Option<f64>,
    /// Where crossings are posted.
    pub webhook_url: Option<String>,
}

/// A project's budget, if it has one.
pub(crate) async fn by_project(db: &PgPool, project: &str) -> sqlx::Result<Option<Budget>> {
    sqlx::query_as(
        r#"select project, kwh_per_month, co2e_kg_per_month, webhook_url
        from project_budgets
        where project = $1"#,
    )
    .bind(project)
    .fetch_optional(db)
    .await
}

/// Sets (or replaces) a project's budget.
pub(crate) async fn upsert(db: &PgPool, b: &Budget) -> sqlx::Result<()> {
    sqlx::query(
        r#"insert into project_budgets (project, kwh_per_month, co2e_kg_per_month, webhook_url)
        values ($1, $2, $3, $4)
        on conflict (project) do update
        set kwh_per_month = excluded.kwh_per_month, co2e_kg_per_month = excluded.co2e_kg_per_month,
            webhook_url = excluded.webhook_url, updated_at = now()"#,
    )
    .bind(&b.project)
    .bind(b.kwh_per_month)
    .bind(b.co2e_kg_per_month)
    .bind(&b.webhook_url)
    .execute(db)
    .await?;
    Ok(())
}

/// A project's use since a month's start: IT energy (kWh), CO2e (kg; `None` when no job has one), jobs,
/// and jobs whose summary is missing or due.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, sqlx::FromRow)]
pub(crate) struct Use {
    /// kWh.
    pub kwh: f64,
    /// Where it lies: its jobs' bounds added (absent where a job's summary has none).
    pub kwh_low: Option<f64>,
    /// .
    pub kwh_high: Option<f64>,
    /// kg.
    pub co2e_kg: Option<f64>,
    /// Its bound, likewise.
    pub co2e_kg_low: Option<f64>,
    /// .
    pub co2e_kg_high: Option<f64>,
    /// Jobs.
    pub jobs: i64,
    /// Jobs not summed yet.
    pub pending: i64,
}

/// Every budget (or those of `only`) with its use over jobs started in `[since, until)`, by project.
pub(crate) async fn with_use(
    db: &PgPool,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    only: Option<&[String]>,
) -> sqlx::Result<Vec<(Budget, Use)>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        budget: Budget,
        #[sqlx(flatten)]
        usage: Use,
    }
    let rows: Vec<Row> = sqlx::query_as(
        r#"select b.project, b.kwh_per_month, b.co2e_kg_per_month, b.webhook_url,
            coalesce(u.kwh, 0)::float8 as kwh, u.co2e_kg, coalesce(u.jobs, 0) as jobs,
            coalesce(u.pending, 0) as pending,
            case when u.bounded then coalesce(u.kwh_low, 0) end::float8 as kwh_low,
            case when u.bounded then coalesce(u.kwh_high, 0) end::float8 as kwh_high,
            case when u.co2e_bounded then u.co2e_kg_low end::float8 as co2e_kg_low,
            case when u.co2e_bounded then u.co2e_kg_high end::float8 as co2e_kg_high
        from project_budgets b
        left join lateral (
            select sum(e.it_energy_kwh)::float8 as kwh,
                sum((e.summary ->> 'co2e_kg')::float8)::float8 as co2e_kg,
                count(*) as jobs,
                count(*) filter (where e.job_id is null or e.stale) as pending,
                sum(e.it_low)::float8 as kwh_low, sum(e.it_high)::float8 as kwh_high,
                coalesce(bool_and(e.job_id is null or e.it_low is not null), true) as bounded,
                sum((e.summary ->> 'co2e_kg_low')::float8)::float8 as co2e_kg_low,
                sum((e.summary ->> 'co2e_kg_high')::float8)::float8 as co2e_kg_high,
                coalesce(bool_and(e.summary ->> 'co2e_kg' is null
                    or e.summary ->> 'co2e_kg_low' is not null), true) as co2e_bounded
            from jobs j
            left join job_energy e on e.job_id = j.id
            where j.start_time >= $1 and j.start_time < $2
                and j.tags @> jsonb_build_object('project', b.project)
        ) u on true
        where $3::text[] is null or b.project = any($3)
        order by b.project"#,
    )
    .bind(since)
    .bind(until)
    .bind(only)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.budget, r.usage)).collect())
}

/// A crossing.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub(crate) struct Alert {
    /// Project.
    pub project: String,
    /// First day of the month (UTC).
    pub month: NaiveDate,
    /// `energy` or `co2e`.
    pub kind: String,
    /// 80 or 100.
    pub threshold_pct: i32,
    /// Use when crossed.
    pub used: f64,
    /// The budget then.
    pub budget: f64,
    /// When it was seen.
    pub crossed_at: DateTime<Utc>,
    /// When the webhook took it.
    pub delivered_at: Option<DateTime<Utc>>,
    /// Delivery attempts.
    pub attempts: i32,
    /// The last failure.
    pub last_error: Option<String>,
}

/// Records a crossing unless it is recorded already; whether it was new.
pub(crate) async fn record(
    db: &PgPool,
    project: &str,
    month: NaiveDate,
    kind: &str,
    threshold_pct: i32,
    used: f64,
    budget: f64,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        r#"insert into budget_alerts (project, month, kind, threshold_pct, used, budget)
        values ($1, $2, $3, $4, $5, $6)
        on conflict do nothing"#,
    )
    .bind(project)
    .bind(month)
    .bind(kind)
    .bind(threshold_pct)
    .bind(used)
    .bind(budget)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Crossings not delivered yet (with fewer than `max_attempts`), with their project's webhook.
pub(crate) async fn undelivered(
    db: &PgPool,
    max_attempts: i32,
) -> sqlx::Result<Vec<(Alert, String)>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        alert: Alert,
        webhook_url: String,
    }
    let rows: Vec<Row> = sqlx::query_as(
        r#"select a.project, a.month, a.kind, a.threshold_pct, a.used, a.budget, a.crossed_at,
            a.delivered_at, a.attempts, a.last_error, b.webhook_url
        from budget_alerts a
        join project_budgets b on b.project = a.project
        where a.delivered_at is null and a.attempts < $1 and b.webhook_url is not null
        order by a.crossed_at, a.project, a.kind, a.threshold_pct"#,
    )
    .bind(max_attempts)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.alert, r.webhook_url)).collect())
}

/// Whether any crossing waits to be posted (as `undelivered` would list).
pub(crate) async fn any_undelivered(db: &PgPool, max_attempts: i32) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        r#"select exists (
            select 1
            from budget_alerts a
            join project_budgets b on b.project = a.project
            where a.delivered_at is null and a.attempts < $1 and b.webhook_url is not null)"#,
    )
    .bind(max_attempts)
    .fetch_one(db)
    .await
}

/// Notes one delivery attempt: delivered, or its error.
pub(crate) async fn attempted(db: &PgPool, a: &Alert, error: Option<&str>) -> sqlx::Result<()> {
    sqlx::query(
        r#"update budget_alerts
        set attempts = attempts + 1, last_error = $5,
            delivered_at = case when $5::text is null then now() end
        where project = $1 and month = $2 and kind = $3 and threshold_pct = $4"#,
    )
    .bind(&a.project)
    .bind(a.month)
    .bind(&a.kind)
    .bind(a.threshold_pct)
    .bind(error)
    .execute(db)
    .await?;
    Ok(())
}

/// A month's crossings, newest first.
pub(crate) async fn alerts(db: &PgPool, month: NaiveDate) -> sqlx::Result<Vec<Alert>> {
    sqlx::query_as(
        r#"select project, month, kind, threshold_pct, used, budget, crossed_at, delivered_at, attempts,
            last_error
        from budget_alerts
        where month = $1
        order by crossed_at desc, project, kind, threshold_pct desc"#,
    )
    .bind(month)
    .fetch_all(db)
    .await
}

/// Projects `user` ran jobs in since `since`.
pub(crate) async fn projects_of(
    db: &PgPool,
    user: &str,
    since: DateTime<Utc>,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        r#"select distinct j.tags ->> 'project'
        from jobs j
        where j.user_name = $1 and j.start_time >= $2 and j.tags ? 'project'"#,
    )
    .bind(user)
    .bind(since)
    .fetch_all(db)
    .await
}
