//! Who may do what on the broker: one broker user per component, each with only the rights it
//! needs (docs/operations.md, "Broker users").
//!
//! RabbitMQ grants per virtual host three regular expressions over resource names: *configure*
//! (declare, delete), *write* (publish to an exchange, bind a queue) and *read* (consume a
//! queue). No component may configure: the topology is declared by `ebox registry load`, as the
//! broker's administrator. Nobody writes to the default exchange (`amq.default`): hand-offs go
//! through `ebox.internal`, the portal's changes through `ebox.portal`. Senders are not here:
//! each writes `ebox.publish` and reads `ebox.status.<sender>` (see the sender contract).
//!
//! `ebox broker permissions` prints these rights as `rabbitmqctl` commands;
//! `tests/e2e/broker_users.rs` runs the pipeline with them and shows each user refused what it
//! does not need.

use crate::topology::{
    CONSENT_CHECK_QUEUE, CONSENT_UPDATES_QUEUE, DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE,
    INTAKE_LANE_PREFIX, INTAKE_QUEUE, INTERNAL_EXCHANGE, NOTIFY_QUEUE, PORTAL_EXCHANGE,
    READ_RECEIPT_QUEUE, STATUS_CALLBACKS_QUEUE, STATUS_EXCHANGE, STORE_QUEUE,
};

/// One component's broker rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUser {
    /// The component, and the suggested user name's suffix (`ebox-<component>`).
    pub component: &'static str,
    /// Exchanges it publishes to.
    pub writes: &'static [&'static str],
    /// Queues it consumes.
    pub reads: &'static [&'static str],
    /// Families of queues it consumes, by the prefix of their names (intake: the senders' own
    /// lanes, `ebox.intake.<sender>`).
    pub read_families: &'static [&'static str],
    /// RabbitMQ user tags (`monitoring` lets KEDA read queue depths).
    pub tags: &'static str,
}

impl BrokerUser {
    /// The `configure` expression: nothing.
    pub fn configure(&self) -> String {
        NOTHING.to_owned()
    }

    /// The `write` expression: exactly the exchanges it publishes to.
    pub fn write(&self) -> String {
        exactly(self.writes)
    }

    /// The `read` expression: exactly the queues it consumes, and the families' members.
    pub fn read(&self) -> String {
        if self.read_families.is_empty() {
            return exactly(self.reads);
        }
        let mut alternatives: Vec<String> = self.reads.iter().map(|name| escape(name)).collect();
        alternatives.extend(
            self.read_families
                .iter()
                .map(|prefix| format!("{}.+", escape(prefix))),
        );
        format!("^({})$", alternatives.join("|"))
    }
}

/// Matches no resource name.
const NOTHING: &str = "^$";

/// An expression that matches exactly `names`.
fn exactly(names: &[&str]) -> String {
    if names.is_empty() {
        return NOTHING.to_owned();
    }
    let escaped: Vec<String> = names.iter().map(|name| escape(name)).collect();
    format!("^({})$", escaped.join("|"))
}

/// `name` with its dots escaped (our names have no other character special to a regular
/// expression).
fn escape(name: &str) -> String {
    name.replace('.', "\\.")
}

/// Every component that uses the broker, with what it needs. A worker process also
/// republishes what its own stages parked (same exchanges) and parks copies of what it gives
/// up on (`ebox.dead-letter`).
pub const BROKER_USERS: &[BrokerUser] = &[
    BrokerUser {
        component: "intake",
        writes: &[INTERNAL_EXCHANGE, STATUS_EXCHANGE, DEAD_LETTER_EXCHANGE],
        reads: &[INTAKE_QUEUE],
        read_families: &[INTAKE_LANE_PREFIX],
        tags: "",
    },
    BrokerUser {
        component: "consent-check",
        writes: &[INTERNAL_EXCHANGE, STATUS_EXCHANGE, DEAD_LETTER_EXCHANGE],
        reads: &[CONSENT_CHECK_QUEUE],
        read_families: &[],
        tags: "",
    },
    BrokerUser {
        component: "consent-updates",
        writes: &[DEAD_LETTER_EXCHANGE],
        reads: &[CONSENT_UPDATES_QUEUE],
        read_families: &[],
        tags: "",
    },
    BrokerUser {
        component: "store",
        writes: &[EVENTS_EXCHANGE, STATUS_EXCHANGE, DEAD_LETTER_EXCHANGE],
        reads: &[STORE_QUEUE],
        read_families: &[],
        tags: "",
    },
    BrokerUser {
        component: "notify",
        writes: &[DEAD_LETTER_EXCHANGE],
        // Its own queue, and every status event for the senders' status callbacks.
        reads: &[NOTIFY_QUEUE, STATUS_CALLBACKS_QUEUE],
        read_families: &[],
        tags: "",
    },
    BrokerUser {
        component: "read-receipt",
        writes: &[STATUS_EXCHANGE, DEAD_LETTER_EXCHANGE],
        reads: &[READ_RECEIPT_QUEUE],
        read_families: &[],
        tags: "",
    },
    BrokerUser {
        component: "api",
        writes: &[EVENTS_EXCHANGE],
        reads: &[],
        read_families: &[],
        tags: "",
    },
    BrokerUser {
        component: "portal",
        writes: &[PORTAL_EXCHANGE],
        reads: &[],
        read_families: &[],
        tags: "",
    },
    BrokerUser {
        component: "keda",
        writes: &[],
        reads: &[],
        read_families: &[],
        tags: "monitoring",
    },
];

