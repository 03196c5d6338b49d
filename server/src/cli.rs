//! `wattlas-server user ...`: user management from the command line, for the first admin and scripts.

use std::io::BufRead;

use anyhow::{bail, Context};
use sqlx::PgPool;

use crate::config::UserAction;
use crate::db::users;
use crate::service::caller::{new_token, token_digest};
use crate::service::password;

/// Runs a user command; the password, where one is needed, is the first line of `input`.
/// Returns what to print.
pub async fn user(db: &PgPool, action: UserAction, input: impl BufRead) -> anyhow::Result<String> {
    match action {
        UserAction::Add {
            name,
            role,
            no_password,
        } => {
            crate::service::check_user_name(&name).map_err(|e| anyhow::anyhow!("{e}"))?;
            let hash = if no_password {
                None
            } else {
                Some(read_password(input, &name).await?)
            };
            match users::create(db, &name, role, hash.as_deref()).await? {
                Some(_) => Ok(format!("created {} '{name}'", role.as_str())),
                None => bail!("user '{name}' exists already"),
            }
        }
        UserAction::Passwd { name } => {
            let hash = read_password(input, &name).await?;
            match users::set_password(db, &name, Some(&hash), None).await? {
                Some(ended) => Ok(format!(
                    "password of '{name}' set; {} sessions ended, {} API tokens revoked",
                    ended.sessions, ended.tokens
                )),
                None => bail!("no user '{name}'"),
            }
        }
        UserAction::Token { name, label } => {
            let user = users::by_name(db, &name)
                .await?
                .with_context(|| format!("no user '{name}'"))?;
            let token = new_token("wat");
            users::create_token(db, user.id, &label, &token_digest(&token)).await?;
            Ok(token)
        }
        UserAction::List => {
            let mut out = String::new();
            for u in users::list(db).await? {
                out.push_str(&format!(
                    "{}\t{}\t{}{}\n",
                    u.name,
                    u.role.as_str(),
                    if u.has_password {
                        "password"
                    } else {
                        "header only"
                    },
                    if u.disabled { "\tdisabled" } else { "" }
                ));
            }
            Ok(out.trim_end().to_owned())
        }
    }
}

async fn read_password(mut input: impl BufRead, name: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let pw = line.trim_end_matches(['\r', '\n']).to_owned();
    password::check_new(&pw, name).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(password::hash(pw).await?)
}

/// Writes the statement `args` asks for (every job is visible here: the command line is an admin's);
/// returns what to print.
pub async fn statement(
    cx: &crate::service::Context,
    args: crate::config::StatementArgs,
) -> anyhow::Result<String> {
    let format = args
        .output
        .extension()
        .and_then(|e| e.to_str())
        .map(crate::statement::Format::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_context(|| {
            format!(
                "-o {}: give the file an extension (pdf, md, tex, json or csv)",
                args.output.display()
            )
        })?;
    let q = crate::service::jobs::list::ListQuery {
        user: args.user,
        site: args.site,
        tag: args.tag,
        from: args.from,
        to: args.to,
        ..Default::default()
    };
    let ids = (!args.jobs.is_empty()).then_some(args.jobs);
    let scope = crate::service::caller::JobScope::All;
    let (q, left_out) = crate::statement::finished_by_default(&q, ids.is_some());
    let mut filter = q.filter(&scope).map_err(|e| anyhow::anyhow!("{e}"))?;
    filter.ids = ids.clone();
    let description = crate::service::jobs::list::describe(&q, ids.as_deref());
    let mut st = crate::statement::gather(cx, &scope, filter, description)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::statement::say_selection(&mut st, &q, ids.as_deref(), left_out);
    // Issued with its verify link where the server's public address is known (--public-url or
    // WATTLAS_PUBLIC_URL): a link to the command line's machine would reach nobody.
    let issued = match (&cx.config.public_url, format) {
        (_, crate::statement::Format::Csv) | (None, _) => false,
        (Some(base), _) => {
            st = crate::statement::verify::issue(cx, st, None, base)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            true
        }
    };
    let body = crate::statement::render(&st, format).map_err(|e| anyhow::anyhow!("{e}"))?;
    std::fs::write(&args.output, &body)
        .with_context(|| format!("writing {}", args.output.display()))?;
    Ok(format!(
        "{}: {} jobs, {:.3} kWh IT energy, {:.3} kWh facility energy{}",
        args.output.display(),
        st.summary.jobs,
        st.summary.it_energy_kwh,
        st.summary.facility_energy_kwh,
        if issued {
            format!("; verifiable at {}", st.verify_link().unwrap_or_default())
        } else if format == crate::statement::Format::Csv {
            String::new()
        } else {
            "; not issued with a verify link (set WATTLAS_PUBLIC_URL to the server's address)"
                .to_owned()
        }
    ))
}

/// `wattlas-server migrate --check`: what this release would do to the database, and the exit status
/// (0: up to date; 1: migrations would run; 2: this release cannot migrate it).
pub fn migration_check(plan: &crate::db::migrations::Plan) -> (String, i32) {
    use std::fmt::Write;
    let mut out = format!(
        "wattlas-server {}: {} of this release's {} migrations applied",
        env!("CARGO_PKG_VERSION"),
        plan.applied.len(),
        plan.applied.len() + plan.pending.len() + plan.changed.len() + plan.failed.len()
    );
    if let Some(last) = plan.applied.last() {
        let _ = write!(out, " (latest {} {})", last.version, last.description);
    }
    let list = |out: &mut String, title: String, steps: &[crate::db::migrations::Step]| {
        if !steps.is_empty() {
            let _ = write!(out, "\n{title}:");
            for s in steps {
                let _ = write!(out, "\n  {} {}", s.version, s.description);
            }
        }
    };
    list(
        &mut out,
        format!(
            "the database has {} migration(s) this release does not know (a newer release migrated it: \
             run that release, or restore a backup taken before it)",
            plan.unknown.len()
        ),
        &plan.unknown,
    );
    list(
        &mut out,
        format!(
            "{} applied migration(s) differ from this release's files",
            plan.changed.len()
        ),
        &plan.changed,
    );
    list(
        &mut out,
        format!("{} migration(s) failed part-way", plan.failed.len()),
        &plan.failed,
    );
    if !plan.runnable() {
        out.push_str("\nnothing would run: a start of this release refuses this database");
        return (out, 2);
    }
    if plan.pending.is_empty() {
        out.push_str("\nup to date: nothing would run");
        return (out, 0);
    }
    list(
        &mut out,
        format!("would run {} migration(s), in order", plan.pending.len()),
        &plan.pending,
    );
    (out, 1)
}
