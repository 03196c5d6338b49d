//! Registering jobs: a scheduler's record (admin), each node's part from its prolog, and the end of a
//! job or of one node's part from its epilog.

use crate::ids::NodeId;
use std::collections::HashSet;

use chrono::{DateTime, TimeZone, Utc};
use wattlas_protocol::{JobView, NewJob};

use super::JobContext;
use crate::db;
use crate::service::caller::Caller;
use crate::service::Context;
use crate::service::{Error, Result};

/// A time after every job's end, for ranges open at the end (PostgreSQL takes it; chrono's maximum it
/// need not).
fn far_future() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(9999, 12, 31, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn check_job_fields(job: &NewJob) -> Result<()> {
    // Schedulers' ids (1234, 1234_5, 1234+1, 1234.head, 1234[5]) are one path segment of a URL.
    let id_ok = !job.id.is_empty()
        && job.id.len() <= 200
        && job
            .id
            .chars()
            .all(|c| c.is_ascii_graphic() && !"/\\?#%".contains(c));
    if !id_ok {
        return Err(Error::invalid(
            "id",
            "must be 1 to 200 visible ASCII characters, none of / \\ ? # %",
        ));
    }
    if job.user.trim().is_empty() || job.user.len() > 200 {
        return Err(Error::invalid("user", "must be 1 to 200 characters"));
    }
    if job.name.len() > 500 {
        return Err(Error::invalid("name", "longer than 500 characters"));
    }
    let earliest = Utc
        .with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    if job.start < earliest {
        return Err(Error::invalid("start", "before 2000"));
    }
    if job.start > Utc::now() + chrono::Duration::days(1) {
        return Err(Error::invalid("start", "more than a day in the future"));
    }
    if let Some(end) = job.end {
        if end < job.start {
            return Err(Error::invalid("end", "before start"));
        }
        check_end(end)?;
    }
    if job.tags.len() > 64 {
        return Err(Error::invalid("tags", "more than 64 tags"));
    }
    for (k, v) in &job.tags {
        if k.is_empty() || k.len() > 100 || v.len() > 500 {
            return Err(Error::invalid(
                format!("tags.{k}"),
                "keys must be 1 to 100 characters, values at most 500".to_string(),
            ));
        }
    }
    let sched = &job.scheduler;
    for (field, value, max) in [
        ("raw_id", &sched.raw_id, 200),
        ("account", &sched.account, 200),
        ("partition", &sched.partition, 200),
        ("state", &sched.state, 50),
    ] {
        if let Some(v) = value {
            if v.trim().is_empty() || v.len() > max || v.chars().any(char::is_control) {
                return Err(Error::invalid(
                    field,
                    format!("must be 1 to {max} characters without control characters"),
                ));
            }
        }
    }
    if job.nodes.len() > 100_000 || job.nodes.iter().any(|n| n.is_empty() || n.len() > 200) {
        return Err(Error::invalid(
            "nodes",
            "node names must be 1 to 200 characters (at most 100,000 nodes)",
        ));
    }
    let mut seen = HashSet::new();
    for (i, a) in job.allocations.iter().enumerate() {
        if a.gpus.is_empty() && a.mig.is_empty() {
            return Err(Error::invalid(format!("allocations[{i}].gpus"), "empty"));
        }
        if let Some(c) = a.cpus {
            if c == 0 || c > 1 << 20 {
                return Err(Error::invalid(
                    format!("allocations[{i}].cpus"),
                    format!("{c} is not 1 to {}", 1 << 20),
                ));
            }
        }
        for (k, m) in a.mig.iter().enumerate() {
            if m.slices().is_none() || m.profile.len() > 50 {
                return Err(Error::invalid(
                    format!("allocations[{i}].mig[{k}].profile"),
                    format!(
                        "'{}' is not a MIG profile such as 3g.40gb (1 to {} compute slices)",
                        m.profile,
                        wattlas_protocol::MIG_SLICES
                    ),
                ));
            }
            if a.gpus.contains(&m.gpu) || a.mig[..k].iter().any(|o| o.gpu == m.gpu) {
                return Err(Error::invalid(
                    format!("allocations[{i}].mig[{k}].gpu"),
                    format!("GPU {} of node '{}' listed twice", m.gpu, a.node),
                ));
            }
        }
        for g in a.gpus.iter().chain(a.mig.iter().map(|m| &m.gpu)) {
            if *g > wattlas_protocol::MAX_GPU_INDEX {
                return Err(Error::invalid(
                    format!("allocations[{i}].gpus"),
                    format!(
                        "GPU {g} is past the highest GPU index a node may have ({})",
                        wattlas_protocol::MAX_GPU_INDEX
                    ),
                ));
            }
        }
        for g in &a.gpus {
            if !seen.insert((a.node.clone(), *g)) {
                return Err(Error::invalid(
                    format!("allocations[{i}].gpus"),
                    format!("GPU {g} of node '{}' listed twice", a.node),
                ));
            }
        }
    }
    Ok(())
}

/// How far past the server's clock a job's end may lie: a node's clock a little ahead, never a year.
const END_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// How far apart two nodes' clocks (and their prologs) may put the same moment.
const NODE_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// How far before a finished job's end a node may start a requeued run of it: the end and the new
/// start come from two nodes' clocks (synchronised, a few ms apart), never from one run.
const REQUEUE_SKEW: chrono::Duration = chrono::Duration::seconds(5);

/// How far past the highest raw id its site has seen a node may register a job: Slurm numbers jobs in
/// order, and a node once registered future ids so that the real prolog got 409 (issue 33, N4).
const RAW_ID_LEAD: u64 = 1_000_000;

/// How far back a node may say its part of a running job started: its prolog says "now", and a
/// collector's spool delivers a start late by at most its outage.
const NODE_START_BACK: chrono::Duration = chrono::Duration::days(7);

/// The number a scheduler's id starts with (`4_2` -> 4, `17+1` -> 17).
fn leading_number(id: &str) -> Option<u64> {
    let digits = id.bytes().take_while(u8::is_ascii_digit).count();
    id[..digits].parse().ok()
}

/// An end no later than now plus the skew (a job ending in 9999 made its energy walk 8,000 years of
/// minutes: issue 33, N1).
fn check_end(end: DateTime<Utc>) -> Result<()> {
    if end > Utc::now() + END_SKEW {
        return Err(Error::invalid(
            "end",
            format!(
                "{} is in the future (more than {} minutes past the server's clock)",
                end.to_rfc3339(),
                END_SKEW.num_minutes()
            ),
        ));
    }
    Ok(())
}

/// Registers a job, or adds to one (each node's prolog posts its own allocation), for a writer
/// (a node or the admin): whether it was created, and its view.
pub(crate) async fn register(
    cx: &Context,
    caller: &Caller,
    job: &NewJob,
) -> Result<(bool, JobView)> {
    check_job_fields(job)?;
    let site = match (caller, &job.site) {
        (Caller::Node { site_id, .. }, None) => db::sites::by_id(&cx.db, *site_id).await?,
        (Caller::Node { site_id, name, .. }, Some(s)) => {
            let site = db::sites::by_name(&cx.db, s).await?;
            if site.as_ref().is_some_and(|site| site.id != *site_id) {
                return Err(Error::Forbidden(format!(
                    "site: node '{name}' is not in site '{s}'"
                )));
            }
            site
        }
        (Caller::Admin, Some(s)) => db::sites::by_name(&cx.db, s).await?,
        (Caller::Meter { .. } | Caller::Site { .. }, _) => {
            return Err(Error::Forbidden(
                "a meter or site write token cannot register jobs".into(),
            ))
        }
        (Caller::Admin, None) => {
            return Err(Error::invalid("site", "required with the admin token"))
        }
        (Caller::User(_), _) => {
            return Err(Error::Forbidden(
                "only collectors and admins register jobs".into(),
            ))
        }
    };
    let site = site.ok_or_else(|| {
        Error::invalid(
            "site",
            format!("unknown site '{}'", job.site.as_deref().unwrap_or("")),
        )
    })?;

    let names: Vec<String> = job.allocations.iter().map(|a| a.node.clone()).collect();
    let nodes = db::nodes::by_names(&cx.db, &names).await?;
    let mut gpus = Vec::new();
    let mut cpus = Vec::new();
    for (i, a) in job.allocations.iter().enumerate() {
        let node = nodes.iter().find(|n| n.name == a.node).ok_or_else(|| {
            Error::invalid(
                format!("allocations[{i}].node"),
                format!("unknown node '{}'", a.node),
            )
        })?;
        if let Caller::Node { id, name, .. } = caller {
            if node.id != *id {
                return Err(Error::Forbidden(format!(
                    "allocations[{i}].node: node '{name}' may only register its own GPUs"
                )));
            }
        }
        if node.site_id != site.id {
            return Err(Error::invalid(
                format!("allocations[{i}].node"),
                format!("node '{}' is not in site '{}'", a.node, site.name),
            ));
        }
        gpus.extend(a.gpus.iter().map(|g| (node.id, *g as i32, None)));
        gpus.extend(a.mig.iter().map(|m| {
            let slices = m.slices().unwrap_or(wattlas_protocol::MIG_SLICES) as i16;
            (node.id, m.gpu as i32, Some((m.profile.clone(), slices)))
        }));
        if let Some(c) = a.cpus {
            cpus.push((node.id, c));
        }
    }

    // A node registers its own part of a job running on it now: never a finished job, never another
    // node's GPUs (above), never someone else's tags.
    if let Caller::Node { name, .. } = caller {
        if job.end.is_some() {
            return Err(Error::Forbidden(format!(
                "end: node '{name}' registers its part of a running job; its epilog ends it"
            )));
        }
        if job.start > Utc::now() + chrono::Duration::minutes(5) {
            return Err(Error::Forbidden(format!(
                "start: {} is not running on node '{name}' now",
                job.start.to_rfc3339()
            )));
        }
        if job.start < Utc::now() - NODE_START_BACK {
            return Err(Error::invalid(
                "start",
                format!(
                    "{} is more than {} days ago: a node registers a job running on it now (an \
                     admin registers history)",
                    job.start.to_rfc3339(),
                    NODE_START_BACK.num_days()
                ),
            ));
        }
        if !job.unknown_gpus.is_empty() {
            return Err(Error::Forbidden(
                "unknown_gpus: only an admin registers a scheduler's record".into(),
            ));
        }
        if job.scheduler.state.is_some() || !job.nodes.is_empty() {
            return Err(Error::Forbidden(
                "state: only an admin registers a scheduler's record (its state and nodes)".into(),
            ));
        }
    }
    for (i, u) in job.unknown_gpus.iter().enumerate() {
        if u.node.is_empty() || u.node.len() > 200 {
            return Err(Error::invalid(
                format!("unknown_gpus[{i}].node"),
                "must be 1 to 200 characters".to_string(),
            ));
        }
    }

    let mut tx = cx.db.begin().await?;
    // The job this record is of: its id, else the site's job of the same raw id (a prolog that could
    // not learn the array task's id registered the raw one; sacct names both).
    let mut id = job.id.clone();
    let mut existing = db::jobs::by_id_for_update(&mut tx, &id).await?;
    if existing.is_none() {
        if let Some(raw) = &job.scheduler.raw_id {
            if let Some(known) = db::jobs::id_by_raw_id(&mut *tx, site.id, raw).await? {
                existing = db::jobs::by_id_for_update(&mut tx, &known).await?;
                id = known;
            }
        }
    }
    let record = db::jobs::JobRecord {
        id: &id,
        user: &job.user,
        name: &job.name,
        site_id: site.id,
        start: job.start,
        end: job.end,
        tags: &job.tags,
        unknown_gpus: &job.unknown_gpus,
        scheduler: &job.scheduler,
    };
    // Inserted where it does not exist yet; a registration of the same job committed since (another
    // node's prolog) makes the insert a no-op, and the job is read then.
    let existing = match existing {
        Some(job) => Some(job),
        None if db::jobs::insert(&mut tx, &record).await? => None,
        None => Some(
            db::jobs::by_id_for_update(&mut tx, &id)
                .await?
                .ok_or_else(|| Error::internal("job vanished while being merged"))?,
        ),
    };
    let created = existing.is_none();
    if let (true, Caller::Node { name, .. }) = (created, caller) {
        let raw = job.scheduler.raw_id.as_deref().unwrap_or(&id);
        if let Some(n) = leading_number(raw) {
            if let Some(highest) = db::jobs::highest_raw_number(&mut tx, site.id, &id).await? {
                if n > highest.saturating_add(RAW_ID_LEAD) {
                    return Err(Error::invalid(
                        "raw_id",
                        format!(
                            "job {n} is more than {RAW_ID_LEAD} past the site's highest, {highest}: \
                             node '{name}' registers jobs running on it now"
                        ),
                    ));
                }
            }
        }
    }
    if let Some(existing) = existing {
        // The parts of one job come with each node's own clock: starts may differ, owners may not.
        if existing.site_id != site.id {
            return Err(Error::Conflict(format!(
                "site: job '{id}' exists at site '{}'",
                existing.site
            )));
        }
        if existing.user_name != job.user {
            return Err(Error::Conflict(format!(
                "user: job '{id}' exists with user '{}'",
                existing.user_name
            )));
        }
        if let (Some(raw), Some(known)) = (&job.scheduler.raw_id, &existing.raw_id) {
            if raw != known {
                return Err(Error::Conflict(format!(
                    "raw_id: job '{id}' is raw job {known}, not {raw}"
                )));
            }
        }
        if !job.nodes.is_empty() {
            // The nodes it held while this record's run ran (a requeued job ran elsewhere before).
            let held =
                db::jobs::allocated_node_names_during(&mut tx, &id, job.start, job.end).await?;
            let elsewhere: Vec<&String> = held.iter().filter(|n| !job.nodes.contains(n)).collect();
            if !elsewhere.is_empty() {
                return Err(Error::Conflict(format!(
                    "nodes: job '{id}' holds GPUs on {} by its prolog; this record says {}",
                    elsewhere
                        .iter()
                        .map(|n| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    job.nodes.join(", ")
                )));
            }
        }
        if let Caller::Node {
            id: node_id, name, ..
        } = caller
        {
            if gpus.is_empty() && !db::jobs::node_is_allocated(&cx.db, &id, *node_id).await? {
                return Err(Error::Forbidden(format!(
                    "id: node '{name}' holds no part of job '{id}'"
                )));
            }
            if let Some((k, _)) = job
                .tags
                .iter()
                .find(|(k, v)| existing.tags.0.get(*k) != Some(*v))
            {
                return Err(Error::Forbidden(format!(
                    "tags.{k}: node '{name}' may not change the tags of job '{id}'"
                )));
            }
            // A node's part overlaps the job as it is: it never moves the job's start earlier, and
            // re-opens a finished job only as a new run after its end (Slurm's requeue), never back
            // to a time it covered (issue 33, N4: a node re-opened another's job from 2000).
            if job.start < existing.start_time - NODE_SKEW {
                return Err(Error::Conflict(format!(
                    "start: job '{id}' started at {}; node '{name}' cannot start its part before it",
                    existing.start_time.to_rfc3339()
                )));
            }
            if let Some(end) = existing.end_time {
                if job.start < end - REQUEUE_SKEW {
                    return Err(Error::Conflict(format!(
                        "start: job '{id}' ended at {}; node '{name}' may start a new run of it after \
                         that (a requeue), not at {}",
                        end.to_rfc3339(),
                        job.start.to_rfc3339()
                    )));
                }
            }
        }
        // A scheduler's record of a job its nodes registered fills in; it moves no time they recorded.
        // (The job's summary is stored anew after the commit, below: marking it stale here would lock
        // summaries in another order than the ranges marked below and deadlock two registrations.)
        let keep_times =
            matches!(caller, Caller::Admin) && db::jobs::has_parts(&mut tx, &id).await?;
        db::jobs::merge(&mut tx, &record, keep_times).await?;
        if keep_times && existing.end_time.is_none() {
            if let Some(end) = job.end {
                // No epilog ended it (its node died): the scheduler's end closes the open parts.
                db::jobs::end(&mut tx, &id, end, db::jobs::Ending::OpenParts).await?;
            }
        }
    }
    if let Caller::Node { id: node_id, .. } = caller {
        db::jobs::start_part(&mut tx, &id, *node_id, job.start).await?;
    }
    db::jobs::add_allocations(&mut tx, &id, &gpus).await?;
    db::jobs::drop_named_unknown_gpus(&mut tx, &id).await?;
    for (node, c) in cpus {
        db::node_energy::set_job_cpus(&mut tx, &id, node, c).await?;
    }
    // Jobs sharing these nodes over this span now share their GPUs and CPUs with one more: their
    // stored figures are computed again.
    let far = job.end.unwrap_or(far_future());
    let mut nodes_of_job: Vec<NodeId> = gpus.iter().map(|g| g.0).collect();
    nodes_of_job.dedup();
    let ranges: Vec<_> = nodes_of_job.iter().map(|n| (*n, job.start, far)).collect();
    crate::service::stale::nodes_changed(&mut tx, &ranges).await?;
    let ctx = JobContext::in_transaction(cx, &mut tx, &id).await?;
    tx.commit().await?;
    Ok((created, super::computed_view(cx, &ctx).await?))
}

/// Ends a job (admin), or a node's part of it (its epilog), at `end`: the job's view after.
pub(crate) async fn end(
    cx: &Context,
    caller: &Caller,
    id: &str,
    end: DateTime<Utc>,
) -> Result<JobView> {
    // A node's epilog knows its job by Slurm's raw id (array task 4_2 is raw job 5 in its
    // environment): the site's job of that raw id, else the job of that id.
    let resolved = match caller {
        Caller::Node { site_id, .. } => db::jobs::id_by_raw_id(&cx.db, *site_id, id).await?,
        _ => None,
    };
    let id = resolved.as_deref().unwrap_or(id);
    let job = db::jobs::by_id(&cx.db, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no job '{id}'")))?;
    match caller {
        Caller::Node {
            id: node_id, name, ..
        } => {
            if !db::jobs::node_is_allocated(&cx.db, id, *node_id).await? {
                return Err(Error::Forbidden(format!(
                    "node '{name}' holds no part of job '{id}'"
                )));
            }
        }
        Caller::Meter { .. } | Caller::Site { .. } => {
            return Err(Error::Forbidden(
                "a meter or site write token cannot end jobs".into(),
            ))
        }
        Caller::Admin => {}
        Caller::User(_) => {
            return Err(Error::Forbidden(
                "only collectors and admins end jobs".into(),
            ))
        }
    }

    check_end(end)?;
    if end < job.start_time {
        return Err(Error::invalid(
            "end",
            format!(
                "{} is before the job's start {}",
                end.to_rfc3339(),
                job.start_time.to_rfc3339()
            ),
        ));
    }
    let mut tx = cx.db.begin().await?;
    match caller {
        // A node's epilog ends its own part; the job ends with its last part. (A later end of an
        // ended part is taken: a requeued run's prolog can reach the server before the first run's
        // epilog, and its own epilog then ends the part again, later.)
        Caller::Node { id: node_id, .. } => {
            db::jobs::end_part(&mut tx, id, *node_id, end).await?;
        }
        _ => db::jobs::end(&mut tx, id, end, db::jobs::Ending::Correct).await?,
    }
    let ctx = JobContext::in_transaction(cx, &mut tx, id).await?;
    // The other jobs on its nodes after its end no longer share with it; an end moved later shares
    // from the old end on.
    let from = job.end_time.map_or(end, |old| old.min(end));
    let ranges: Vec<_> = ctx
        .nodes
        .iter()
        .map(|n| (n.node_id, from, far_future()))
        .collect();
    crate::service::stale::nodes_changed(&mut tx, &ranges).await?;
    tx.commit().await?;
    super::computed_view(cx, &ctx).await
}