/// The rights of `component`, if it is one.
pub fn of(component: &str) -> Option<&'static BrokerUser> {
    BROKER_USERS.iter().find(|user| user.component == component)
}

/// The `rabbitmqctl` commands that give each component's user (`<prefix><component>`) its
/// rights on `vhost`. Creating the users, with their passwords, is the operator's.
pub fn rabbitmqctl_commands(vhost: &str, prefix: &str) -> Vec<String> {
    let mut commands = Vec::new();
    for user in BROKER_USERS {
        let name = format!("{prefix}{}", user.component);
        commands.push(format!(
            "rabbitmqctl set_permissions -p '{vhost}' '{name}' '{}' '{}' '{}'",
            user.configure(),
            user.write(),
            user.read()
        ));
        commands.push(format!("rabbitmqctl set_user_tags '{name}' {}", user.tags));
    }
    commands
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expression_matches_exactly_its_names() {
        assert_eq!(exactly(&[]), "^$");
        assert_eq!(
            exactly(&["ebox.internal", "ebox.status"]),
            "^(ebox\\.internal|ebox\\.status)$"
        );
    }

    #[test]
    fn intake_reads_its_shared_lane_and_every_senders_lane_but_nothing_else() {
        let read = of("intake").expect("intake").read();
        assert_eq!(read, "^(ebox\\.intake|ebox\\.intake\\..+)$");
        let pattern = regex::Regex::new(&read).expect("a regular expression");
        for queue in [
            "ebox.intake",
            "ebox.intake.onem",
            &crate::topology::intake_lane("riziv"),
        ] {
            assert!(pattern.is_match(queue), "{queue}");
        }
        for queue in [
            "ebox.intake.",
            "ebox.intakes",
            "ebox.dead-letter.intake",
            "ebox.store",
        ] {
            assert!(!pattern.is_match(queue), "{queue}");
        }
    }

    #[test]
    fn nobody_configures_and_nobody_writes_the_default_exchange() {
        for user in BROKER_USERS {
            assert_eq!(user.configure(), "^$", "{}", user.component);
            assert!(
                !user
                    .writes
                    .iter()
                    .any(|w| w.is_empty() || *w == "amq.default"),
                "{}",
                user.component
            );
        }
    }

    #[test]
    fn only_the_stages_that_hand_on_may_write_the_internal_exchange() {
        let writers: Vec<&str> = BROKER_USERS
            .iter()
            .filter(|user| user.writes.contains(&INTERNAL_EXCHANGE))
            .map(|user| user.component)
            .collect();
        assert_eq!(writers, ["intake", "consent-check"]);
    }

    /// What `k8s/components/rabbitmq/users.yaml` should say of `user`: its User and its
    /// Permission, as JSON values of their fields.
    fn kubernetes_objects(user: &BrokerUser) -> [serde_json::Value; 2] {
        let name = format!("ebox-{}", user.component);
        let cluster = serde_json::json!({"name": "ebox-rabbitmq"});
        let tags: Vec<&str> = user.tags.split_whitespace().collect();
        [
            serde_json::json!({
                "apiVersion": "rabbitmq.com/v1beta1",
                "kind": "User",
                "metadata": {"name": name},
                "spec": {
                    "tags": tags,
                    "importCredentialsSecret": {"name": format!("ebox-broker-{}", user.component)},
                    "rabbitmqClusterReference": cluster,
                },
            }),
            serde_json::json!({
                "apiVersion": "rabbitmq.com/v1beta1",
                "kind": "Permission",
                "metadata": {"name": name},
                "spec": {
                    // The default vhost, as the topology and the policies.
                    "vhost": "/",
                    "userReference": {"name": name},
                    "permissions": {
                        "configure": user.configure(),
                        "write": user.write(),
                        "read": user.read(),
                    },
                    "rabbitmqClusterReference": cluster,
                },
            }),
        ]
    }

    /// `k8s/components/rabbitmq/users.yaml` gives each component of the table a User and the
    /// table's rights, and nothing else, so that a cluster run by the Topology Operator cannot
    /// drift from `ebox broker permissions`.
    #[test]
    fn the_kubernetes_users_are_the_table() {
        use serde::Deserialize as _;
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../k8s/components/rabbitmq/users.yaml"
        );
        let text = std::fs::read_to_string(path).expect("k8s/components/rabbitmq/users.yaml");
        let found: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(&text)
            .map(|document| serde_json::Value::deserialize(document).expect("YAML"))
            .filter(|object| !object.is_null())
            .collect();
        let table: Vec<serde_json::Value> =
            BROKER_USERS.iter().flat_map(kubernetes_objects).collect();
        let expected: Vec<String> = table
            .iter()
            .map(|object| serde_yaml_ng::to_string(object).expect("YAML"))
            .collect();
        let differs = |what: String| {
            panic!(
                "users.yaml differs from BROKER_USERS ({what}); it should hold, in this order:\n---\n{}",
                expected.join("---\n")
            )
        };
        for (found, table) in found.iter().zip(&table) {
            if found != table {
                differs(format!("{found} is not {table}"));
            }
        }
        if found.len() != table.len() {
            differs(format!("{} objects, not {}", found.len(), table.len()));
        }
    }
}
