//! Pages shared by every feature: the stylesheet, the favicon, the front page (the error page is
//! `error::ErrorPage`).

use axum::http::{header, Uri};
use axum::response::{IntoResponse, Redirect};

use crate::auth::Viewer;
use crate::error::{AppError, PageError};

/// `/` leads staff and admins to the overview, researchers to their jobs, and anyone not signed in to
/// the sign-in page, which lands them the same way.
pub(crate) async fn index(viewer: Result<Viewer, axum::response::Response>) -> Redirect {
    match viewer {
        Ok(v) if v.is_staff() => Redirect::to("/overview"),
        Ok(_) => Redirect::to("/jobs"),
        Err(_) => Redirect::to("/login"),
    }
}

/// Any path outside the API that no route has: the 404 page (with the page header of whoever is signed
/// in, added by `auth::error_pages_with_nav`).
pub(crate) async fn not_found(uri: Uri) -> PageError {
    PageError(AppError::not_found(format!(
        "There is no page at {}. The jobs list, power caps and sites are linked above.",
        uri.path()
    )))
}

/// `/static/style.css`, embedded in the binary so a deployment is one file.
pub(crate) async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../../static/style.css"),
    )
}

/// `/static/live.js`: the live figures of the overview and a running job's page (fetch and swap).
pub(crate) async fn live_script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../../static/live.js"),
    )
}

/// `/static/favicon.svg` (and `/favicon.ico`, which browsers ask for on their own).
pub(crate) async fn favicon() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("../../../static/favicon.svg"),
    )
}
