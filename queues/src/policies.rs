//! The broker policies of the service: every queue setting that may change over the life of a
//! deployment — dead-lettering, the delivery limit, lengths and ages — set by policy rather
//! than by the arguments a queue is declared with (docs/operations.md, "Broker topology").
//!
//! A queue's arguments are fixed when it is declared: declaring it again with other arguments
//! fails with 406 PRECONDITION_FAILED. So [`crate::topology`] declares each queue with its type
//! alone, and the knobs live here, in one table that every environment applies to its vhost:
//! `ebox broker policies` prints it as `rabbitmqctl set_policy` commands (the demo, the
//! benchmark and the fault matrix run them), the end-to-end tests put it through the management
//! API, and `k8s/components/rabbitmq/policies.yaml` holds the same policies for the Messaging
//! Topology Operator (a unit test below keeps the two equal). Changing a policy takes effect on
//! the live queues, without redeclaring anything.
//!
//! RabbitMQ applies to a queue only the matching policy of highest priority — policies do not
//! merge — so each family of queues has one policy with everything it needs, leader placement
//! included. An operator's own override must repeat the whole definition, at a higher priority.

use crate::topology::{
    DEAD_LETTER_EXCHANGE, DEAD_LETTER_TTL_MS, DELIVERY_LIMIT, STAGE_QUEUES, dead_letter_queue,
    intake_lane, status_queue,
};
use serde_json::{Value, json};

/// The stage queues' policy (dead-lettering, the delivery limit).
pub const STAGES: &str = "ebox-stages";
/// The senders' own intake lanes' policy: the stage queues' definition.
pub const LANES: &str = "ebox-intake-lanes";
/// The dead-letter queues' policy (bounded in length and age).
pub const DEAD_LETTERS: &str = "ebox-dead-letters";
/// The senders' status queues' policy (bounded in length and age).
pub const STATUS: &str = "ebox-status";
/// Every other `ebox.*` queue: leader placement only.
pub const LEADERS: &str = "ebox-quorum-leaders";

/// The priority of the three families' policies: above [`LEADERS`] (which also matches their
/// queues), below any override an operator adds.
pub const PRIORITY: i64 = 10;

/// A status queue keeps at most this many events. A sender's annual run (a million messages,
/// published over a few days) gives two events per message within minutes (`accepted`, then
/// `published`, `no-digital-user` or `failed`): a sender that reads while it publishes never
/// comes near; one that stopped reading loses its oldest events once a day or more of a large
/// run waits unread.
pub const STATUS_MAX_LENGTH: i64 = 1_000_000;

/// A status queue keeps at most this many bytes of events (1 GiB): about a million events (a
/// `published` one carries its proof of deposit, some 1.5 KiB; the others a few hundred bytes),
/// and a small share of a broker node's disk (20 GiB in `k8s/components/rabbitmq`, every
/// quorum queue on every node), so that no sender's unread queue can fill the broker.
pub const STATUS_MAX_LENGTH_BYTES: i64 = 1 << 30;

/// How long a status event waits for its sender (14 days): past that, a sender catches up with
/// `POST /searchMessageStatus` or by publishing the reference again (docs/sender-contract.md).
/// A sender gone for good does not hold its queue's bytes for ever.
pub const STATUS_TTL_MS: i64 = 14 * 24 * 3600 * 1000;

/// A dead-letter queue keeps at most this many parked messages: a whole annual run that one
/// bug set aside (hand-offs and events are a few hundred bytes each) can still be replayed.
pub const DEAD_LETTER_MAX_LENGTH: i64 = 1_000_000;

/// A dead-letter queue keeps at most this many bytes (1 GiB): intake's parked publications
/// carry their documents (up to `EBOX_MAX_MESSAGE_BYTES` each), and six such queues must still
/// fit a broker node's disk beside the status queues.
pub const DEAD_LETTER_MAX_LENGTH_BYTES: i64 = 1 << 30;

