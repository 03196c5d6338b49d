//! What `wattlas-server migrate --check` says: which of this release's migrations a database has, which
//! would run, and whether the database is newer than this release (a downgrade) or was migrated by
//! files that differ from this release's (edited after release).

use sqlx::migrate::Migrator;
use sqlx::PgPool;

/// One migration: its version (the file's timestamp) and description (the file's name after it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Version, e.g. 20261206000022.
    pub version: i64,
    /// Description, e.g. "scheduler fields".
    pub description: String,
}

/// A database's migrations against this release's.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Applied, that this release knows, in order.
    pub applied: Vec<Step>,
    /// This release's, not yet applied: what a start or `migrate` would run, in order.
    pub pending: Vec<Step>,
    /// Applied but not in this release: the database was migrated by a newer release.
    pub unknown: Vec<Step>,
    /// Applied with a checksum other than this release's file.
    pub changed: Vec<Step>,
    /// Applied but failed part-way (sqlx records `success = false`): needs a person.
    pub failed: Vec<Step>,
}

impl Plan {
    /// Whether a start would migrate cleanly (nothing unknown, changed or failed).
    pub fn runnable(&self) -> bool {
        self.unknown.is_empty() && self.changed.is_empty() && self.failed.is_empty()
    }
}

/// Reads `_sqlx_migrations` (absent in a fresh database: everything pending) against `migrator`.
pub async fn plan(db: &PgPool, migrator: &Migrator) -> sqlx::Result<Plan> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(db)
        .await?;
    let rows: Vec<(i64, String, Vec<u8>, bool)> = if exists {
        sqlx::query_as(
            "SELECT version, description, checksum, success FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(db)
        .await?
    } else {
        Vec::new()
    };
    let mut plan = Plan::default();
    for (version, description, checksum, success) in &rows {
        let step = Step {
            version: *version,
            description: description.clone(),
        };
        match migrator.iter().find(|m| m.version == *version) {
            None => plan.unknown.push(step),
            Some(_) if !success => plan.failed.push(step),
            Some(m) if *m.checksum != checksum[..] => plan.changed.push(step),
            Some(_) => plan.applied.push(step),
        }
    }
    for m in migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
    {
        if !rows.iter().any(|(v, ..)| *v == m.version) {
            plan.pending.push(Step {
                version: m.version,
                description: m.description.to_string(),
            });
        }
    }
    Ok(plan)
}
