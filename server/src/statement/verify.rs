//! Statements anyone can verify (issue 35, item 5). Each PDF, Markdown, LaTeX or JSON statement is
//! issued: it gets a random id, the link `GET /s/{id}`, and the SHA-256 digest of its JSON form (keys
//! sorted, the `digest` field left out), all printed on it and stored with what it showed. Anyone
//! holding it opens the link without signing in: the page says whether the digest printed on it is
//! the one issued under that id (a document whose link carries another digest is refused), shows only
//! what the statement showed, and recomputes it from today's data: "unchanged", or which figures
//! differ (a meter reading corrected, late samples, a job still running). A JSON statement is checked
//! whole (`POST /api/v1/statements/verify`): its digest is computed again, so any edit is refused.

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::types::Json;

use crate::analytics::statement::Statement;
use crate::db;
use crate::service::caller::JobScope;
use crate::service::{Context, Error, Result};

/// Hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The digest of a statement's JSON form: SHA-256 of its canonical bytes (serde_json's, whose maps
/// keep their keys sorted), with the `digest` field left out.
pub(crate) fn digest_of(statement_json: &serde_json::Value) -> [u8; 32] {
    let mut v = statement_json.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("digest");
    }
    Sha256::digest(serde_json::to_vec(&v).unwrap_or_default()).into()
}

/// A new statement id: 96 random bits, as 24 hex digits (not guessable: the link shows the jobs it
/// names to whoever holds it).
fn new_id() -> String {
    let mut b = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut b);
    hex(&b)
}

/// What a statement showed: its summary's labelled values and each job's IT and facility energy as
/// its jobs table wrote them.
pub(crate) fn shown(st: &Statement) -> serde_json::Value {
    let jobs: serde_json::Map<String, serde_json::Value> = super::job_cells(st)
        .into_iter()
        .zip(&st.jobs)
        .map(|(cells, j)| {
            (
                j.id.clone(),
                serde_json::json!([
                    format!("{} {}", cells[10], st.unit.symbol()),
                    format!("{} {}", cells[11], st.unit.symbol())
                ]),
            )
        })
        .collect();
    serde_json::json!({
        "summary": super::summary_pairs(st),
        "jobs": jobs,
    })
}

/// Issues `st`: its id, verify address and digest, stored with what it shows. `base_url` is where
/// people reach this server (no trailing slash). The JSON form of 10,000 jobs takes a moment to build
/// and hash: that runs on a blocking thread, as typesetting does.
pub(crate) async fn issue(
    cx: &Context,
    st: Statement,
    issued_by: Option<&str>,
    base_url: &str,
) -> Result<Statement> {
    let id = new_id();
    let url = format!("{}/s/{id}", base_url.trim_end_matches('/'));
    let issued_id = id.clone();
    let (st, digest, what) = tokio::task::spawn_blocking(move || {
        let mut st = st;
        st.id = Some(issued_id);
        st.verify_url = Some(url);
        st.digest = None;
        let value = serde_json::to_value(&st).map_err(anyhow::Error::from)?;
        let digest = digest_of(&value);
        st.digest = Some(hex(&digest));
        let what = shown(&st);
        Ok::<_, anyhow::Error>((st, digest, what))
    })
    .await
    .map_err(anyhow::Error::from)??;
    db::statements::insert(
        &cx.db,
        &db::statements::Issued {
            id,
            digest: digest.to_vec(),
            issued_at: Utc::now(),
            issued_by: issued_by.map(str::to_owned),
            scope: st.scope.clone(),
            generated_at: st.generated_at,
            job_ids: st.jobs.iter().map(|j| j.id.clone()).collect(),
            shown: Json(what),
        },
    )
    .await?;
    Ok(st)
}

/// A check of an issued statement.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Verification {
    /// Its id.
    pub id: String,
    /// What it covers, in words.
    pub scope: String,
    /// Its own time.
    pub generated_at: DateTime<Utc>,
    /// The digest it was issued with (hex).
    pub digest: String,
    /// Whether the digest given (the link's, or a JSON statement's recomputed) is that one; none
    /// when none was given.
    pub digest_matches: Option<bool>,
    /// What it showed: its summary's labelled values.
    pub summary: Vec<(String, String)>,
    /// Its jobs.
    pub jobs: usize,
    /// Recomputed from today's data: every shown figure that differs, "label: then -> now"; empty:
    /// unchanged.
    pub changes: Vec<String>,
    /// Jobs it named that no longer exist.
    pub jobs_gone: usize,
    /// When it was recomputed.
    pub recomputed_at: DateTime<Utc>,
}

impl Verification {
    /// Authentic (the digest given, if any, is the issued one) and unchanged.
    pub(crate) fn unchanged(&self) -> bool {
        self.changes.is_empty() && self.jobs_gone == 0
    }
}