/// The bounds the policies set. [`Bounds::SERVICE`] in every deployment; a test makes them
/// small to watch one at work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounds {
    /// Deliveries after which the broker dead-letters a message (a crash loop). The driver
    /// gives up one delivery before [`DELIVERY_LIMIT`], with a final status and an audit
    /// record: a lower limit here makes the broker dead-letter without either.
    pub delivery_limit: i64,
    pub dead_letter_max_length: i64,
    pub dead_letter_max_length_bytes: i64,
    pub dead_letter_ttl_ms: i64,
    pub status_max_length: i64,
    pub status_max_length_bytes: i64,
    pub status_ttl_ms: i64,
}

impl Bounds {
    /// What every deployment runs with.
    pub const SERVICE: Bounds = Bounds {
        delivery_limit: DELIVERY_LIMIT,
        dead_letter_max_length: DEAD_LETTER_MAX_LENGTH,
        dead_letter_max_length_bytes: DEAD_LETTER_MAX_LENGTH_BYTES,
        dead_letter_ttl_ms: DEAD_LETTER_TTL_MS,
        status_max_length: STATUS_MAX_LENGTH,
        status_max_length_bytes: STATUS_MAX_LENGTH_BYTES,
        status_ttl_ms: STATUS_TTL_MS,
    };
}

impl Default for Bounds {
    fn default() -> Self {
        Self::SERVICE
    }
}

/// One broker policy, as RabbitMQ takes it (`rabbitmqctl set_policy`, the management API's
/// `PUT /api/policies/{vhost}/{name}`, the Topology Operator's `Policy`).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: &'static str,
    /// An anchored regular expression over queue names.
    pub pattern: String,
    /// Always `queues` (quorum queues all; RabbitMQ 3.10 has no `quorum_queues`).
    pub apply_to: &'static str,
    pub priority: i64,
    /// The policy's keys and values (a JSON object).
    pub definition: Value,
}

impl Policy {
    /// The body of the management API's `PUT /api/policies/{vhost}/{name}`.
    pub fn management_body(&self) -> Value {
        json!({
            "pattern": self.pattern,
            "apply-to": self.apply_to,
            "priority": self.priority,
            "definition": self.definition,
        })
    }

    /// The `rabbitmqctl` command that sets this policy on `vhost`.
    pub fn rabbitmqctl(&self, vhost: &str) -> String {
        format!(
            "rabbitmqctl set_policy -p '{vhost}' --apply-to {} --priority {} '{}' '{}' '{}'",
            self.apply_to, self.priority, self.name, self.pattern, self.definition
        )
    }
}

/// Where the leaders of new quorum queues go: the node that leads the fewest, rather than the
/// node that declared the queue (which would put them all on one node, and move them all when
/// it fails).
const LEADER_LOCATOR: &str = "balanced";

/// The service's policies, with the service's bounds.
pub fn policies() -> Vec<Policy> {
    with_bounds(&Bounds::SERVICE)
}

