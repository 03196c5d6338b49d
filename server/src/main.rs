//! `wattlas-server`: serve (default) or migrate.

/// mimalloc instead of glibc's malloc: request handling allocates small buffers on every core, and
/// glibc's arena locks and frees were ~15 % of the ingest profile (perf, 2026-11-30); with mimalloc the
/// ingest benchmark stores 19-30 % more samples a second on the same machine (BENCHMARKS.md).
/// Built with `--features system-alloc`, the server keeps glibc's malloc, which heap profilers such as
/// heaptrack see (DEVELOPERS.md, "Where the memory goes").
#[cfg(not(any(feature = "system-alloc", feature = "heap-stats")))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `--features heap-stats`: mimalloc with a count of the bytes the program holds (the `cap` crate),
/// printed every 10 s beside the process's RSS (stderr, "heap:"): RSS far above the bytes held is the
/// allocator keeping freed memory; both rising is the program holding more.
#[cfg(feature = "heap-stats")]
mod heap_stats {
    #[global_allocator]
    static ALLOCATOR: cap::Cap<mimalloc::MiMalloc> = cap::Cap::new(mimalloc::MiMalloc, usize::MAX);

    /// Prints the bytes held (the most of ten readings a second apart) and RSS every 10 s.
    pub(crate) fn report() {
        std::thread::spawn(|| loop {
            let mut most = 0;
            for _ in 0..10 {
                std::thread::sleep(std::time::Duration::from_secs(1));
                most = most.max(ALLOCATOR.allocated());
            }
            let rss_kib = wattlas_server::metrics::rss_kib(None).unwrap_or(0);
            eprintln!(
                "heap: held {} KiB (most in 10 s {} KiB), rss {rss_kib} KiB",
                ALLOCATOR.allocated() / 1024,
                most / 1024
            );
        });
    }
}

use anyhow::Context;
use clap::Parser;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;
use wattlas_server::config::{Cli, Command};
use wattlas_server::state::AppState;
use wattlas_server::{startup, MIGRATOR};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // No transparent huge pages: mimalloc frees memory in 64 KiB pieces, and a 2 MiB huge page stays
    // resident while any of it is used. With them a soak's RSS climbed from 55 to 150 MB while the
    // program held 12-28 MB (108 MB of it huge pages); `no_thp` keeps mimalloc from asking for them
    // where the kernel gives them on request, this where it gives them to every process.
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        eprintln!("warning: transparent huge pages stay on: {e}");
    }
    #[cfg(feature = "heap-stats")]
    heap_stats::report();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn")),
        )
        .init();
    let cli = Cli::parse();
    let url = cli
        .database_url
        .context("DATABASE_URL is not set (scripts/db up prints one)")?;
    let db =
        startup::connect_lazy(&cli.config, url.expose_secret()).context("invalid DATABASE_URL")?;
    if let Some(Command::Migrate { check: true }) = cli.command {
        let plan = wattlas_server::db::migrations::plan(&db, &MIGRATOR)
            .await
            .context("reading the database's migrations")?;
        let (text, code) = wattlas_server::cli::migration_check(&plan);
        println!("{text}");
        std::process::exit(code);
    }
    // Migrations at start-up, retried while the database comes up (docker-compose starts both at once).
    let mut attempt = 0;
    loop {
        match MIGRATOR.run(&db).await {
            Ok(()) => break,
            Err(e)
                if attempt < 30
                    && matches!(
                        e,
                        sqlx::migrate::MigrateError::Execute(
                            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut
                        )
                    ) =>
            {
                attempt += 1;
                tracing::warn!(error = %e, attempt, "database not reachable yet");
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
            Err(e) => return Err(e).context("running migrations"),
        }
    }
    match cli.command {
        Some(Command::Migrate { .. }) => {
            tracing::info!("migrations applied");
            return Ok(());
        }
        Some(Command::User { action }) => {
            let out = wattlas_server::cli::user(&db, action, std::io::stdin().lock()).await?;
            println!("{out}");
            return Ok(());
        }
        Some(Command::Statement(args)) => {
            let state = AppState::new(db, cli.config);
            println!("{}", wattlas_server::cli::statement(&state, args).await?);
            return Ok(());
        }
        Some(Command::Serve) | None => {}
    }
    let listener = TcpListener::bind(cli.config.bind)
        .await
        .with_context(|| format!("binding {}", cli.config.bind))?;
    tracing::info!(address = %listener.local_addr()?, "wattlas-server listening");
    let state = match cli.config.read_database_url.clone() {
        Some(url) => {
            let replica = startup::connect_lazy(&cli.config, url.expose_secret())
                .context("invalid WATTLAS_READ_DATABASE_URL")?;
            let max_lag = std::time::Duration::from_secs_f64(cli.config.replica_max_lag_s);
            tracing::info!(
                max_lag_s = cli.config.replica_max_lag_s,
                "heavy reads go to the read replica while within its bound"
            );
            let reads = wattlas_server::reads::Reads::new(db.clone(), Some(replica), max_lag);
            AppState::with_reads(db, cli.config, reads)
        }
        None => AppState::new(db, cli.config),
    };
    startup::run(listener, state, shutdown_signal())
        .await
        .context("serving")?;
    tracing::info!("shut down");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
