//! The `service-registry` command line: argument parsing, logging and signals. The work is in
//! the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use service_registry_solution::client::{self, RegisterArgs};
use service_registry_solution::dns::DnsSockets;
use service_registry_solution::server::{self, ServerConfig};

/// A service registry that speaks Consul's HTTP API and DNS interface.
///
/// Start an agent, then register and find services with this command, curl, a Consul client
/// library, or `dig @ADDR -p PORT web.service.consul SRV`.
#[derive(Debug, Parser)]
#[command(name = "service-registry", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent.
    Agent {
        /// HTTP address; port 0 picks a free port (printed as `listening on ADDR`).
        #[arg(long, default_value = "127.0.0.1:8500")]
        bind: SocketAddr,
        /// DNS address, UDP and TCP (printed as `dns on ADDR`); none when absent.
        #[arg(long)]
        dns_bind: Option<SocketAddr>,
        /// Keep registrations and check states here, fsynced before each answer.
        #[arg(long)]
        data: Option<PathBuf>,
        /// The node name answers show.
        #[arg(long, default_value = server::DEFAULT_NODE)]
        node: String,
        /// The address of instances registered without one (IPv4 for DNS answers).
        #[arg(long, default_value = server::DEFAULT_ADVERTISE)]
        advertise: String,
        /// The datacenter answers show.
        #[arg(long, default_value = server::DEFAULT_DATACENTER)]
        datacenter: String,
        /// HTTP connections at once; one more is answered 429.
        #[arg(long, default_value_t = server::DEFAULT_MAX_CONNECTIONS)]
        max_connections: usize,
        /// The largest request body (413 past it).
        #[arg(long, default_value = "64KiB", value_parser = plumbing::parse::positive_size)]
        max_body: usize,
        /// The largest request head: request line and headers (431 past it).
        #[arg(long, default_value = "16KiB", value_parser = plumbing::parse::positive_size)]
        max_header: usize,
        /// Blocking queries held at once (429 past it).
        #[arg(long, default_value_t = server::DEFAULT_MAX_WAITING)]
        max_waiting: usize,
        /// Service instances registered at once (429 past it).
        #[arg(long, default_value_t = server::DEFAULT_MAX_SERVICES)]
        max_services: usize,
        /// How often services critical for too long are deregistered (Consul: 30s).
        #[arg(long, default_value = "30s", value_parser = plumbing::parse::positive_duration)]
        reap_interval: Duration,
        /// The shortest DeregisterCriticalServiceAfter honoured (Consul: 1m).
        #[arg(long, default_value = "1m", value_parser = plumbing::parse::duration)]
        min_deregister_after: Duration,
        /// Worker threads (0: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Register a service instance.
    Register {
        #[command(flatten)]
        agent: AgentAddr,
        /// The service name.
        name: String,
        /// The instance ID (the name when absent).
        #[arg(long, default_value = "")]
        id: String,
        /// A tag (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// The instance's address (the node's when absent).
        #[arg(long, default_value = "")]
        address: String,
        /// The instance's port.
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Give it a TTL check with this TTL (a Go duration: 10s, 1m).
        #[arg(long)]
        ttl: Option<String>,
        /// Deregister it once that check has been critical this long.
        #[arg(long)]
        deregister_after: Option<String>,
    },
    /// Deregister a service instance by ID.
    Deregister {
        #[command(flatten)]
        agent: AgentAddr,
        /// The instance ID.
        id: String,
    },
    /// List service names and their tags.
    Services {
        #[command(flatten)]
        agent: AgentAddr,
    },
    /// List the instances of a service with their health.
    Health {
        #[command(flatten)]
        agent: AgentAddr,
        /// The service name.
        name: String,
        /// Only instances whose checks all pass.
        #[arg(long)]
        passing: bool,
    },
    /// Print the instances of a service as a JSON line each time they change.
    Watch {
        #[command(flatten)]
        agent: AgentAddr,
        /// The service name.
        name: String,
        /// Only instances whose checks all pass.
        #[arg(long)]
        passing: bool,
        /// How long each blocking query waits.
        #[arg(long, default_value = "5m", value_parser = plumbing::parse::positive_duration)]
        wait: Duration,
    },
    /// Mark a TTL check as passing (a heartbeat).
    Pass {
        #[command(flatten)]
        agent: AgentAddr,
        /// The check ID (`service:<id>` for a service's check).
        check: String,
        /// The check's new output.
        #[arg(long, default_value = "")]
        note: String,
    },
}

#[derive(Debug, clap::Args)]
struct AgentAddr {
    /// The agent's HTTP address (HOST:PORT).
    #[arg(long, env = "CONSUL_HTTP_ADDR", default_value = "127.0.0.1:8500")]
    http_addr: String,
}

impl AgentAddr {
    async fn resolve(&self) -> Result<SocketAddr> {
        let addr = self.http_addr.trim_start_matches("http://");
        plumbing::resolve(addr).await
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    plumbing::init_tracing();
    let threads = match &cli.command {
        Command::Agent { threads, .. } => *threads,
        _ => 1,
    };
    plumbing::run_main(threads, dispatch(cli.command))
}

async fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Agent {
            bind,
            dns_bind,
            data,
            node,
            advertise,
            datacenter,
            max_connections,
            max_body,
            max_header,
            max_waiting,
            max_services,
            reap_interval,
            min_deregister_after,
            threads: _,
        } => {
            let listener = TcpListener::bind(bind)
                .await
                .with_context(|| format!("cannot bind {bind}"))?;
            println!("listening on {}", listener.local_addr()?);
            let dns = match dns_bind {
                Some(addr) => {
                    let sockets = DnsSockets::bind(addr)
                        .await
                        .with_context(|| format!("cannot bind {addr} for DNS (UDP and TCP)"))?;
                    println!("dns on {}", sockets.local_addr()?);
                    Some(sockets)
                }
                None => None,
            };
            let config = ServerConfig {
                node,
                advertise,
                datacenter,
                data,
                max_connections,
                max_body,
                max_header,
                max_waiting,
                max_services,
                reap_interval,
                min_deregister_after,
                dns,
            };
            server::run(listener, config, plumbing::shutdown_on_signal()).await?;
        }
        Command::Register {
            agent,
            name,
            id,
            tags,
            address,
            port,
            ttl,
            deregister_after,
        } => {
            let args = RegisterArgs {
                name,
                id,
                tags,
                address,
                port,
                ttl,
                deregister_after,
            };
            let body = client::registration_body(&args);
            client::call(
                agent.resolve().await?,
                "PUT",
                "/v1/agent/service/register",
                Some(body),
            )
            .await?;
        }
        Command::Deregister { agent, id } => {
            let path = format!("/v1/agent/service/deregister/{id}");
            client::call(agent.resolve().await?, "PUT", &path, None).await?;
        }
        Command::Services { agent } => {
            let reply =
                client::call(agent.resolve().await?, "GET", "/v1/catalog/services", None).await?;
            print!("{}", client::render_services(&reply.body)?);
        }
        Command::Health {
            agent,
            name,
            passing,
        } => {
            let mut path = format!("/v1/health/service/{name}");
            if passing {
                path.push_str("?passing");
            }
            let reply = client::call(agent.resolve().await?, "GET", &path, None).await?;
            print!("{}", client::render_health(&reply.body)?);
        }
        Command::Watch {
            agent,
            name,
            passing,
            wait,
        } => client::watch(agent.resolve().await?, &name, passing, wait).await?,
        Command::Pass { agent, check, note } => {
            let path = format!("/v1/agent/check/pass/{check}?note={note}");
            client::call(agent.resolve().await?, "PUT", &path, None).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
