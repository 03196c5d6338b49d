//! The router: every route of the API and the pages, and the layers around them.

pub(crate) mod account;
pub(crate) mod admin;
pub(crate) mod calibration;
pub(crate) mod closure;
pub(crate) mod facility;
pub(crate) mod fleet;
pub(crate) mod health;
pub(crate) mod ingest;
pub(crate) mod jobs;
pub mod metrics;
pub(crate) mod nodes;
pub(crate) mod overview;
pub(crate) mod pages;
pub(crate) mod powercap;
pub(crate) mod progress;
pub(crate) mod projects;
pub(crate) mod pue;
pub mod queries;
pub(crate) mod scope2;
pub(crate) mod sites;
pub(crate) mod statements;
pub(crate) mod svg;

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue};
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use wattlas_protocol::paths;

use crate::error::AppError;
use crate::state::AppState;

/// Content-Security-Policy of every response.
pub const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// An API path of `protocol::paths` relative to the API router (nested at `paths::API`).
fn api_path(path: &'static str) -> &'static str {
    path.strip_prefix(paths::API)
        .expect("protocol::paths constants start with the API prefix")
}

/// All routes with their layers.
pub(crate) fn router(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    let api = Router::new()
        .route(
            api_path(paths::INGEST_GPU),
            post(ingest::ingest_gpu)
                .layer(from_fn_with_state(state.clone(), metrics::count_rejections)),
        )
        .route(api_path(paths::JOBS), post(jobs::create).get(jobs::list))
        .route("/jobs.csv", get(jobs::csv::export_api))
        .route(api_path(paths::JOB_ROUTE), get(jobs::show))
        .route(api_path(paths::JOB_END_ROUTE), post(jobs::end))
        .route(
            "/jobs/{id}/progress",
            post(progress::post).get(progress::get),
        )
        .route(
            "/write",
            post(ingest::remote_write)
                .layer(from_fn_with_state(state.clone(), metrics::count_rejections)),
        )
        .route(api_path(paths::SITES), post(sites::create).get(sites::list))
        .route("/sites/{site}", axum::routing::put(sites::update))
        .route("/sites/{site}/carbon", post(sites::carbon_ingest))
        .route("/sites/{site}/write-token", post(sites::write_token))
        .route(api_path(paths::NODES), post(nodes::create).get(nodes::list))
        .route(
            api_path(paths::METERS),
            post(facility::create).get(facility::list),
        )
        .route(
            "/meters/{name}/readings",
            axum::routing::delete(facility::delete_readings),
        )
        .route(
            api_path(paths::INGEST_FACILITY),
            post(facility::ingest)
                .layer(from_fn_with_state(state.clone(), metrics::count_rejections)),
        )
        .route("/sites/{site}/pue/variation", get(pue::variation))
        .route(
            "/sites/{site}/pue/variation.csv",
            get(pue::variation_csv_route),
        )
        .route("/sites/{site}/pue/hourly", get(pue::hourly))
        .route("/sites/{site}/energy", get(closure::api))
        .route("/waste", get(closure::waste_api))
        .route("/projects", get(projects::list))
        .route(
            "/projects/{project}/budget",
            axum::routing::put(projects::put_budget),
        )
        .route("/sites/{site}/pue/daily", get(pue::daily))
        .route("/sites/{site}/pue/recent", get(pue::recent))
        .route(
            "/sites/{site}/contracts",
            get(scope2::contracts)
                .post(scope2::add_contract)
                .delete(scope2::delete_contract),
        )
        .route("/meters/{name}/nodes", put(calibration::set_nodes))
        .route("/meters/{name}/calibration", get(calibration::api))
        .route("/gpu-models/embodied", get(scope2::embodied))
        .route("/gpu-models/{model}/embodied", put(scope2::set_embodied))
        .route("/sites/{site}/pue/advice", get(pue::advice_route))
        .route("/powercap/comparison", get(powercap::api))
        .route("/me", get(account::me))
        .route("/statement", get(statements::api))
        .route("/statements/verify", post(statements::verify_api))
        .route(
            "/users",
            get(admin::users_api).post(admin::users_api_create),
        )
        .fallback(|| async { AppError::not_found("no such API route") });
    // Everything that needs to know who is asking goes through `auth::middleware` once.
    let identified = Router::new()
        .nest(paths::API, api)
        .route("/", get(pages::index))
        .route("/login", get(account::login_form).post(account::login))
        .route("/logout", post(account::logout))
        .route("/account", get(account::show))
        .route("/account/tokens", post(account::create_token))
        .route("/account/tokens/{id}/revoke", post(account::revoke_token))
        .route("/account/password", post(account::change_password))
        .route("/admin", get(admin::index))
        .route("/admin/users", post(admin::users_create))
        .route("/admin/users/{name}", post(admin::users_update))
        .route("/admin/sites", post(admin::sites_create))
        .route("/admin/sites/{site}", post(admin::sites_update))
        .route("/admin/budgets", post(admin::budgets_set))
        .route("/admin/nodes", post(admin::nodes_create))
        .route("/admin/meters", post(admin::meters_create))
        .route(
            "/admin/{kind}/{name}/token",
            get(admin::confirm_token).post(admin::rotate_token),
        )
        .route("/jobs", get(jobs::pages::list_page))
        .route("/jobs.csv", get(jobs::csv::export_page))
        .route("/jobs/{id}", get(jobs::pages::show_page))
        .route("/jobs/{id}/{chart}", get(jobs::charts::gpu_chart))
        .route("/jobs/{id}/progress/{metric}", get(progress::chart))
        .route("/overview", get(overview::page))
        .route("/sites", get(sites::list_page))
        .route("/statement", get(statements::page))
        .route("/s/{id}", get(statements::verify_page))
        .route("/meters/{name}/calibration", get(calibration::page))
        .route("/powercap", get(powercap::page))
        .route("/sites/{site}/pue", get(pue::page))
        .route("/sites/{site}/energy", get(closure::page))
        .fallback(pages::not_found)
        // Inside the identification below: error pages get the signed-in person's header.
        .layer(axum::middleware::from_fn(crate::auth::error_pages_with_nav))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::middleware,
        ));
    identified
        .route("/static/style.css", get(pages::stylesheet))
        .route("/static/favicon.svg", get(pages::favicon))
        .route("/static/live.js", get(pages::live_script))
        .route("/favicon.ico", get(pages::favicon))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/metrics/fleet", get(fleet::fleet))
        // Each 5xx is logged once, here, with the route that matched and its cause.
        .route_layer(axum::middleware::from_fn(crate::error::log_server_errors))
        .with_state(state)
        // The limit applies to the decoded body, so a small gzip bomb cannot get past it.
        .layer(DefaultBodyLimit::max(max_body))
        // Remote write is snappy-compressed in its own format: encodings other than gzip pass through to
        // the handlers, whose extractors refuse those they do not read (415).
        .layer(
            RequestDecompressionLayer::new()
                .gzip(true)
                .pass_through_unaccepted(true),
        )
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(60),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        // Pages load only their own stylesheet, images and forms: no script runs at all, so an
        // injected tag would do nothing, and no other site may frame them.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        // Failures are logged by `log_server_errors` with their cause; the trace says only the status.
        .layer(
            TraceLayer::new_for_http().on_failure(
                tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG),
            ),
        )
        // The last line of defence: a panic in a handler answers 500 with a JSON error and is logged
        // once, instead of dropping the connection with a backtrace.
        .layer(CatchPanicLayer::custom(panic_response))
}

fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic");
    tracing::error!(error = ?what, "handler panicked");
    AppError::Client(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "internal error".to_owned(),
    )
    .into_response()
}
