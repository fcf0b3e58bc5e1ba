//! The figures of a whole bench, printed as text or as one JSON document.

use super::latency::{Percentiles, millis};
use super::resources::round1;
use super::runs::{Publishing, RunFigures};
use super::storage::Storage;
use crate::workers::Worker;
use std::fmt::Write as _;
use std::time::Duration;

/// Where and how the bench ran.
#[derive(Debug, Clone)]
pub struct Conditions {
    pub at: chrono::DateTime<chrono::Utc>,
    pub cores: usize,
    pub load_before: Option<String>,
    pub load_after: Option<String>,
    pub messages: usize,
    pub pdf_bytes: usize,
    pub publication_bytes: usize,
    pub senders: Vec<String>,
    pub citizens: usize,
    pub prefetch: u16,
    pub batch_size: usize,
    pub intake_prefetch: u16,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub conditions: Conditions,
    pub ceiling: f64,
    pub runs: Runs,
    pub storage: Storage,
}

/// The pipeline's runs, in the order they ran.
#[derive(Debug, Clone)]
pub struct Runs {
    pub saturated: RunFigures,
    pub paced: Vec<RunFigures>,
    pub fairness: Option<RunFigures>,
    pub replicated: Worker,
    /// Runs with more replicas of `replicated` (the saturated run has one).
    pub replicas: Vec<RunFigures>,
}

