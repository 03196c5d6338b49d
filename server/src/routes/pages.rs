//! Pages shared by every feature: the stylesheet, the favicon, the front page (the error page is
//! `error::ErrorPage`).

use axum::http::header;
use axum::response::{IntoResponse, Redirect};

/// `/` leads to the jobs.
pub async fn index() -> Redirect {
    Redirect::to("/jobs")
}

/// `/static/style.css`, embedded in the binary so a deployment is one file.
pub async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../../static/style.css"),
    )
}

/// `/static/favicon.svg` (and `/favicon.ico`, which browsers ask for on their own).
pub async fn favicon() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("../../../static/favicon.svg"),
    )
}
