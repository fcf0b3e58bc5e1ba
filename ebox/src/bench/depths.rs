//! Queue depths during a run: every quarter second, the ready messages of each stage's queue
//! and of each sender's status queue (a passive declare), kept as a mean and a peak. The
//! slowest stage is found from them.

use super::fleet::queue_of;
use crate::workers::Worker;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Clone)]
pub struct Depth {
    pub queue: String,
    pub samples: usize,
    pub sum: u64,
    pub peak: u32,
}

impl Depth {
    pub fn mean(&self) -> f64 {
        self.sum as f64 / self.samples.max(1) as f64
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "queue": self.queue,
            "meanReady": super::resources::round1(self.mean()),
            "peakReady": self.peak,
        })
    }
}

/// Samples until stopped.
pub struct Sampler {
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<Vec<Depth>>>,
}

impl Sampler {
    pub async fn start(amqp_url: &str, queues: Vec<String>) -> anyhow::Result<Self> {
        let connection = queues::driver::connect(amqp_url, "ebox bench depths").await?;
        let channel = connection.create_channel().await?;
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut depths: Vec<Depth> = queues
                    .into_iter()
                    .map(|queue| Depth {
                        queue,
                        samples: 0,
                        sum: 0,
                        peak: 0,
                    })
                    .collect();
                while !stop.is_cancelled() {
                    for depth in &mut depths {
                        let queue = channel
                            .queue_declare(
                                depth.queue.as_str().into(),
                                QueueDeclareOptions {
                                    passive: true,
                                    ..Default::default()
                                },
                                FieldTable::default(),
                            )
                            .await?;
                        depth.samples += 1;
                        depth.sum += u64::from(queue.message_count());
                        depth.peak = depth.peak.max(queue.message_count());
                    }
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::time::sleep(EVERY) => {}
                    }
                }
                let _ = connection.close(200, "done".into()).await;
                Ok(depths)
            }
        });
        Ok(Self { stop, task })
    }

    pub async fn stop(mut self) -> anyhow::Result<Vec<Depth>> {
        self.stop.cancel();
        (&mut self.task).await?
    }
}

impl Drop for Sampler {
    /// A run that failed stops its sampler too.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The slowest stage of those a sender's message must pass (intake, consent-check, store):
/// the one furthest down the pipeline whose queue held a backlog (a mean of more than 1 % of
/// the run's messages, and more than 10), since every queue after the slowest stage drains as
/// fast as it fills; the one with the deepest queue when none did.
pub fn slowest(depths: &[Depth], messages: usize) -> Option<Worker> {
    let critical = [Worker::Intake, Worker::ConsentCheck, Worker::Store];
    let mean = |w: Worker| {
        depths
            .iter()
            .find(|d| d.queue == queue_of(w))
            .map_or(0.0, Depth::mean)
    };
    let backlog = (messages as f64 / 100.0).max(10.0);
    critical
        .iter()
        .rev()
        .find(|&&w| mean(w) > backlog)
        .or_else(|| {
            critical
                .iter()
                .max_by(|&&a, &&b| mean(a).total_cmp(&mean(b)))
        })
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth(queue: &str, mean: u64) -> Depth {
        Depth {
            queue: queue.to_owned(),
            samples: 1,
            sum: mean,
            peak: 0,
        }
    }

    #[test]
    fn the_slowest_stage_is_the_last_with_a_backlog() {
        let depths = [
            depth("ebox.intake", 5000),
            depth("ebox.consent-check", 800),
            depth("ebox.store", 3),
        ];
        assert_eq!(slowest(&depths, 20_000), Some(Worker::ConsentCheck));
    }

    #[test]
    fn without_a_backlog_the_deepest_queue_names_it() {
        let depths = [depth("ebox.intake", 2), depth("ebox.store", 5)];
        assert_eq!(slowest(&depths, 20_000), Some(Worker::Store));
    }
}
