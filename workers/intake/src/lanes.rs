//! Intake's lanes and the senders' limits (docs/operations.md, "Sender lanes and limits").
//!
//! Each sender publishes on its own lane (routing key `sender.<sender>`, queue
//! `ebox.intake.<sender>`), or on the lane shared by the previous contract release's senders
//! (routing key `message`). The driver takes the lanes in turn; before each batch is handled,
//! what it took from limited senders' own lanes is charged to them
//! ([`records::sender_limits::charge`]) and a sender over a limit has its lane wait: nothing is
//! refused for being over a limit, it is taken later.
//!
//! Every sender also has a bound on its messages in flight (accepted, no final status yet):
//! past it, its lane waits a moment ([`IN_FLIGHT_RECHECK`]) before intake takes more, so the
//! later stages' queues never hold a whole backlog of one sender in front of another's message.
//!
//! Two publications are refused, with a status the sender hears: one that came by another
//! sender's lane (`WRONG_LANE`: it would spend that sender's turns and limits), and one from a
//! sender with limits on the shared lane (`OWN_LANE_REQUIRED`: there its backlog would stand in
//! front of every other sender's, beyond its limits' reach). Withdrawals are never refused for
//! their lane: taking a document back must not wait.

use crate::Received;
use crate::validate::Rejection;
use domain::status::Code;
use queues::topology::{PUBLISH_ROUTING_KEY, intake_lane, lane_owner, lane_routing_key};
use queues::{Incoming, LaneSpec, LaneWait};
use records::sender_limits::{self, Charge, Limit};
use runtime::internal_events::{LaneWaitReason, LaneWaited};
use sqlx::PgPool;
use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Why a publication may not come by the lane it came by, if it may not.
pub(crate) fn refusal(received: &Received<'_>) -> Option<Rejection> {
    let key = received.incoming.routing_key;
    let own = lane_routing_key(&received.sender.id);
    match lane_owner(key) {
        Some(owner) if owner != received.sender.id => Some(Rejection::new(
            Code::WrongLane,
            format!("routing key {key:?} is another sender's lane; publish with {own:?}"),
        )),
        None if key == PUBLISH_ROUTING_KEY && received.sender.limited => Some(Rejection::new(
            Code::OwnLaneRequired,
            format!(
                "this sender has limits and publishes on its own lane: routing key {own:?}, not {key:?}"
            ),
        )),
        _ => None,
    }
}

/// How long a lane over its sender's bound on messages in flight waits before intake looks
/// again.
pub const IN_FLIGHT_RECHECK: Duration = Duration::from_millis(50);

/// The senders' lanes as last looked up, with which senders have limits (those whose
/// batches are charged), and the bound on each sender's messages in flight.
#[derive(Debug)]
pub struct SenderLanes {
    limited: Mutex<HashSet<String>>,
    in_flight_per_sender: i64,
}

impl Default for SenderLanes {
    fn default() -> Self {
        Self::new(256)
    }
}

impl SenderLanes {
    pub fn new(in_flight_per_sender: u32) -> Self {
        Self {
            limited: Mutex::new(HashSet::new()),
            in_flight_per_sender: i64::from(in_flight_per_sender),
        }
    }

    /// Every sender's lane, each limited one holding no more than a second's worth.
    pub async fn specs(&self, pool: &PgPool) -> anyhow::Result<Vec<LaneSpec>> {
        let lanes = sender_limits::lanes(pool).await?;
        let limited = lanes
            .iter()
            .filter(|lane| lane.limited)
            .map(|lane| lane.sender_id.clone())
            .collect();
        *self.limited.lock().expect("not poisoned") = limited;
        Ok(lanes
            .into_iter()
            .map(|lane| LaneSpec {
                queue: intake_lane(&lane.sender_id),
                max_prefetch: lane
                    .messages_per_second
                    .map(|rate| u16::try_from(rate).unwrap_or(u16::MAX)),
                waits_until: lane.waits_until.map(Into::into),
            })
            .collect())
    }

