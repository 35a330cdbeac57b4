//! The `junction` binary: the server (`serve`), server-side administration
//! (`token create`), and client commands that talk to a server over HTTP.

mod client;
mod flows;
mod server;
mod stacks;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "junction", version, about = "Junction: a self-hosted integration hub")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the HTTP server.
    Serve(server::ServeArgs),
    /// Run tasks from the store's queues (alongside or instead of serve's workers).
    Worker(server::WorkerArgs),
    /// Manage API tokens directly in the store (no server needed).
    #[command(subcommand)]
    Token(server::TokenCommand),
    /// Manage web UI users directly in the store (no server needed).
    #[command(subcommand)]
    User(server::UserCommand),
    /// Upload, list, show and delete steps.
    #[command(subcommand)]
    Steps(client::StepsCommand),
    /// Upload, list, show, delete, run and trigger applications.
    #[command(subcommand)]
    Apps(client::DocCommand),
    /// Upload, list, show and delete configurations.
    #[command(subcommand)]
    Configs(client::DocCommand),
    /// Inspect, follow, revoke and replay runs and step tasks.
    #[command(subcommand)]
    Tasks(client::TasksCommand),
    /// Set, list and delete global parameters.
    #[command(subcommand)]
    Params(client::ParamsCommand),
    /// The jobs grid (`junction jobs`), a job's run history, stopping a job.
    Jobs(client::JobsArgs),
    /// Add, list and delete schedules; turn a job's schedules on or off.
    #[command(subcommand)]
    Schedule(client::ScheduleCommand),
    /// Show and change server settings (administrators).
    #[command(subcommand)]
    Settings(client::SettingsCommand),
    /// Companies, their Custom CD services and the CI/CD jobs they reported.
    #[command(subcommand)]
    Companies(client::CompaniesCommand),
    /// Event triggers: run an application when a matching CI/CD job arrives.
    #[command(subcommand)]
    Triggers(client::TriggersCommand),
    /// Extension stacks (integrator.io's hosted extension functions): upload,
    /// list, show, calls, token rotate, set, delete, call.
    #[command(subcommand)]
    Stacks(stacks::StacksCommand),
    /// Record flows (exports, imports and lookups with stack hooks): upload,
    /// list, show, run, errors, retry, resolve, delete.
    #[command(subcommand)]
    Flows(flows::FlowsCommand),
}

/// Where a client command finds the server.
#[derive(Args, Clone, Debug)]
pub struct ClientArgs {
    /// Junction server URL.
    #[arg(long, env = "JUNCTION_SERVER", default_value = "http://127.0.0.1:8080", global = true)]
    server: String,
    /// API token.
    #[arg(long, env = "JUNCTION_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

/// Where the store is, for commands that open it directly.
#[derive(Args, Clone, Debug)]
pub struct StoreArgs {
    /// Directory for the embedded database and the generated secret key.
    #[arg(long, env = "JUNCTION_DATA_DIR", default_value = "./junction-data")]
    data_dir: PathBuf,
    /// postgres://... to use PostgreSQL (or sqlite://PATH); default: SQLite in the data dir.
    #[arg(long, env = "JUNCTION_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

/// Exits like clap does for a bad command line (status 2), for flag
/// combinations clap cannot express; `path` names the subcommand, e.g.
/// `["schedule", "add"]`, so the usage line shown is its own.
pub fn usage_error(path: &[&str], message: impl std::fmt::Display) -> ! {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    cmd.build();
    let mut sub = &mut cmd;
    for name in path {
        sub = sub.find_subcommand_mut(name).expect("a known subcommand");
    }
    sub.error(clap::error::ErrorKind::ArgumentConflict, message).exit()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => server::serve(args).await,
            Command::Worker(args) => server::worker(args).await,
            Command::Token(cmd) => server::token(cmd).await,
            Command::User(cmd) => server::user(cmd).await,
            Command::Steps(cmd) => client::steps(cmd).await,
            Command::Apps(cmd) => client::documents(client::Kind::Applications, cmd).await,
            Command::Configs(cmd) => client::documents(client::Kind::Configurations, cmd).await,
            Command::Params(cmd) => client::params(cmd).await,
            Command::Tasks(cmd) => client::tasks(cmd).await,
            Command::Jobs(args) => client::jobs(args).await,
            Command::Schedule(cmd) => client::schedule(cmd).await,
            Command::Settings(cmd) => client::settings(cmd).await,
            Command::Companies(cmd) => client::companies(cmd).await,
            Command::Triggers(cmd) => client::triggers(cmd).await,
            Command::Stacks(cmd) => stacks::stacks(cmd).await,
            Command::Flows(cmd) => flows::flows(cmd).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
