//! The admin pages: users (roles, passwords, disabling), sites, nodes and meters (with their tokens,
//! shown once when made or rotated). Every form carries the session's CSRF token. The JSON API for the
//! same things is `/api/v1/users`, `/api/v1/sites`, `/api/v1/nodes`, `/api/v1/meters`.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use wattlas_protocol::{MeterView, NewSite};

use crate::auth::{Caller, Nav, Viewer};
use crate::error::{AppError, PageError};
use crate::extract::{ApiJson, Form, Path};
use crate::names::{MeterName, NodeName, SiteName};
use crate::service::{self, tokens, users};
use crate::state::AppState;

/// `/admin`.
#[derive(Template)]
#[template(path = "admin/index.html")]
pub(crate) struct AdminPage {
    /// Header.
    pub nav: Nav,
    /// Users by name.
    pub users: Vec<users::User>,
    /// Sites by name.
    pub sites: Vec<service::sites::SiteRow>,
    /// Nodes by name.
    pub nodes: Vec<service::nodes::Node>,
    /// Meters with their last reading.
    pub meters: Vec<MeterView>,
    /// A token just made: (what it is for, the token).
    pub new_token: Option<(String, String)>,
    /// What was just done.
    pub message: Option<String>,
    /// What went wrong.
    pub error: Option<String>,
    /// Role names for the selects.
    pub roles: [&'static str; 3],
    /// Per node (as `nodes`): its GPUs and models, and whether its collector is online.
    pub node_state: Vec<(i64, String, &'static str)>,
    /// Projects' budgets with this month's use.
    pub budgets: Vec<crate::service::budgets::Status>,
}

/// A number typed in a form: empty is `None`, else it must parse (the error names the field).
fn optional_number(field: &str, text: &str) -> Result<Option<f64>, AppError> {
    match text.trim() {
        "" => Ok(None),
        t => t
            .parse::<f64>()
            .map(Some)
            .map_err(|_| AppError::bad_request(format!("{field}: '{t}' is not a number"))),
    }
}

/// What an admin form led to.
enum Outcome {
    Done(String),
    Token(String, String),
}

async fn render(
    state: &AppState,
    viewer: &Viewer,
    outcome: Result<Outcome, AppError>,
) -> Result<Response, PageError> {
    viewer.require_admin()?;
    let (message, new_token, error, status) = match outcome {
        Ok(Outcome::Done(m)) => (
            Some(m).filter(|m| !m.is_empty()),
            None,
            None,
            StatusCode::OK,
        ),
        Ok(Outcome::Token(what, token)) => (None, Some((what, token)), None, StatusCode::OK),
        // Client errors are shown on the page beside the forms; ours propagate.
        Err(AppError::Client(status, msg)) => (None, None, Some(msg), status),
        Err(e) => return Err(e.into()),
    };
    let now = chrono::Utc::now();
    let (nodes, node_state) = service::nodes::with_state(state, now).await?;
    let page = AdminPage {
        nav: viewer.nav(),
        users: users::list(state).await?,
        sites: service::sites::list(state).await?,
        node_state,
        budgets: crate::service::budgets::statuses(state, now).await?,
        nodes,
        meters: crate::service::meters::meter_views(state, None).await?,
        new_token,
        message,
        error,
        roles: ["researcher", "staff", "admin"],
    };
    let html = page.render()?;
    Ok((status, Html(html)).into_response())
}

/// `GET /admin`.
pub(crate) async fn index(
    State(state): State<AppState>,
    viewer: Viewer,
) -> Result<Response, PageError> {
    render(&state, &viewer, Ok(Outcome::Done(String::new()))).await
}

/// The new-user form.
#[derive(Debug, Deserialize)]
pub(crate) struct NewUserForm {
    #[serde(default)]
    csrf: String,
    name: String,
    role: String,
    /// Empty: the user signs in through the trusted header only.
    #[serde(default)]
    password: String,
}

async fn create_user(state: &AppState, form: NewUserForm) -> Result<Outcome, AppError> {
    let user = users::create(state, &form.name, &form.role, Some(form.password)).await?;
    Ok(Outcome::Done(format!(
        "Created {} '{}'.",
        user.role.as_str(),
        user.name
    )))
}

/// `POST /admin/users`.
pub(crate) async fn users_create(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<NewUserForm>,
) -> Result<Response, PageError> {
    viewer.require_admin()?;
    viewer.check_csrf(&form.csrf)?;
    let outcome = create_user(&state, form).await;
    render(&state, &viewer, outcome).await
}

/// A user's row form: role, disabled, and optionally a new password.
#[derive(Debug, Deserialize)]
pub(crate) struct UserForm {
    #[serde(default)]
    csrf: String,
    role: String,
    /// Present (any value) when the box is ticked.
    disabled: Option<String>,
    #[serde(default)]
    password: String,
}

async fn update_user(
    state: &AppState,
    viewer: &Viewer,
    name: &str,
    form: UserForm,
) -> Result<Outcome, AppError> {
    let done = users::update(
        state,
        &viewer.name,
        name,
        &form.role,
        form.disabled.is_some(),
        form.password,
    )
    .await?;
    let mut message = format!(
        "'{name}' is {} {}.",
        if done.disabled {
            "a disabled"
        } else {
            "an enabled"
        },
        done.role.as_str()
    );
    if let Some(ended) = done.password {
        message.push_str(&format!(
            " Password set: {} session{} signed out and {} API token{} revoked.",
            ended.sessions,
            if ended.sessions == 1 { "" } else { "s" },
            ended.tokens,
            if ended.tokens == 1 { "" } else { "s" }
        ));
    }
    Ok(Outcome::Done(message))
}

/// `POST /admin/users/{name}`.
pub(crate) async fn users_update(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(name): Path<String>,
    Form(form): Form<UserForm>,
) -> Result<Response, PageError> {
    viewer.require_admin()?;
    viewer.check_csrf(&form.csrf)?;
    let outcome = update_user(&state, &viewer, &name, form).await;
    render(&state, &viewer, outcome).await
}

/// The new-site form.
#[derive(Debug, Deserialize)]
pub(crate) struct SiteForm {
    #[serde(default)]
    csrf: String,
    name: String,
    timezone: String,
    #[serde(default)]
    fallback_pue: String,
}

/// `POST /admin/sites`.
pub(crate) async fn sites_create(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<SiteForm>,
) -> Result<Response, PageError> {
    viewer.require_admin()?;
    viewer.check_csrf(&form.csrf)?;
    let outcome = async {
        let fallback_pue = optional_number("fallback_pue", &form.fallback_pue)?;
        let name = SiteName::parse("name", &form.name)?;
        let site = crate::service::sites::create_site(
            &state,
            &name,
            &NewSite {
                name: form.name.clone(),
                timezone: form.timezone,
                fallback_pue,
                ..NewSite::default()
            },
        )
        .await?;
        Ok(Outcome::Done(format!("Created site '{}'.", site.name)))
    }
    .await;
    render(&state, &viewer, outcome).await
}

/// The new-node and new-meter forms.
#[derive(Debug, Deserialize)]
pub(crate) struct CollectorForm {
    #[serde(default)]
    csrf: String,
    name: String,
    site: String,
    /// Meters only.
    category: Option<String>,
}

/// `POST /admin/nodes`: the node's token is shown once.
pub(crate) async fn nodes_create(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<CollectorForm>,
) -> Result<Response, PageError> {
    viewer.require_admin()?;
    viewer.check_csrf(&form.csrf)?;
    let outcome = async {
        let name = NodeName::parse("name", &form.name)?;
        Ok::<_, AppError>(crate::service::nodes::create_node(&state, &name, &form.site).await?)
    }
    .await
    .map(|t| Outcome::Token(format!("node '{}'", t.name), t.token));
    render(&state, &viewer, outcome).await
}

/// `POST /admin/meters`: the meter's token is shown once.
pub(crate) async fn meters_create(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<CollectorForm>,
) -> Result<Response, PageError> {
    viewer.require_admin()?;
    viewer.check_csrf(&form.csrf)?;
    let outcome = async {
        let name = MeterName::parse("name", &form.name)?;
        let category = form.category.filter(|c| !c.is_empty());
        Ok::<_, AppError>(
            crate::service::meters::create_meter(&state, &name, &form.site, category.as_deref())
                .await?,
        )
    }
    .await
    .map(|t| Outcome::Token(format!("meter '{}'", t.name), t.token));
    render(&state, &viewer, outcome).await
}

/// A form with only the CSRF token.
#[derive(Debug, Deserialize)]
pub(crate) struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

/// A site's settings form: empty fields stay as they are.
#[derive(Debug, Deserialize)]
pub(crate) struct SiteSettingsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    fallback_pue: String,
    #[serde(default)]
    carbon_g_per_kwh: String,
    #[serde(default)]
    price_per_kwh: String,
    #[serde(default)]
    currency: String,
}

/// `POST /admin/sites/{site}`: fallback PUE, carbon intensity, price (as `PUT /api/v1/sites/{site}`).
pub(crate) async fn sites_update(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(site): Path<String>,
    Form(form): Form<SiteSettingsForm>,
) -> Result<Response, PageError> {
    viewer.require_admin()?;
    viewer.check_csrf(&form.csrf)?;
    let outcome = async {
        let settings = wattlas_protocol::SiteSettings {
            fallback_pue: optional_number("fallback_pue", &form.fallback_pue)?,
            carbon_g_per_kwh: optional_number("carbon_g_per_kwh", &form.carbon_g_per_kwh)?,
            price_per_kwh: optional_number("price_per_kwh", &form.price_per_kwh)?,
            currency: Some(form.currency.trim().to_owned()).filter(|c| !c.is_empty()),
            node_quota: None,
        };
        crate::service::sites::update_settings(&state, &site, &settings).await?;
        Ok(Outcome::Done(format!(
            "Saved site '{site}': its jobs' CO2e and cost are being recomputed."
        )))
    }
    .await;
    render(&state, &viewer, outcome).await
}

/// A project's budget form.
#[derive(Debug, Deserialize)]
pub(crate) struct BudgetForm {
    #[serde(default)]
    csrf: String,
    project: String,
    #[serde(default)]
    kwh_per_month: String,
    #[serde(default)]
    co2e_kg_per_month: String,
    #[serde(default)]
    webhook_url: String,
}

/// `POST /admin/budgets`: sets a project's monthly budget (as `PUT /api/v1/projects/{p}/budget`).
pub(crate) async fn budgets_set(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<BudgetForm>,
) -> Result<Response, PageError> {
    viewer.require_admin()?;
    viewer.check_csrf(&form.csrf)?;
    let outcome = async {
        // Empty fields keep what the budget has (the form shows none of it); "none" removes it.
        let was = crate::service::budgets::current(&state, form.project.trim()).await?;
        let number = |field: &str, text: &str, kept: Option<f64>| match text.trim() {
            "" => Ok(kept),
            t if t.eq_ignore_ascii_case("none") => Ok(None),
            t => optional_number(field, t),
        };
        let input = crate::service::budgets::BudgetInput {
            kwh_per_month: number(
                "kwh_per_month",
                &form.kwh_per_month,
                was.as_ref().and_then(|b| b.kwh_per_month),
            )?,
            co2e_kg_per_month: number(
                "co2e_kg_per_month",
                &form.co2e_kg_per_month,
                was.as_ref().and_then(|b| b.co2e_kg_per_month),
            )?,
            webhook_url: match form.webhook_url.trim() {
                "" => was.and_then(|b| b.webhook_url),
                t if t.eq_ignore_ascii_case("none") => None,
                t => Some(t.to_owned()),
            },
        };
        let b = crate::service::budgets::set(&state, form.project.trim(), input).await?;
        Ok(Outcome::Done(format!(
            "Saved the budget of project '{}'.",
            b.project
        )))
    }
    .await;
    render(&state, &viewer, outcome).await
}

/// `/admin/{kind}/{name}/token` (GET): asks before a token is replaced.
#[derive(Template)]
#[template(path = "admin/confirm_token.html")]
pub(crate) struct ConfirmTokenPage {
    /// Header.
    pub nav: Nav,
    /// `nodes`, `meters` or `sites`.
    pub kind: String,
    /// Node, meter or site.
    pub what: &'static str,
    /// Its name.
    pub name: String,
    /// What replacing it does, in words.
    pub effect: &'static str,
}

/// `GET /admin/{kind}/{name}/token`: what a new token does, and the button that makes it.
pub(crate) async fn confirm_token(
    viewer: Viewer,
    Path((kind, name)): Path<(String, String)>,
) -> Result<Html<String>, PageError> {
    viewer.require_admin()?;
    let (what, effect) = match kind.as_str() {
        "nodes" => ("node", "Its collector keeps sending with the current token until you give it the new one: the current token keeps working until the collector first uses the new one, 24 hours at most."),
        "meters" => ("meter", "Its collector keeps sending with the current token until you give it the new one: the current token keeps working until the collector first uses the new one, 24 hours at most."),
        "sites" => ("site", "Prometheus remote write to this site stops at once with the current token: change its configuration right after."),
        _ => return Err(AppError::not_found("only nodes, meters and sites have tokens").into()),
    };
    let page = ConfirmTokenPage {
        nav: viewer.nav(),
        kind,
        what,
        name,
        effect,
    };
    Ok(Html(page.render().map_err(AppError::from)?))
}

/// `POST /admin/{kind}/{name}/token`: a new token for a node or meter; the old one stops working.
pub(crate) async fn rotate_token(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((kind, name)): Path<(String, String)>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, PageError> {
    viewer.require_admin()?;
    viewer.check_csrf(&form.csrf)?;
    let outcome = async {
        let holder = tokens::Holder::from_plural(&kind)?;
        let prefix = tokens::rotate(&state, holder, &name).await?;
        if matches!(holder, tokens::Holder::Node | tokens::Holder::Site) {
            // A node's old token keeps working until the collector first uses the new one (24 h at
            // most), a site's stops now: here at once, on other servers within
            // auth::WRITER_TOKEN_TTL.
            state.writer_tokens.clear();
        }
        let grace = if kind == "sites" {
            "the old token no longer works"
        } else {
            "the old token keeps working until the collector first uses this one, 24 hours at most"
        };
        Ok(Outcome::Token(
            format!("{} '{name}' ({grace})", kind.trim_end_matches('s')),
            prefix,
        ))
    }
    .await;
    render(&state, &viewer, outcome).await
}

/// `GET /api/v1/users` (admin).
pub(crate) async fn users_api(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<ApiJson<Vec<users::User>>, AppError> {
    caller.require_admin()?;
    Ok(ApiJson(users::list(&state).await?))
}

/// `POST /api/v1/users` (admin): `{"name", "role", "password"?}`.
#[derive(Debug, Deserialize)]
pub(crate) struct NewUser {
    name: String,
    role: String,
    password: Option<String>,
}

/// Creates a user through the API.
pub(crate) async fn users_api_create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(user): ApiJson<NewUser>,
) -> Result<(StatusCode, ApiJson<users::User>), AppError> {
    caller.require_admin()?;
    let created = users::create(&state, &user.name, &user.role, user.password).await?;
    Ok((StatusCode::CREATED, ApiJson(created)))
}
