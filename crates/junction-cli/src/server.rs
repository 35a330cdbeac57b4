//! `junction serve` and `junction token`: commands that open the store
//! themselves.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use junction_core::role::Role;
use junction_core::SystemClock;
use junction_engine::{Engine, SchedulerConfig, WorkerConfig};
use junction_runtime::{ensure_node_modules, Runtime, RuntimeConfig};
use junction_store::seal::KeySource;
use junction_store::{Bootstrap, Location, Sealer, Store};

use crate::StoreArgs;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "JUNCTION_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    store: StoreArgs,
    /// In-process workers (tasks run at once); default: one per core. 0 runs
    /// no workers (use `junction worker`).
    #[arg(long, env = "JUNCTION_WORKERS")]
    workers: Option<usize>,
    /// Queues the in-process workers serve.
    #[arg(long, value_delimiter = ',', default_value = "default")]
    queues: Vec<String>,
    /// Seconds a claimed task stays a worker's without a heartbeat; after
    /// that another worker may run it.
    #[arg(long, default_value_t = 30)]
    lease: u64,
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// Do not fire schedules in this process (with PostgreSQL, servers
    /// elect one scheduler among themselves anyway).
    #[arg(long)]
    no_scheduler: bool,
    /// Consume XDS schema and activity messages from this AMQP broker
    /// (queue `junction.custom`, poison to `junction.custom.dead`), e.g.
    /// amqp://guest:guest@127.0.0.1:5672/%2f.
    #[arg(long, env = "JUNCTION_AMQP_URL")]
    amqp_url: Option<String>,
    /// The queue `--amqp-url` consumes; poison goes to QUEUE.dead.
    #[arg(long, env = "JUNCTION_AMQP_QUEUE", default_value = "junction.custom")]
    amqp_queue: String,
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token and print it (it is shown only once).
    Create {
        #[arg(long)]
        name: String,
        /// admin, editor, operator or viewer.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Make it a personal access token of this company (spec 002): it
        /// reaches only that company's routes and webhook. Not with admin.
        #[arg(long, value_name = "ID")]
        company: Option<i64>,
        #[command(flatten)]
        store: StoreArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user who signs in to the web UI with a password (read from
    /// standard input, so it stays out of `ps` and shell history); an
    /// existing user gets the new password and role.
    Create {
        name: String,
        /// admin, editor, operator or viewer.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub async fn user(cmd: UserCommand) -> Result<()> {
    match cmd {
        UserCommand::Create { name, role, store } => {
            use std::io::BufRead;
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                eprintln!("password for {name} (then Enter):");
            }
            let mut password = String::new();
            std::io::stdin().lock().read_line(&mut password).context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\r', '\n']);
            let store = open_store(&store).await?;
            let done = store.put_user(&name, role, password).await;
            store.close().await;
            done?;
            eprintln!("user {name} ({role}) can sign in to the web UI");
            Ok(())
        }
    }
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| "must be one of admin, editor, operator, viewer".to_string())
}

async fn open_store(args: &StoreArgs) -> Result<Store> {
    let location = match &args.database_url {
        Some(url) if !url.trim().is_empty() => Location::from_url(url)?,
        _ => Location::in_data_dir(&args.data_dir),
    };
    // Owner-only, and so is every file in it (database, -wal, -shm, key).
    junction_store::secure_data_dir(&args.data_dir, junction_store::DATA_DIR_MODE)
        .with_context(|| format!("cannot create the data dir {} (or make it private)", args.data_dir.display()))?;
    let env_key = std::env::var("JUNCTION_SECRET_KEY").ok();
    let (sealer, source) = Sealer::load(env_key.as_deref(), &args.data_dir.join("secret.key"))?;
    match source {
        KeySource::Env => tracing::info!("secret key from JUNCTION_SECRET_KEY"),
        KeySource::ExistingFile => tracing::info!("secret key from {}", args.data_dir.join("secret.key").display()),
        KeySource::GeneratedFile => {
            tracing::info!("generated a secret key in {}", args.data_dir.join("secret.key").display())
        }
    }
    tracing::info!(store = %location.redacted(), "opening store");
    Store::open(&location, sealer, Arc::new(SystemClock))
        .await
        .with_context(|| format!("cannot open the store at {}", location.redacted()))
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}

