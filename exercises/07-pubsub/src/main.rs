//! The `pubsub` command line: clap and the shared plumbing, given in full in the exercise. The
//! work is in the library.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use plumbing::{parse, resolve, shutdown_on_signal};

use pubsub::client::Client;
use pubsub::loadgen::{self, LoadConfig};
use pubsub::protocol::DEFAULT_MAX_PAYLOAD;
use pubsub::server::{self, ServerConfig};
use pubsub::server::{
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PENDING, DEFAULT_MAX_SUBSCRIPTION_BYTES,
    DEFAULT_MAX_SUBSCRIPTIONS, DEFAULT_MAX_TOTAL_PENDING, DEFAULT_MAX_TOTAL_SUBSCRIPTION_BYTES,
    DEFAULT_PING_INTERVAL, DEFAULT_WRITE_DEADLINE,
};

/// A publish-subscribe broker that speaks the NATS protocol, and clients for it.
///
/// Start a broker, then `pubsub sub --server ADDR 'orders.>'` in one terminal and `pubsub pub
/// --server ADDR orders.new hello` in another. Any NATS client works too.
#[derive(Debug, Parser)]
#[command(name = "pubsub", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker.
    #[command(alias = "server")]
    Broker {
        /// Address to listen on; port 0 picks a free port (printed as `listening on ADDR`).
        #[arg(long, default_value = "127.0.0.1:4222")]
        bind: SocketAddr,
        /// The most clients connected at once.
        #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS)]
        max_connections: usize,
        /// The largest payload a PUB may carry (e.g. `1048576`, `1MiB`).
        #[arg(long, default_value_t = DEFAULT_MAX_PAYLOAD, value_parser = parse::positive_size)]
        max_payload: usize,
        /// The most bytes queued for one client before it is disconnected as a slow consumer.
        #[arg(long, default_value_t = DEFAULT_MAX_PENDING, value_parser = parse::positive_size)]
        max_pending: usize,
        /// The most subscriptions one client may hold.
        #[arg(long, default_value_t = DEFAULT_MAX_SUBSCRIPTIONS)]
        max_subscriptions: usize,
        /// The most bytes one client's subscriptions may hold in all, estimated: 256 for each,
        /// 320 for each subject token, twice the subject and sid, and the queue name.
        #[arg(
            long,
            default_value_t = DEFAULT_MAX_SUBSCRIPTION_BYTES,
            value_parser = parse::positive_size
        )]
        max_subscription_bytes: usize,
        /// The most bytes queued for all clients together; past it, a client that already has
        /// bytes queued is disconnected as a slow consumer.
        #[arg(
            long,
            default_value_t = DEFAULT_MAX_TOTAL_PENDING,
            value_parser = parse::positive_size
        )]
        max_total_pending: usize,
        /// The most bytes all clients' subscriptions may hold together, estimated as for
        /// --max-subscription-bytes; past it, SUB is refused.
        #[arg(
            long,
            default_value_t = DEFAULT_MAX_TOTAL_SUBSCRIPTION_BYTES,
            value_parser = parse::positive_size
        )]
        max_total_subscription_bytes: usize,
        /// How long one write to a client may take before it is a slow consumer (e.g. `10s`).
        #[arg(
            long,
            default_value = parse::duration_text(DEFAULT_WRITE_DEADLINE),
            value_parser = parse::duration
        )]
        write_deadline: Duration,
        /// How long a client may stay silent before it is sent PING; after 2 unanswered, it is
        /// disconnected (e.g. `2m`; `0s` never pings).
        #[arg(
            long,
            default_value = parse::duration_text(DEFAULT_PING_INTERVAL),
            value_parser = parse::duration
        )]
        ping_interval: Duration,
        /// Worker threads (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Publish one message.
    Pub {
        /// The broker (HOST:PORT).
        #[arg(long, default_value = "127.0.0.1:4222")]
        server: String,
        /// The subject to publish to.
        subject: String,
        /// The message.
        message: String,
    },
    /// Subscribe and print each message as a JSON line on stdout.
    Sub {
        /// The broker (HOST:PORT).
        #[arg(long, default_value = "127.0.0.1:4222")]
        server: String,
        /// The subject, wildcards allowed (`orders.*`, `orders.>`).
        subject: String,
        /// Exit after this many messages.
        #[arg(long)]
        count: Option<u64>,
        /// Join this queue group: each message goes to one member.
        #[arg(long)]
        queue: Option<String>,
    },
    /// Measure a broker: one publisher, SUBSCRIBERS subscribers, messages delivered per second.
    Bench {
        /// The broker (HOST:PORT), this one or any NATS server.
        #[arg(long, default_value = "127.0.0.1:4222")]
        server: String,
        /// Subscribers, each on its own connection.
        #[arg(long, default_value_t = 10)]
        subscribers: usize,
        /// Payload size in bytes.
        #[arg(long, default_value_t = 16)]
        size: usize,
        /// Messages to publish.
        #[arg(long, default_value_t = 1_000_000)]
        messages: u64,
        /// The subject.
        #[arg(long, default_value = "bench.fanout")]
        subject: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    plumbing::init_tracing();
    // One worker per core unless the broker is told otherwise; `--threads 1` is one thread, with
    // no hand-off between threads.
    let threads = match &cli.command {
        Command::Broker {
            threads: Some(threads),
            ..
        } => (*threads).max(1),
        _ => 0,
    };
    plumbing::run_main(threads, async {
        dispatch(cli.command).await?;
        Ok(ExitCode::SUCCESS)
    })
}

async fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Broker {
            bind,
            max_connections,
            max_payload,
            max_pending,
            max_subscriptions,
            max_subscription_bytes,
            max_total_pending,
            max_total_subscription_bytes,
            write_deadline,
            ping_interval,
            threads: _,
        } => {
            let listener = plumbing::listen(bind).await?;
            let config = ServerConfig {
                max_connections,
                max_payload,
                max_pending,
                max_subscriptions,
                max_subscription_bytes,
                max_total_pending,
                max_total_subscription_bytes,
                write_deadline,
                ping_interval,
            };
            server::run(listener, config, shutdown_on_signal()).await?;
            Ok(())
        }
        Command::Pub {
            server,
            subject,
            message,
        } => {
            let mut client = connect(&server).await?;
            client.publish(&subject, message.as_bytes());
            client
                .flush()
                .await
                .with_context(|| format!("publishing to {subject:?}"))
        }
        Command::Sub {
            server,
            subject,
            count,
            queue,
        } => {
            let mut client = connect(&server).await?;
            let sid = client.subscribe(&subject, queue.as_deref());
            if let Some(count) = count {
                client.unsubscribe(sid, Some(count));
            }
            client
                .flush()
                .await
                .with_context(|| format!("subscribing to {subject:?}"))?;
            println!("{}", serde_json::json!({ "subscribed": subject }));
            let mut received = 0;
            while count.is_none_or(|count| received < count) {
                let Some(message) = client.next_message().await? else {
                    bail!("the server closed the connection after {received} messages");
                };
                received += 1;
                println!(
                    "{}",
                    serde_json::json!({
                        "subject": message.subject,
                        "reply": message.reply,
                        "payload": String::from_utf8_lossy(&message.payload),
                    })
                );
            }
            Ok(())
        }
        Command::Bench {
            server,
            subscribers,
            size,
            messages,
            subject,
        } => {
            let addr = resolve(&server).await?;
            let config = LoadConfig {
                subscribers,
                size,
                messages,
                subject,
            };
            let report = loadgen::run(addr, &config)
                .await
                .with_context(|| format!("benchmarking {addr}"))?;
            println!(
                "{}",
                serde_json::json!({
                    "subscribers": subscribers,
                    "size": size,
                    "published": report.published,
                    "delivered": report.delivered,
                    "seconds": report.elapsed.as_secs_f64(),
                    "delivered_per_sec": report.delivered_per_sec().round(),
                })
            );
            Ok(())
        }
    }
}

async fn connect(server: &str) -> Result<Client> {
    let addr = resolve(server).await?;
    Client::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))
}
