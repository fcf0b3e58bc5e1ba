//! `ebox bench`: the pipeline's throughput against its ceiling, its latency, memory, fairness
//! and how it scales with replicas: printed, never asserted. One run, in order:
//!
//! 1. **Ceiling** ([`chain`]): a bare chain of four durable quorum queues on the same broker,
//!    relays publishing with confirms and acking after the confirms.
//! 2. **Saturated** ([`runs`]): the workers run as separate processes (`ebox worker <name>`,
//!    one per stage: intake, consent-check, store, notify mailing to an SMTP sink of our own)
//!    with every guarantee on; two or more senders publish N messages at once, each with a PDF
//!    ([`load`]), to citizens of whom nine in ten consented and want an e-mail; the clock stops
//!    when every sender has heard the final status of every message. The queue depths
//!    ([`depths`]) name the slowest stage; `/proc` ([`resources`]) gives each process's CPU and
//!    peak memory, and the machine's.
//! 3. **Paced**: the same at the saturated rate, then at half of it, for latency.
//! 4. **Fairness**: the first sender publishes a batch; when the broker has it, the second
//!    sender publishes one message: how long until it is published?
//! 5. **Replicas**: the saturated run again with 2 and 4 processes of the slowest stage.
//! 6. **Storage** ([`storage`]): database bytes per stored message.
//!
//! Run it through `scripts/bench.sh`, which prepares the senders, a database and a vhost.

mod chain;
mod depths;
mod fleet;
mod latency;
mod load;
mod report;
mod resources;
mod runs;
mod senders;
mod storage;

use crate::workers::Worker;
use anyhow::Context;
use load::{Plan, Planned, Publications};
use report::{Conditions, Report, Runs};
use runs::{Bench, Publishing};
use runtime::config::Settings;
use senders::SenderAccount;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Messages of the saturated runs (spread over the senders).
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// The senders' broker URLs, comma separated (two at least); each URL's user is the
    /// sender's id, registered in the registry file.
    #[arg(
        long,
        env = "EBOX_BENCH_SENDER_URLS",
        value_delimiter = ',',
        default_value = "amqp://bench-a:bench-a@127.0.0.1:5672/%2f,amqp://bench-b:bench-b@127.0.0.1:5672/%2f"
    )]
    sender_urls: Vec<String>,
    /// A message type every sender may publish.
    #[arg(long, default_value = "unemployment-certificate")]
    message_type: String,
    /// Citizens the messages go to, in turn; every tenth never consented.
    #[arg(long, default_value_t = 1000)]
    citizens: usize,
    /// Bytes of each message's PDF.
    #[arg(long, default_value_t = 10 * 1024)]
    pdf_bytes: usize,
    /// Messages of each paced run (default: a quarter of --messages).
    #[arg(long)]
    paced_messages: Option<usize>,
    /// Messages of the fairness run's batch (default: --messages; 0 skips the run).
    #[arg(long)]
    fairness_batch: Option<usize>,
    /// Processes of the slowest stage to measure, comma separated (1 is the saturated run).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    replicas: Vec<usize>,
    /// Replicate this stage instead of the slowest one the saturated run found.
    #[arg(long, value_enum)]
    replicate: Option<Worker>,
    /// Print the figures as one JSON document.
    #[arg(long)]
    json: bool,
    /// The `ebox` executable the worker processes run (default: this one).
    #[arg(long)]
    worker_exe: Option<PathBuf>,
}

