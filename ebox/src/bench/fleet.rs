//! The pipeline's workers as separate processes (`ebox worker <name>`), as they are deployed:
//! each has its own CPU time and peak memory, and a stage can run several replicas.

use super::resources;
use crate::workers::Worker;
use anyhow::Context;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The stages a run starts, each with its number of replicas.
pub type Shape = Vec<(Worker, usize)>;

/// The pipeline up to the notifications: what a sender's message goes through.
pub const STAGES: [Worker; 4] = [
    Worker::Intake,
    Worker::ConsentCheck,
    Worker::Store,
    Worker::Notify,
];

/// One process of each stage, but `replicated` in `replicas` processes.
pub fn shape(replicated: Worker, replicas: usize) -> Shape {
    STAGES
        .iter()
        .map(|&w| (w, if w == replicated { replicas } else { 1 }))
        .collect()
}

/// How a shape reads: `1 × each stage`, or `2 × store`.
pub fn describe(shape: &Shape) -> String {
    match shape.iter().find(|(_, n)| *n != 1) {
        None => "1 × each stage".to_owned(),
        Some((w, n)) => format!("{n} × {}", w.component()),
    }
}

pub struct WorkerProcess {
    pub worker: Worker,
    /// `store`, or `store#2` for the second replica.
    pub name: String,
    metrics: SocketAddr,
    child: Child,
}

impl WorkerProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// The running worker processes of one run. Dropping it kills those still running.
pub struct Fleet {
    pub processes: Vec<WorkerProcess>,
}

impl Fleet {
    /// Starts every process of `shape` with this process's environment, each serving its
    /// probes on a port of its own and mailing to `smtp`, and waits until each is ready.
    pub async fn start(exe: &Path, shape: &Shape, smtp: SocketAddr) -> anyhow::Result<Self> {
        let mut fleet = Self {
            processes: Vec::new(),
        };
        for &(worker, replicas) in shape {
            for replica in 1..=replicas {
                let metrics = free_port()?;
                let child = Command::new(exe)
                    .args(["worker", worker.component()])
                    .env("EBOX_METRICS_ADDR", metrics.to_string())
                    .env("EBOX_SMTP_URL", format!("smtp://{smtp}"))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()
                    .with_context(|| format!("Failed to start {} worker", exe.display()))?;
                let name = match replica {
                    1 => worker.component().to_owned(),
                    n => format!("{}#{n}", worker.component()),
                };
                fleet.processes.push(WorkerProcess {
                    worker,
                    name,
                    metrics,
                    child,
                });
            }
        }
        for process in &mut fleet.processes {
            wait_until_ready(process).await?;
        }
        Ok(fleet)
    }

    /// Each process's peak resident memory so far, in bytes.
    pub fn peak_rss(&self) -> Vec<(String, Option<u64>)> {
        self.processes
            .iter()
            .map(|p| (p.name.clone(), resources::peak_rss(p.pid())))
            .collect()
    }

    /// What each stage's consumers did, summed over its replicas, from their `/metrics`.
    pub async fn stage_metrics(&self) -> Vec<StageMetrics> {
        let mut stages: Vec<StageMetrics> = Vec::new();
        for process in &self.processes {
            let text = match scrape(process.metrics, "/metrics").await {
                Ok(text) => text,
                Err(e) => {
                    eprintln!("bench: {} /metrics: {e:#}", process.name);
                    continue;
                }
            };
            let queue = queue_of(process.worker);
            let value = |name: &str| sample(&text, name, queue).unwrap_or(0.0);
            let at = match stages.iter().position(|s| s.worker == process.worker) {
                Some(at) => at,
                None => {
                    stages.push(StageMetrics::new(process.worker));
                    stages.len() - 1
                }
            };
            let stage = &mut stages[at];
            stage.replicas += 1;
            stage.batches += value("ebox_batch_size_count");
            stage.deliveries += value("ebox_batch_size_sum");
            stage.batch_seconds += value("ebox_batch_seconds_sum");
            stage.transient_failures += value("ebox_transient_failures_total");
        }
        stages
    }