/// The service's policies, with `bounds`.
pub fn with_bounds(bounds: &Bounds) -> Vec<Policy> {
    let stage_queues: Vec<&str> = STAGE_QUEUES.iter().map(|(_, queue, _)| *queue).collect();
    let dead_letter_queues: Vec<String> = STAGE_QUEUES
        .iter()
        .map(|(stage, _, _)| dead_letter_queue(*stage))
        .collect();
    let stage = json!({
        "dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        // Nothing a stage gives up on is lost between its queue and the dead-letter
        // queue. This strategy needs `reject-publish`: were a length set, a full stage
        // queue would refuse its publishers (who park and publish again) rather than
        // drop its oldest. None is set: a stage queue holds what senders publish.
        "dead-letter-strategy": "at-least-once",
        "overflow": "reject-publish",
        "delivery-limit": bounds.delivery_limit,
        "queue-leader-locator": LEADER_LOCATOR,
    });
    vec![
        Policy {
            name: STAGES,
            pattern: exactly(&stage_queues),
            apply_to: "queues",
            priority: PRIORITY,
            definition: stage.clone(),
        },
        Policy {
            name: LANES,
            pattern: format!("^{}.+$", regex_escape(&intake_lane(""))),
            apply_to: "queues",
            priority: PRIORITY,
            definition: stage,
        },
        Policy {
            name: DEAD_LETTERS,
            pattern: exactly(
                &dead_letter_queues
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
            ),
            apply_to: "queues",
            priority: PRIORITY,
            definition: json!({
                // A parked copy may hold a document, which must not outlive what the agreement
                // allows (C.10): an operator replays or purges well before.
                "message-ttl": bounds.dead_letter_ttl_ms,
                "max-length": bounds.dead_letter_max_length,
                "max-length-bytes": bounds.dead_letter_max_length_bytes,
                // Full, a dead-letter queue drops its oldest: each was audited and, when its
                // sender had to be told, answered `failed`; refusing instead would leave the
                // stages' at-least-once dead-lettering retrying in the stage queues for ever.
                "overflow": "drop-head",
                "queue-leader-locator": LEADER_LOCATOR,
            }),
        },
        Policy {
            name: STATUS,
            pattern: format!("^{}.+$", regex_escape(&status_queue(""))),
            apply_to: "queues",
            priority: PRIORITY,
            definition: json!({
                "message-ttl": bounds.status_ttl_ms,
                "max-length": bounds.status_max_length,
                "max-length-bytes": bounds.status_max_length_bytes,
                // A sender that does not read loses its oldest events first, never the newest,
                // and the stages are never refused (nothing piles up in `parked_publishes`).
                "overflow": "drop-head",
                "queue-leader-locator": LEADER_LOCATOR,
            }),
        },
        Policy {
            name: LEADERS,
            pattern: "^ebox\\.".to_owned(),
            apply_to: "queues",
            priority: 0,
            definition: json!({"queue-leader-locator": LEADER_LOCATOR}),
        },
    ]
}

/// The `rabbitmqctl` commands that set every policy on `vhost`, as the broker's administrator.
pub fn rabbitmqctl_commands(vhost: &str) -> Vec<String> {
    policies()
        .iter()
        .map(|policy| policy.rabbitmqctl(vhost))
        .collect()
}

/// An expression that matches exactly `names`.
fn exactly(names: &[&str]) -> String {
    let escaped: Vec<String> = names.iter().map(|name| regex_escape(name)).collect();
    format!("^({})$", escaped.join("|"))
}

