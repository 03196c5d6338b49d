//! `wattlas-server user ...`: user management from the command line, for the first admin and scripts.

use std::io::BufRead;

use anyhow::{bail, Context};
use sqlx::PgPool;

use crate::auth::{new_token, password, token_digest};
use crate::config::UserAction;
use crate::db::users;

/// Runs a user command; the password, where one is needed, is the first line of `input`.
/// Returns what to print.
pub async fn user(db: &PgPool, action: UserAction, input: impl BufRead) -> anyhow::Result<String> {
    match action {
        UserAction::Add {
            name,
            role,
            no_password,
        } => {
            crate::extract::check_user_name(&name).map_err(|e| anyhow::anyhow!("{e}"))?;
            let hash = if no_password {
                None
            } else {
                Some(read_password(input).await?)
            };
            match users::create(db, &name, role, hash.as_deref()).await? {
                Some(_) => Ok(format!("created {} '{name}'", role.as_str())),
                None => bail!("user '{name}' exists already"),
            }
        }
        UserAction::Passwd { name } => {
            let hash = read_password(input).await?;
            if users::set_password(db, &name, Some(&hash)).await? {
                Ok(format!("password of '{name}' set"))
            } else {
                bail!("no user '{name}'")
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

async fn read_password(mut input: impl BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let pw = line.trim_end_matches(['\r', '\n']).to_owned();
    password::check_new(&pw).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(password::hash(pw).await?)
}