pub async fn serve(args: ServeArgs) -> Result<()> {
    init_logging();
    let store = open_store(&args.store).await?;
    let given = std::env::var("JUNCTION_ADMIN_TOKEN").ok();
    match store.bootstrap_admin(given.as_deref()).await? {
        Bootstrap::Generated(token) => eprintln!(
            "\n  Junction created an admin token for this new store. It is shown only now:\n\n      {}\n\n  \
             Use it as JUNCTION_TOKEN or in 'Authorization: Bearer ...'.\n",
            token.expose()
        ),
        Bootstrap::Given => tracing::info!("admin token set from JUNCTION_ADMIN_TOKEN"),
        Bootstrap::AlreadyDone => {}
    }
    let runtime = start_runtime(&args.store, &args.runtime).await?;
    let engine = Engine::new(store.clone(), runtime.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = args.workers.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let worker = (workers > 0).then(|| {
        let mut config = WorkerConfig::new(workers);
        config.queues = args.queues.clone();
        config.lease = std::time::Duration::from_secs(args.lease.max(1));
        tracing::info!(concurrency = workers, queues = ?config.queues, "starting in-process workers");
        let (engine, mut stop) = (engine.clone(), stop_rx.clone());
        tokio::spawn(async move {
            engine
                .run_worker(config, async move {
                    let _ = stop.changed().await;
                })
                .await
        })
    });
    let scheduler = (!args.no_scheduler).then(|| {
        let (engine, mut stop) = (engine.clone(), stop_rx.clone());
        tokio::spawn(async move {
            engine
                .run_scheduler(SchedulerConfig::default(), async move {
                    let _ = stop.changed().await;
                })
                .await
        })
    });
    let intake = args.amqp_url.clone().map(|url| {
        let (engine, mut stop, queue) = (engine.clone(), stop_rx.clone(), args.amqp_queue.clone());
        tokio::spawn(async move {
            let handler = junction_amqp::engine_handler(engine);
            let mut config = junction_amqp::Config::new(url);
            config.dead_letter_queue = format!("{queue}.dead");
            config.queue = queue;
            junction_amqp::run(config, handler, async move {
                let _ = stop.changed().await;
            })
            .await
        })
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    // Tests and scripts read this line to learn the port.
    eprintln!("junction listening on http://{addr}");
    junction_server::serve(listener, engine, async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    })
    .await?;
    tracing::info!("shutting down");
    for task in [worker, scheduler, intake].into_iter().flatten() {
        let _ = task.await;
    }
    runtime.shutdown().await;
    store.close().await;
    Ok(())
}

/// The script runtimes under `DATA_DIR/runtime`, with spec 000's Node.js
/// modules installed (once per version of the module list). A failed
/// install is a warning: scripts that need a module then fail with
/// "supported but not installed".
async fn start_runtime(store: &StoreArgs, args: &RuntimeArgs) -> Result<Runtime> {
    let mut config = RuntimeConfig::new(store.data_dir.join("runtime"));
    config.sandbox = args.sandbox;
    config.run_uids = Some(args.run_uids.clone());
    let modules_dir = args.modules_dir.clone();
    // Inside the sandbox the data dir (database, key file) does not exist,
    // nor does a SQLite database kept elsewhere (its -wal and -shm too).
    config.hidden_paths = vec![store.data_dir.clone()];
    if let Some(Ok(junction_store::Location::Sqlite(db))) =
        store.database_url.as_deref().map(junction_store::Location::from_url)
    {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut path = db.clone().into_os_string();
            path.push(suffix);
            config.hidden_paths.push(path.into());
        }
    }
    let modules_dir = modules_dir.unwrap_or_else(|| config.dir.join("node"));
    match ensure_node_modules(&config.npm, &modules_dir, |msg| eprintln!("{msg}")).await {
        Ok(modules) => config.node_modules = Some(modules),
        Err(e) => tracing::warn!(error = %e, "the supported Node.js modules are not installed"),
    }
    Runtime::start(config).await.context("cannot start the script runtimes")
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
        _ = ctrl_c => {},
        _ = term => {},
    }
}

