//! `GET /api/v1/metrics/fleet`: the fleet in Prometheus' text format (0.0.4) for a site's Prometheus and
//! Grafana, with the metrics token or the admin token, like `/metrics`. Per site and node, never per job.

use std::fmt::Write;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};

use crate::error::AppError;
use crate::metrics::{family, label};
use crate::state::AppState;

/// `GET /api/v1/metrics/fleet`.
pub(crate) async fn fleet(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    crate::auth::operator_token(&state, &headers)?;
    let f = crate::service::fleet::fleet(state.read_db()).await?;
    let mut out = String::new();
    family(
        &mut out,
        "wattlas_fleet_node_power_watts",
        "gauge",
        "Power of a node's GPUs, their latest samples of the last minute, W.",
    );
    for (node, n) in &f.nodes {
        let _ = writeln!(
            out,
            "wattlas_fleet_node_power_watts{{site=\"{}\",node=\"{}\"}} {}",
            label(&n.site),
            label(node),
            n.power_w
        );
    }
    family(
        &mut out,
        "wattlas_fleet_node_gpus",
        "gauge",
        "A node's GPUs by state: busy (utilisation 5 % or more), idle, not reporting for a minute.",
    );
    for (node, n) in &f.nodes {
        for (state, count) in [
            ("busy", n.busy),
            ("idle", n.idle),
            ("not_reporting", n.not_reporting),
        ] {
            let _ = writeln!(
                out,
                "wattlas_fleet_node_gpus{{site=\"{}\",node=\"{}\",state=\"{state}\"}} {count}",
                label(&n.site),
                label(node)
            );
        }
    }
    family(
        &mut out,
        "wattlas_fleet_site_pue",
        "gauge",
        "A site's energy-weighted PUE of its latest measured hour within the last two.",
    );
    for (site, pue) in &f.pue {
        let _ = writeln!(
            out,
            "wattlas_fleet_site_pue{{site=\"{}\"}} {pue}",
            label(site)
        );
    }
    family(
        &mut out,
        "wattlas_fleet_site_gpu_energy_joules_total",
        "counter",
        "A site's GPUs' energy in rolled-up hours, J.",
    );
    for (site, j) in &f.gpu_energy_j {
        let _ = writeln!(
            out,
            "wattlas_fleet_site_gpu_energy_joules_total{{site=\"{}\"}} {j}",
            label(site)
        );
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}