pub async fn run(settings: &Settings, args: BenchArgs) -> anyhow::Result<()> {
    let senders: Vec<SenderAccount> = args
        .sender_urls
        .iter()
        .map(|url| SenderAccount::from_url(url))
        .collect();
    anyhow::ensure!(
        senders.len() >= 2,
        "the bench needs two senders at least (--sender-urls)"
    );
    anyhow::ensure!(args.messages > 0 && args.citizens > 0, "nothing to measure");
    let load_before = resources::load_average();
    let at = chrono::Utc::now();
    runtime::db::migrate_as_owner(settings).await?;
    let pool = runtime::db::connect(settings).await?;
    eprintln!(
        "bench: recording {} citizens' consent and preferences …",
        args.citizens
    );
    let hasher = settings.ssin_hasher();
    load::record_citizens(&pool, &hasher, args.citizens).await?;
    let publications = Publications::build(args.citizens, args.pdf_bytes, &args.message_type)?;
    let publication_bytes = publications.mean_bytes();

    eprintln!("bench: the bare chain, {} messages …", args.messages);
    let mut attempt = 1;
    let ceiling = loop {
        match chain::measure(settings, &publications, args.messages, load::handoff()?).await {
            Err(e) if attempt < runs::ATTEMPTS && runs::broker_failed(&e) => {
                eprintln!(
                    "bench: the bare chain: the broker connection failed ({e:#}); measuring it again"
                );
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_secs(15)).await;
            }
            result => break result?,
        }
    };

    let (smtp, mut inbox) = crate::smtp_sink::start("127.0.0.1:0").await?;
    let mails = Arc::new(AtomicUsize::new(0));
    tokio::spawn({
        let mails = mails.clone();
        async move {
            while inbox.recv().await.is_some() {
                mails.fetch_add(1, Ordering::AcqRel);
            }
        }
    });
    let bench = Bench {
        settings,
        pool: &pool,
        exe: match &args.worker_exe {
            Some(exe) => exe.clone(),
            None => std::env::current_exe().context("Failed to find the ebox executable")?,
        },
        senders,
        publications,
        smtp,
        mails,
    };
    let runs = measure(&bench, &args).await?;
    let storage = storage::Storage::measure(&pool).await?;
    let report = Report {
        conditions: Conditions {
            at,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            load_before,
            load_after: resources::load_average(),
            messages: args.messages,
            pdf_bytes: args.pdf_bytes,
            publication_bytes,
            senders: bench.senders.iter().map(|s| s.id.clone()).collect(),
            citizens: args.citizens,
            prefetch: settings.prefetch,
            batch_size: settings.batch_size,
            intake_prefetch: settings.intake_prefetch(),
        },
        ceiling,
        runs,
        storage,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.json())?);
    } else {
        print!("{}", report.text());
    }
    Ok(())
}

/// The runs after the ceiling, in order.
async fn measure(bench: &Bench<'_>, args: &BenchArgs) -> anyhow::Result<Runs> {
    let senders = bench.senders.len();
    let one_each = fleet::shape(Worker::Intake, 1);
    let burst = || Plan::round_robin(args.messages, senders, args.citizens);
    let saturated = bench
        .measure("saturated", &one_each, burst, Publishing::Burst)
        .await?;
    let replicated = args
        .replicate
        .or(saturated.slowest)
        .unwrap_or(Worker::Intake);

    let paced_messages = args.paced_messages.unwrap_or(args.messages / 4).max(1);
    let mut paced = Vec::new();
    for (label, share) in [
        ("at the saturated rate", 1.0),
        ("at half the saturated rate", 0.5),
    ] {
        let plan = || Plan::round_robin(paced_messages, senders, args.citizens);
        let rate = saturated.rate * share;
        paced.push(
            bench
                .measure(label, &one_each, plan, Publishing::Paced(rate))
                .await?,
        );
    }

    let batch = args.fairness_batch.unwrap_or(args.messages);
    let fairness = if batch > 0 {
        let plan = || {
            let mut messages: Vec<Planned> = (0..batch)
                .map(|g| Planned {
                    sender: 0,
                    citizen: g % args.citizens,
                })
                .collect();
            // A consenting citizen, so that the single message ends `published`.
            messages.push(Planned {
                sender: 1,
                citizen: 0,
            });
            Plan::new(messages)
        };
        let fairness = bench
            .measure("fairness", &one_each, plan, Publishing::BatchThenSingle)
            .await?;
        Some(fairness)
    } else {
        None
    };

    let mut replicas = Vec::new();
    for &count in args.replicas.iter().filter(|&&n| n > 1) {
        let shape = fleet::shape(replicated, count);
        replicas.push(
            bench
                .measure("saturated", &shape, burst, Publishing::Burst)
                .await?,
        );
    }
    Ok(Runs {
        saturated,
        paced,
        fairness,
        replicated,
        replicas,
    })
}