    /// Asks every process to stop (SIGTERM: each finishes its batch) and waits for it, killing
    /// one that has not stopped within 30 s.
    pub async fn stop(mut self) {
        for process in &self.processes {
            let _ = Command::new("kill")
                .args(["-TERM", &process.pid().to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for process in &mut self.processes {
            while matches!(process.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // Drop kills what is left.
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for process in &mut self.processes {
            if matches!(process.child.try_wait(), Ok(None)) {
                let _ = process.child.kill();
                let _ = process.child.wait();
            }
        }
    }
}

/// The queue a stage consumes.
pub fn queue_of(worker: Worker) -> &'static str {
    use queues::topology as t;
    match worker {
        Worker::Intake => t::INTAKE_QUEUE,
        Worker::ConsentCheck => t::CONSENT_CHECK_QUEUE,
        Worker::ConsentUpdates => t::CONSENT_UPDATES_QUEUE,
        Worker::Store => t::STORE_QUEUE,
        Worker::Notify => t::NOTIFY_QUEUE,
        Worker::ReadReceipt => t::READ_RECEIPT_QUEUE,
    }
}

/// A stage's consumers over a run, from their counters.
#[derive(Debug, Clone)]
pub struct StageMetrics {
    pub worker: Worker,
    pub replicas: usize,
    pub batches: f64,
    pub deliveries: f64,
    /// Time spent in batches, from the first delivery to the last ack, summed.
    pub batch_seconds: f64,
    pub transient_failures: f64,
}

impl StageMetrics {
    fn new(worker: Worker) -> Self {
        Self {
            worker,
            replicas: 0,
            batches: 0.0,
            deliveries: 0.0,
            batch_seconds: 0.0,
            transient_failures: 0.0,
        }
    }

    pub fn mean_batch(&self) -> f64 {
        self.deliveries / self.batches.max(1.0)
    }

    /// The fraction of `seconds` each replica spent in batches, on average.
    pub fn busy(&self, seconds: f64) -> f64 {
        self.batch_seconds / seconds.max(1e-9) / self.replicas.max(1) as f64
    }
}

/// A free port on the loopback interface (free when asked: another process may take it
/// before the worker does, which then fails to start and says so).
fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

async fn wait_until_ready(process: &mut WorkerProcess) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = process.child.try_wait()? {
            anyhow::bail!(
                "the {} worker stopped ({status}); see its log above",
                process.name
            );
        }
        if scrape(process.metrics, "/readyz").await.is_ok() {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the {} worker was not ready within a minute",
            process.name
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// GET a path of a worker's probe server; an error unless it answers 200.
async fn scrape(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let response = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await?
        .error_for_status()?;
    Ok(response.text().await?)
}

/// The value of series `name{queue="<queue>"}` in Prometheus' text format.
fn sample(text: &str, name: &str, queue: &str) -> Option<f64> {
    let series = format!("{name}{{queue=\"{queue}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .and_then(|value| value.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_is_read_by_its_name_and_queue() {
        let text = "# HELP x\nebox_batch_size_sum{queue=\"ebox.store\"} 12\nebox_batch_size_sum{queue=\"ebox.intake\"} 3.5\n";
        assert_eq!(
            sample(text, "ebox_batch_size_sum", "ebox.intake"),
            Some(3.5)
        );
        assert_eq!(sample(text, "ebox_batch_size_sum", "ebox.notify"), None);
    }

    #[test]
    fn a_shape_replicates_one_stage() {
        let shape = shape(Worker::Store, 4);
        assert_eq!(describe(&shape), "4 × store");
        assert_eq!(shape.iter().map(|(_, n)| n).sum::<usize>(), 7);
        assert_eq!(describe(&super::shape(Worker::Store, 1)), "1 × each stage");
    }
}