pub async fn token(cmd: TokenCommand) -> Result<()> {
    init_logging();
    match cmd {
        TokenCommand::Create { name, role, company, store, json } => {
            // Refused before the store is opened, as a usage error.
            if let Err(e) = junction_core::token::check_company_role(role, company) {
                crate::usage_error(&["token", "create"], format!("--company: {}", e.0[0].message));
            }
            let store = open_store(&store).await?;
            let created = store.create_company_token(&name, role, company).await;
            store.close().await;
            let (info, secret) = created?;
            if json {
                let out = serde_json::json!({"id": info.id, "name": info.name, "role": info.role,
                    "company_id": info.company_id, "token": secret.expose()});
                println!("{out}");
            } else {
                let of = info.company_id.map(|c| format!(" of company {c}")).unwrap_or_default();
                eprintln!("created {} token {:?}{of} (id {}); it is shown only now:", info.role, info.name, info.id);
                println!("{}", secret.expose());
            }
            Ok(())
        }
    }
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Queues to serve.
    #[arg(long, value_delimiter = ',', default_value = "default")]
    queues: Vec<String>,
    /// Tasks run at once; default one per core.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Seconds a claimed task stays this worker's without a heartbeat.
    #[arg(long, default_value_t = 30)]
    lease: u64,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// How scripts run (`serve` and `worker`).
#[derive(Args, Debug)]
pub struct RuntimeArgs {
    /// Where the Node.js modules scripts may require are installed (a
    /// directory holding node_modules); default DATA_DIR/runtime/node,
    /// installed with npm on first start.
    #[arg(long, env = "JUNCTION_MODULES_DIR")]
    modules_dir: Option<PathBuf>,
    /// Script isolation: `auto` uses bubblewrap when installed and, when
    /// Junction runs as root, unprivileged uids (alone without bubblewrap);
    /// `required` refuses to start without a working bubblewrap; `off`
    /// runs scripts as this process's user (a warning says what that means).
    #[arg(long, env = "JUNCTION_SANDBOX", default_value = "auto")]
    sandbox: junction_runtime::Sandbox,
    /// Under root, the uids scripts run as, FIRST-LAST (FIRST is their
    /// group); no account is created, and ids that belong to an account are
    /// skipped.
    #[arg(long, env = "JUNCTION_RUN_UIDS", default_value = "90000-90255", value_parser = parse_uids)]
    run_uids: std::ops::Range<u32>,
}

fn parse_uids(s: &str) -> Result<std::ops::Range<u32>, String> {
    let (a, b) = s.split_once('-').ok_or("expected FIRST-LAST, e.g. 90000-90255")?;
    let (a, b): (u32, u32) =
        (a.parse().map_err(|_| "FIRST is not a number")?, b.parse().map_err(|_| "LAST is not a number")?);
    if a == 0 || b <= a || b == u32::MAX {
        return Err("FIRST must be above 0, LAST above FIRST and below 4294967295".into());
    }
    Ok(a..b + 1)
}

/// `junction worker`: runs tasks from the store's queues until SIGINT or
/// SIGTERM, then lets running tasks finish.
pub async fn worker(args: WorkerArgs) -> Result<()> {
    init_logging();
    let store = open_store(&args.store).await?;
    let runtime = start_runtime(&args.store, &args.runtime).await?;
    let engine = Engine::new(store.clone(), runtime.clone());
    let concurrency =
        args.concurrency.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let mut config = WorkerConfig::new(concurrency);
    config.queues = args.queues;
    config.lease = std::time::Duration::from_secs(args.lease.max(1));
    eprintln!("junction worker {} serving {:?} with {} slots", config.id, config.queues, concurrency);
    engine.run_worker(config, shutdown_signal()).await;
    runtime.shutdown().await;
    store.close().await;
    Ok(())
}
