//! API paths, relative to the server's base URL: what clients call and what the server registers (its
//! router takes these constants, so the two cannot drift apart). `{id}` in a route is a path parameter.

/// The prefix of every API path.
pub const API: &str = "/api/v1";

/// GPU sample batches from a node's collector (bearer token of the node, or admin).
pub const INGEST_GPU: &str = "/api/v1/ingest/gpu";
/// Jobs: create (POST) and list (GET).
pub const JOBS: &str = "/api/v1/jobs";
/// Sites: create (POST) and list (GET).
pub const SITES: &str = "/api/v1/sites";
/// Nodes: create (POST, returns a token once) and list (GET).
pub const NODES: &str = "/api/v1/nodes";
/// Facility meters: create (POST, returns a token once) and list (GET).
pub const METERS: &str = "/api/v1/meters";
/// Facility meter readings (bearer token of the meter, or admin).
pub const INGEST_FACILITY: &str = "/api/v1/ingest/facility";

/// A job (GET), as the server registers it.
pub const JOB_ROUTE: &str = "/api/v1/jobs/{id}";
/// The end of a job or of a node's part of it (POST), as the server registers it.
pub const JOB_END_ROUTE: &str = "/api/v1/jobs/{id}/end";

/// `GET /api/v1/jobs/{id}`.
pub fn job(id: &str) -> String {
    format!("/api/v1/jobs/{}", encode_segment(id))
}

/// `POST /api/v1/jobs/{id}/end`.
pub fn job_end(id: &str) -> String {
    format!("/api/v1/jobs/{}/end", encode_segment(id))
}

/// Percent-encodes one path segment (job ids are scheduler ids such as `1234_5` or `array[3]`).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