impl Report {
    pub fn text(&self) -> String {
        let c = &self.conditions;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "ebox bench, {}, {} cores; load average before {}, after {}",
            c.at.format("%Y-%m-%d %H:%M UTC"),
            c.cores,
            c.load_before.as_deref().unwrap_or("?"),
            c.load_after.as_deref().unwrap_or("?"),
        );
        let _ = writeln!(
            out,
            "load: {} messages, each a {}-byte PDF ({:.1} KiB published), from {} to {} citizens (9 in 10 consenting, with an e-mail preference); prefetch {}, batch {} (intake: prefetch {}, batch {})",
            c.messages,
            c.pdf_bytes,
            c.publication_bytes as f64 / 1024.0,
            c.senders.join(" and "),
            c.citizens,
            c.prefetch,
            c.batch_size,
            c.intake_prefetch,
            c.batch_size.min(usize::from(c.intake_prefetch)),
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "bare chain (4 quorum queues, confirms, acks):      {:>8.0} msg/s",
            self.ceiling
        );
        let _ = writeln!(
            out,
            "pipeline (every guarantee on, 1 × each stage):    {:>8.0} msg/s",
            self.runs.saturated.rate
        );
        let _ = writeln!(
            out,
            "pipeline / bare chain: {:.2}",
            self.runs.saturated.rate / self.ceiling
        );
        for run in std::iter::once(&self.runs.saturated)
            .chain(&self.runs.paced)
            .chain(&self.runs.fairness)
            .chain(&self.runs.replicas)
        {
            let _ = writeln!(out);
            out.push_str(&self.run_text(run));
        }
        if !self.runs.replicas.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "replicas of {} (the slowest stage):",
                self.runs.replicated.component()
            );
            let _ = writeln!(
                out,
                "  {:<22} {:>8} {:>6} {:>9} {:>9} {:>9}  saturated",
                "processes", "msg/s", "ratio", "p50", "p95", "p99"
            );
            for run in std::iter::once(&self.runs.saturated).chain(&self.runs.replicas) {
                let (p50, p95, p99) = run.latency.as_ref().map_or_else(
                    || ("-".to_owned(), "-".to_owned(), "-".to_owned()),
                    |l| (duration(l.p50), duration(l.p95), duration(l.p99)),
                );
                let _ = writeln!(
                    out,
                    "  {:<22} {:>8.0} {:>6.2} {:>9} {:>9} {:>9}  {}",
                    super::fleet::describe(&run.shape),
                    run.rate,
                    run.rate / self.ceiling,
                    p50,
                    p95,
                    p99,
                    run.usage.saturated()
                );
            }
        }
        let s = &self.storage;
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "database: {:.0} bytes per stored message ({} messages, {} documents kept; {})",
            s.per_message(),
            s.messages,
            s.documents,
            s.tables
                .iter()
                .map(|(t, b)| format!("{t} {}", bytes(*b as f64)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        out
    }

    fn run_text(&self, run: &RunFigures) -> String {
        let mut out = String::new();
        let how = match run.publishing {
            Publishing::Burst => "published at once".to_owned(),
            Publishing::Paced(rate) => format!("{rate:.0} msg/s"),
            Publishing::BatchThenSingle => "a batch, then a single message".to_owned(),
        };
        let _ = writeln!(
            out,
            "— {} ({}, {how}): {} messages in {:.1} s, {:.0} msg/s ({:.2} of the ceiling); {} published, {} no-digital-user; the senders published for {:.1} s",
            run.label,
            super::fleet::describe(&run.shape),
            run.messages,
            run.seconds,
            run.rate,
            run.rate / self.ceiling,
            run.published,
            run.no_digital_user,
            run.publish_seconds,
        );
        if let Some(single) = &run.single {
            let _ = writeln!(
                out,
                "  fairness: {}'s single message was published {} after it was sent, while {} of {}'s {} messages were still pending",
                single.sender,
                duration(single.latency),
                single.batch_pending,
                single.batch_sender,
                single.batch
            );
        }
        if let Some(latency) = &run.latency {
            let _ = writeln!(
                out,
                "  latency publish → published: p50 {}  p95 {}  p99 {}  max {}",
                duration(latency.p50),
                duration(latency.p95),
                duration(latency.p99),
                duration(latency.max)
            );
        }
        let _ = writeln!(
            out,
            "  queues, ready messages mean/peak: {}; slowest stage: {}",
            run.depths
                .iter()
                .map(|d| format!("{} {:.0}/{}", d.queue, d.mean(), d.peak))
                .collect::<Vec<_>>()
                .join(", "),
            run.slowest.map_or("?", Worker::component)
        );
        let _ = writeln!(
            out,
            "  consumers, busy share of the run per replica and mean batch: {}",
            run.stages
                .iter()
                .map(|s| format!(
                    "{} {:.0} % × {:.1}{}",
                    s.worker.component(),
                    s.busy(run.seconds) * 100.0,
                    s.mean_batch(),
                    if s.transient_failures > 0.0 {
                        format!(" ({} batches retried)", s.transient_failures)
                    } else {
                        String::new()
                    }
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let u = &run.usage;
        let _ = writeln!(
            out,
            "  CPU, % of one core: {}; rest of the machine {} (interrupts and steal {}); all cores {} busy, {} iowait; busiest disk {}",
            u.cpu
                .iter()
                .map(|(label, p)| format!("{label} {p:.0}"))
                .collect::<Vec<_>>()
                .join(", "),
            u.unwatched.map_or("?".to_owned(), |p| format!("{p:.0}")),
            u.machine_interrupts.map_or("?".to_owned(), |p| format!(
                "{:.0}",
                p * self.conditions.cores.max(1) as f64
            )),
            u.machine_busy
                .map_or("?".to_owned(), |p| format!("{p:.0} %")),
            u.machine_iowait
                .map_or("?".to_owned(), |p| format!("{p:.0} %")),
            u.busiest_disk
                .as_ref()
                .map_or("?".to_owned(), |(d, p)| format!("{d} {p:.0} %")),
        );
        let _ = writeln!(out, "  saturated: {}", u.saturated());
        let _ = writeln!(
            out,
            "  peak RSS: {}",
            run.peak_rss
                .iter()
                .map(|(name, rss)| format!(
                    "{name} {}",
                    rss.map_or("?".to_owned(), |b| bytes(b as f64))
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let n = &run.notifications;
        let per_second = n.received as f64 / run.seconds.max(1e-9);
        let _ = writeln!(
            out,
            "  notifications: the SMTP sink received {} mails during the run ({per_second:.0}/s) for {} published; {} still in the outbox at its end{}",
            n.received,
            n.expected,
            n.pending.map_or("?".to_owned(), |p| p.to_string()),
            match n.pending {
                Some(p) if p > 0 && per_second > 0.0 =>
                    format!(" ({:.0} s more at that pace)", p as f64 / per_second),
                _ => String::new(),
            }
        );
        out
    }

    pub fn json(&self) -> serde_json::Value {
        let c = &self.conditions;
        serde_json::json!({
            "at": c.at,
            "cores": c.cores,
            "loadAverageBefore": c.load_before,
            "loadAverageAfter": c.load_after,
            "load": {
                "messages": c.messages,
                "pdfBytes": c.pdf_bytes,
                "publicationBytes": c.publication_bytes,
                "senders": c.senders,
                "citizens": c.citizens,
                "consentingShare": 0.9,
                "prefetch": c.prefetch,
                "batchSize": c.batch_size,
                "intakePrefetch": c.intake_prefetch,
            },
            "ceilingPerSecond": self.ceiling.round(),
            "pipelinePerSecond": self.runs.saturated.rate.round(),
            "ratio": (self.runs.saturated.rate / self.ceiling * 100.0).round() / 100.0,
            "saturated": self.run_json(&self.runs.saturated),
            "paced": self.runs.paced.iter().map(|r| self.run_json(r)).collect::<Vec<_>>(),
            "fairness": self.runs.fairness.as_ref().map(|r| self.run_json(r)),
            "replicated": self.runs.replicated.component(),
            "replicas": std::iter::once(&self.runs.saturated)
                .chain(&self.runs.replicas)
                .map(|r| self.run_json(r))
                .collect::<Vec<_>>(),
            "storage": self.storage.json(),
        })
    }

    fn run_json(&self, run: &RunFigures) -> serde_json::Value {
        let publishing = match run.publishing {
            Publishing::Burst => serde_json::json!({"kind": "burst"}),
            Publishing::Paced(rate) => {
                serde_json::json!({"kind": "paced", "perSecond": rate.round()})
            }
            Publishing::BatchThenSingle => serde_json::json!({"kind": "batch-then-single"}),
        };
        serde_json::json!({
            "label": run.label,
            "processes": run.shape.iter()
                .map(|(w, n)| (w.component().to_owned(), serde_json::json!(n)))
                .collect::<serde_json::Map<_, _>>(),
            "publishing": publishing,
            "messages": run.messages,
            "published": run.published,
            "noDigitalUser": run.no_digital_user,
            "seconds": round1(run.seconds),
            "perSecond": run.rate.round(),
            "ratio": (run.rate / self.ceiling * 100.0).round() / 100.0,
            "publishSeconds": round1(run.publish_seconds),
            "latency": run.latency.as_ref().map(Percentiles::json),
            "queues": run.depths.iter().map(|d| d.json()).collect::<Vec<_>>(),
            "slowestStage": run.slowest.map(Worker::component),
            "stages": run.stages.iter().map(|s| serde_json::json!({
                "stage": s.worker.component(),
                "replicas": s.replicas,
                "busyShare": (s.busy(run.seconds) * 100.0).round() / 100.0,
                "meanBatch": round1(s.mean_batch()),
                "batchesRetried": s.transient_failures,
            })).collect::<Vec<_>>(),
            "resources": run.usage.json(),
            "peakRssBytes": run.peak_rss.iter()
                .map(|(name, rss)| (name.clone(), serde_json::json!(rss)))
                .collect::<serde_json::Map<_, _>>(),
            "notifications": {
                "published": run.notifications.expected,
                "mailsDuringRun": run.notifications.received,
                "pendingAtEnd": run.notifications.pending,
            },
            "fairness": run.single.as_ref().map(|s| serde_json::json!({
                "sender": s.sender,
                "batchSender": s.batch_sender,
                "batch": s.batch,
                "batchPendingAtPublish": s.batch_pending,
                "latencyMs": millis(s.latency),
            })),
        })
    }
}

/// `850 ms`, `12.3 s`.
fn duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.0} ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// `12.3 MiB`.
fn bytes(b: f64) -> String {
    if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / 1024.0 / 1024.0)
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}