/// `name` with the dots escaped (queue names have no other character special to a regular
/// expression).
fn regex_escape(name: &str) -> String {
    name.replace('.', "\\.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize as _;

    /// Which of `policies` RabbitMQ applies to `queue`: the matching one of highest priority.
    fn applied<'a>(policies: &'a [Policy], queue: &str) -> Option<&'a Policy> {
        policies
            .iter()
            .filter(|policy| matches(&policy.pattern, queue))
            .max_by_key(|policy| policy.priority)
    }

    /// Our patterns' dialect: `^` then a literal prefix, then `(a|b)$`, `.+$` or nothing.
    fn matches(pattern: &str, queue: &str) -> bool {
        let unescape = |text: &str| text.replace("\\.", ".");
        let body = pattern.strip_prefix('^').expect("anchored");
        if let Some(alternatives) = body
            .strip_prefix('(')
            .and_then(|rest| rest.strip_suffix(")$"))
        {
            return alternatives.split('|').any(|name| unescape(name) == queue);
        }
        if let Some(prefix) = body.strip_suffix(".+$") {
            let prefix = unescape(prefix);
            return queue.starts_with(&prefix) && queue.len() > prefix.len();
        }
        queue.starts_with(&unescape(body))
    }

    #[test]
    fn each_family_of_queues_gets_its_own_policy_with_leader_placement() {
        let policies = policies();
        for (stage, queue, _) in STAGE_QUEUES {
            assert_eq!(applied(&policies, queue).map(|p| p.name), Some(STAGES));
            assert_eq!(
                applied(&policies, &dead_letter_queue(stage)).map(|p| p.name),
                Some(DEAD_LETTERS)
            );
        }
        assert_eq!(
            applied(&policies, &status_queue("onem")).map(|p| p.name),
            Some(STATUS)
        );
        assert_eq!(
            applied(&policies, &intake_lane("onem")).map(|p| p.name),
            Some(LANES)
        );
        assert_eq!(
            policies
                .iter()
                .find(|p| p.name == LANES)
                .map(|p| &p.definition),
            policies
                .iter()
                .find(|p| p.name == STAGES)
                .map(|p| &p.definition),
            "a lane is a stage queue"
        );
        assert_eq!(
            applied(&policies, "ebox.dead-letter").map(|p| p.name),
            Some(LEADERS),
            "the single dead-letter queue of an earlier release"
        );
        for policy in &policies {
            assert_eq!(
                policy.definition["queue-leader-locator"], "balanced",
                "{}",
                policy.name
            );
            assert_eq!(policy.apply_to, "queues");
        }
    }

    #[test]
    fn stage_queues_dead_letter_at_least_once_and_bounded_queues_drop_their_oldest() {
        let policies = policies();
        let definition = |name: &str| {
            policies
                .iter()
                .find(|p| p.name == name)
                .map(|p| p.definition.clone())
                .expect("a policy")
        };
        let stages = definition(STAGES);
        assert_eq!(stages["dead-letter-exchange"], DEAD_LETTER_EXCHANGE);
        assert_eq!(stages["dead-letter-strategy"], "at-least-once");
        assert_eq!(
            stages["overflow"], "reject-publish",
            "at-least-once needs it"
        );
        assert_eq!(stages["delivery-limit"], DELIVERY_LIMIT);
        for name in [DEAD_LETTERS, STATUS] {
            let bounded = definition(name);
            assert_eq!(bounded["overflow"], "drop-head", "{name}");
            for key in ["max-length", "max-length-bytes", "message-ttl"] {
                assert!(bounded[key].as_i64().is_some_and(|n| n > 0), "{name} {key}");
            }
        }
        assert_eq!(definition(DEAD_LETTERS)["message-ttl"], DEAD_LETTER_TTL_MS);
    }

    #[test]
    fn a_command_sets_one_policy_with_its_definition_as_json() {
        let commands = rabbitmqctl_commands("/");
        assert_eq!(commands.len(), policies().len());
        assert!(
            commands[0].starts_with(
                "rabbitmqctl set_policy -p '/' --apply-to queues --priority 10 'ebox-stages' \
                 '^(ebox\\.intake|ebox\\.consent-check|"
            ),
            "{}",
            commands[0]
        );
        assert!(
            commands.iter().all(|c| c.matches('\'').count() == 8),
            "{commands:?}"
        );
    }

    /// `k8s/components/rabbitmq/policies.yaml` says the same as the table, so that a cluster
    /// run by the Topology Operator cannot drift from the other environments.
    #[test]
    fn the_kubernetes_policies_are_the_table() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../k8s/components/rabbitmq/policies.yaml"
        );
        let text = std::fs::read_to_string(path).expect("k8s/components/rabbitmq/policies.yaml");
        let mut found = Vec::new();
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let object = Value::deserialize(document).expect("YAML");
            if object.is_null() {
                continue;
            }
            assert_eq!(object["kind"], "Policy", "{object}");
            let spec = &object["spec"];
            assert_eq!(object["metadata"]["name"], spec["name"], "{object}");
            assert!(
                spec.get("vhost").is_none(),
                "the default vhost, as the other objects"
            );
            found.push((
                spec["name"].as_str().unwrap_or_default().to_owned(),
                spec["pattern"].as_str().unwrap_or_default().to_owned(),
                spec["applyTo"].as_str().unwrap_or_default().to_owned(),
                spec["priority"].as_i64().unwrap_or(0),
                spec["definition"].clone(),
            ));
        }
        let table: Vec<_> = policies()
            .into_iter()
            .map(|p| {
                (
                    p.name.to_owned(),
                    p.pattern,
                    p.apply_to.to_owned(),
                    p.priority,
                    p.definition,
                )
            })
            .collect();
        assert_eq!(found, table);
    }
}