    /// Says which lanes of `batch` wait: those whose sender has too many messages in flight
    /// (looked up for the senders of the batch's own-lane publications), and those of limited
    /// senders over a limit once what the batch took from their own lanes is charged — first
    /// deliveries only (a redelivery was charged when it first came), and only a sender's own
    /// publications (another's are refused as `WRONG_LANE`). At most two statements; none for
    /// a batch from the shared lane only.
    pub async fn admit(
        &self,
        pool: &PgPool,
        batch: &[Incoming<'_>],
    ) -> anyhow::Result<Vec<LaneWait>> {
        let owners = own_lane_senders(batch);
        let full: Vec<String> = sender_limits::in_flight(pool, &owners)
            .await?
            .into_iter()
            .filter(|(_, in_flight)| *in_flight >= self.in_flight_per_sender)
            .map(|(sender_id, _)| sender_id)
            .collect();
        // Their publications in the batch are put back, not handled: nor charged.
        let mut waits: Vec<LaneWait> = full
            .iter()
            .map(|sender_id| {
                LaneWaited {
                    sender: sender_id,
                    reason: LaneWaitReason::InFlight,
                }
                .emit();
                LaneWait {
                    queue: intake_lane(sender_id),
                    until: SystemTime::now() + IN_FLIGHT_RECHECK,
                    defer: true,
                }
            })
            .collect();
        let charges: Vec<Charge> = self
            .charges(batch)
            .into_iter()
            .filter(|charge| !full.contains(&charge.sender_id))
            .collect();
        if !charges.is_empty() {
            waits.extend(
                sender_limits::charge(pool, &charges)
                    .await?
                    .into_iter()
                    .map(|wait| {
                        LaneWaited {
                            sender: &wait.sender_id,
                            reason: match wait.limit {
                                Limit::MessagesPerSecond => LaneWaitReason::MessagesPerSecond,
                                Limit::BytesPerDay => LaneWaitReason::BytesPerDay,
                            },
                        }
                        .emit();
                        LaneWait {
                            queue: intake_lane(&wait.sender_id),
                            until: wait.until.into(),
                            defer: false,
                        }
                    }),
            );
        }
        Ok(waits)
    }

    fn charges(&self, batch: &[Incoming<'_>]) -> Vec<Charge> {
        let limited = self.limited.lock().expect("not poisoned");
        let mut per_sender: BTreeMap<&str, (i32, i64)> = BTreeMap::new();
        for incoming in batch.iter().filter(|incoming| !incoming.redelivered) {
            let Some(owner) = lane_owner(incoming.routing_key) else {
                continue;
            };
            let user = incoming.properties.user_id().as_ref().map(|u| u.as_str());
            if user != Some(owner) || !limited.contains(owner) {
                continue;
            }
            let used = per_sender.entry(owner).or_default();
            used.0 += 1;
            used.1 += i64::try_from(incoming.body.len()).unwrap_or(i64::MAX);
        }
        per_sender
            .into_iter()
            .map(|(sender_id, (messages, bytes))| Charge {
                sender_id: sender_id.to_owned(),
                messages,
                bytes,
            })
            .collect()
    }
}

/// The senders whose own lanes `batch` came from (their own publications only).
fn own_lane_senders<'a>(batch: &[Incoming<'a>]) -> Vec<&'a str> {
    let mut senders: Vec<&str> = batch
        .iter()
        .filter_map(|incoming| {
            let owner = lane_owner(incoming.routing_key)?;
            let user = incoming.properties.user_id().as_ref().map(|u| u.as_str());
            (user == Some(owner)).then_some(owner)
        })
        .collect();
    senders.sort_unstable();
    senders.dedup();
    senders
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::BasicProperties;

    fn limited(senders: &[&str]) -> SenderLanes {
        let lanes = SenderLanes::default();
        *lanes.limited.lock().expect("not poisoned") =
            senders.iter().map(|s| s.to_string()).collect();
        lanes
    }

    fn incoming<'a>(
        properties: &'a BasicProperties,
        body: &'a [u8],
        routing_key: &'a str,
        redelivered: bool,
    ) -> Incoming<'a> {
        Incoming {
            properties,
            body,
            redelivered,
            routing_key,
        }
    }

    #[test]
    fn a_batch_is_charged_per_limited_sender_for_its_own_first_deliveries_only() {
        let onem = BasicProperties::default().with_user_id("onem".into());
        let riziv = BasicProperties::default().with_user_id("riziv".into());
        let batch = [
            incoming(&onem, b"0123456789", "sender.onem", false),
            incoming(&onem, b"01234", "sender.onem", false),
            incoming(&onem, b"redelivered", "sender.onem", true),
            incoming(&onem, b"shared", "message", false),
            incoming(&riziv, b"in onem's lane", "sender.onem", false),
            incoming(&riziv, b"unlimited", "sender.riziv", false),
        ];
        assert_eq!(
            limited(&["onem"]).charges(&batch),
            [Charge {
                sender_id: "onem".into(),
                messages: 2,
                bytes: 15,
            }]
        );
        assert!(limited(&[]).charges(&batch).is_empty(), "nobody limited");
        assert_eq!(own_lane_senders(&batch), ["onem", "riziv"]);
    }
}