/// Checks the statement issued as `id` against `given` (a digest in hex, if any) and recomputes it.
pub(crate) async fn check(cx: &Context, id: &str, given: Option<&str>) -> Result<Verification> {
    let issued = db::statements::by_id(&cx.db, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no statement was issued as '{id}'")))?;
    let digest = hex(&issued.digest);
    let digest_matches = given.map(|g| g.trim().eq_ignore_ascii_case(&digest));
    let then = &issued.shown.0;
    let summary: Vec<(String, String)> =
        serde_json::from_value(then["summary"].clone()).unwrap_or_default();
    let mut v = Verification {
        id: issued.id.clone(),
        scope: issued.scope.clone(),
        generated_at: issued.generated_at,
        digest,
        digest_matches,
        summary: summary.clone(),
        jobs: issued.job_ids.len(),
        changes: Vec::new(),
        jobs_gone: 0,
        recomputed_at: Utc::now(),
    };
    if digest_matches == Some(false) {
        return Ok(v);
    }
    // Recomputed as issued: the same jobs, whoever can see them now.
    let mut filter = crate::service::jobs::list::ListQuery::default().filter(&JobScope::All)?;
    filter.ids = Some(issued.job_ids.clone());
    let now = match super::gather(cx, &JobScope::All, filter, issued.scope.clone()).await {
        Ok(st) => st,
        Err(Error::NotFound(_)) => {
            v.jobs_gone = issued.job_ids.len();
            return Ok(v);
        }
        Err(e) => return Err(e),
    };
    v.recomputed_at = now.generated_at;
    v.jobs_gone = issued.job_ids.len().saturating_sub(now.jobs.len());
    let shown_now = shown(&now);
    let summary_now: Vec<(String, String)> =
        serde_json::from_value(shown_now["summary"].clone()).unwrap_or_default();
    for (label, was) in &summary {
        let is = summary_now
            .iter()
            .find(|(l, _)| l == label)
            .map_or("–", |(_, v)| v.as_str());
        if is != was {
            v.changes.push(format!("{label}: {was} then, {is} now"));
        }
    }
    let jobs_then = then["jobs"].as_object().cloned().unwrap_or_default();
    let jobs_now = shown_now["jobs"].as_object().cloned().unwrap_or_default();
    let mut differing = 0;
    for (job, was) in &jobs_then {
        let Some(is) = jobs_now.get(job) else {
            continue;
        };
        if is != was {
            differing += 1;
            if differing <= 10 {
                v.changes.push(format!(
                    "Job {job}: IT energy {} then, {} now; facility energy {} then, {} now",
                    was[0].as_str().unwrap_or(""),
                    is[0].as_str().unwrap_or(""),
                    was[1].as_str().unwrap_or(""),
                    is[1].as_str().unwrap_or("")
                ));
            }
        }
    }
    if differing > 10 {
        v.changes.push(format!(
            "… and {} more jobs whose energy differs",
            differing - 10
        ));
    }
    Ok(v)
}

/// Checks a statement's JSON form as held by its reader: its digest is computed again and must be the
/// one issued under its id.
pub(crate) async fn check_json(
    cx: &Context,
    statement: &serde_json::Value,
) -> Result<Verification> {
    let id = statement["id"]
        .as_str()
        .ok_or_else(|| Error::invalid("id", "a statement's JSON form carries its id"))?;
    let computed = hex(&digest_of(statement));
    let v = check(cx, id, Some(&computed)).await?;
    if v.digest_matches == Some(false) {
        return Err(Error::invalid(
            "digest",
            format!(
                "the content does not match the statement issued as {id}: it was altered (its digest is {computed}, the issued one {})",
                v.digest
            ),
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_leaves_itself_out_and_sees_every_other_byte() {
        let a = serde_json::json!({"id": "x", "summary": {"it_energy_kwh": 0.42}, "digest": "abc"});
        let b = serde_json::json!({"summary": {"it_energy_kwh": 0.42}, "id": "x"});
        assert_eq!(digest_of(&a), digest_of(&b), "keys sorted, digest left out");
        let c = serde_json::json!({"id": "x", "summary": {"it_energy_kwh": 0.43}});
        assert_ne!(digest_of(&a), digest_of(&c));
        // Parsed back from its text, the same digest: floats print as they parse (serde_json's
        // float_roundtrip; without it 199.99999999997902 came back as ...905 and a genuine JSON
        // statement was refused).
        let a = serde_json::json!({"id": "x", "avg_power_w": 199.99999999997902, "tiny": 1.0e-7});
        let text = serde_json::to_string(&a).expect("json");
        let back: serde_json::Value = serde_json::from_str(&text).expect("parse");
        assert_eq!(digest_of(&back), digest_of(&a));
        assert_eq!(new_id().len(), 24);
        assert_ne!(new_id(), new_id());
    }
}
