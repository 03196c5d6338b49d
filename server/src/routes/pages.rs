//! Pages shared by every feature: the error page, the stylesheet, the front page.

use askama::Template;
use axum::http::header;
use axum::response::{IntoResponse, Redirect};

/// The HTML error page.
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    /// HTTP status.
    pub status: u16,
    /// What went wrong.
    pub message: String,
    /// Header (empty: errors do not look up who is asking).
    pub nav: crate::auth::session::Nav,
}

impl ErrorPage {
    /// The page, or its message as text if the template fails.
    pub fn render_or_text(&self) -> String {
        self.render()
            .unwrap_or_else(|_| format!("{} {}", self.status, self.message))
    }
}

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
