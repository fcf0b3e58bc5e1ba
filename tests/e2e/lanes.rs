//! Sender lanes and limits (docs/operations.md, "Sender lanes and limits"): each sender has its
//! own intake lane, so another sender's backlog never stands in front of its message; a sender
//! over a limit waits in its own lane (nothing refused, nothing lost), and a limit raised opens
//! it again; a publication on another sender's lane, or a limited sender's on the shared lane,
//! is refused with a code the sender hears.

use crate::helpers::*;
use domain::status::Status;
use ebox::demo::{SAMPLE_SSIN, SenderClient, sample_v2};
use intake::contract::TYPE_V2;
use queues::topology::{PUBLISH_ROUTING_KEY, intake_lane, lane_routing_key};
use std::time::Duration;

fn body() -> Vec<u8> {
    serde_json::to_vec(&sample_v2(SAMPLE_SSIN, MESSAGE_TYPE)).expect("JSON")
}

async fn count(app: &TestApp, sender: &str, status: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM messages WHERE sender_id = $1 AND status = $2")
        .bind(sender)
        .bind(status)
        .fetch_one(&app.pool)
        .await
        .expect("count")
}

async fn publish_all(sender: &SenderClient, prefix: &str, n: usize, body: &[u8]) {
    for i in 1..=n {
        sender
            .publish(
                sender.properties(&format!("{prefix}-{i:02}"), TYPE_V2),
                body,
            )
            .await
            .expect("the broker takes the publication");
    }
}

/// A test app with `options` and a consenting citizen, and a second sender, `inss-<test id>`
/// (`extra` added to its registry entry), whose lane intake consumes.
async fn with_big_sender(options: Options, extra: &str) -> (TestApp, String, SenderClient) {
    let app = spawn_app_with(options).await;
    app.grant_consent(SAMPLE_SSIN).await;
    let big_id = format!("inss-{}", app.id);
    let big = app.second_sender(&big_id, extra).await;
    until_consumed(&app, &big_id).await;
    (app, big_id, big)
}

/// Waits until intake consumes `sender`'s lane (a sender registered while the workers run is
/// found at their next look at the registry).
async fn until_consumed(app: &TestApp, sender: &str) {
    eventually("intake to consume the new sender's lane", || async {
        queue_info(&app.vhost, &intake_lane(sender)).await["consumers"]
            .as_i64()
            .unwrap_or(0)
            > 0
    })
    .await;
}

/// Waits, up to `within`, until all `n` of `sender`'s messages are published, and checks that
/// none was refused: delayed, not dropped.
async fn until_all_published(app: &TestApp, sender: &str, n: usize, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while count(app, sender, "published").await < n as i64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sender}'s {n} messages published within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(count(app, sender, "rejected").await, 0, "nothing refused");
}

/// `ebox_intake_lane_waits_total{reason}` of this process (shared by the tests that run in it,
/// so only ever compared with zero).
fn waits_counted(reason: &str) -> u64 {
    runtime::metrics::METRICS
        .intake_lane_waits_total
        .with_label_values(&[reason])
        .get()
}

/// Messages ready in a queue, as the broker counts them now (the management API's figures lag
/// by seconds).
async fn depth(app: &TestApp, queue: &str) -> i64 {
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let declared = app
        .service_channel()
        .await
        .queue_declare(queue.into(), passive, lapin::types::FieldTable::default())
        .await
        .expect("the lane exists");
    i64::from(declared.message_count())
}

/// The day's bytes: a sender that reached them waits in its lane for the next day while
/// another sender's message goes through; what waits is neither refused nor lost, and is taken
/// as soon as the limit is raised.
#[tokio::test]
async fn a_sender_over_its_days_bytes_waits_in_its_own_lane_while_the_others_go_on() {
    const BACKLOG: usize = 10;
    let body = body();
    let size = body.len() as u64;
    let limit = |bytes: u64| format!("    limits: {{bytesPerDay: {bytes}}}\n");
    // Enough for two and a half publications.
    let (app, big_id, mut big) = with_big_sender(Options::pipeline(), &limit(size * 5 / 2)).await;

    publish_all(&big, "ref-batch", BACKLOG, &body).await;
    let mut small = app.sender().await;
    let id = deliver(
        &mut small,
        "ref-small",
        sample_v2(SAMPLE_SSIN, MESSAGE_TYPE),
    )
    .await;
    assert!(!id.to_string().is_empty());

    // The big sender's lane closes once its bytes reached the limit: what it had is handled
    // (three at least), the rest waits in its lane, untouched.
    eventually("the big sender's lane to stop", || async {
        let taken = count(&app, &big_id, "published").await;
        taken >= 3 && depth(&app, &intake_lane(&big_id)).await == BACKLOG as i64 - taken
    })
    .await;
    let taken = count(&app, &big_id, "published").await;
    assert!(
        taken < BACKLOG as i64,
        "the lane waited: {taken} of {BACKLOG} taken"
    );
    let used: i64 = sqlx::query_scalar("SELECT bytes FROM sender_usage WHERE sender_id = $1")
        .bind(&big_id)
        .fetch_one(&app.pool)
        .await
        .expect("the big sender's usage");
    assert!(used >= (size * 5 / 2) as i64, "{used} bytes charged");
    assert!(waits_counted("bytes_per_day") > 0, "the wait is counted");
    for _ in 0..taken * 2 {
        let event = big.next_status(WAIT).await.expect("a status");
        assert!(
            matches!(event.status, Status::Accepted | Status::Published),
            "nothing refused for a limit: {event:?}"
        );
    }

    // Barrier: the small sender goes on while the big one waits.
    let after = deliver(
        &mut small,
        "ref-small-2",
        sample_v2(SAMPLE_SSIN, MESSAGE_TYPE),
    )
    .await;
    assert!(!after.to_string().is_empty());
    assert_eq!(
        count(&app, &big_id, "published").await,
        taken,
        "still waiting"
    );

    // A raised limit opens the lane again: every waiting publication is taken.
    app.second_sender(&big_id, &limit(size * 1000)).await;
    until_all_published(&app, &big_id, BACKLOG, WAIT).await;
    assert_eq!(depth(&app, &intake_lane(&big_id)).await, 0);
}

/// The pace: a sender limited to two publications a second is taken at that pace, and another
/// sender's message, published after its whole backlog, is published before that backlog is.
#[tokio::test]
async fn a_sender_over_its_pace_is_taken_at_its_pace_and_does_not_hold_up_the_others() {
    const BACKLOG: usize = 24;
    let body = body();
    let (app, big_id, big) =
        with_big_sender(Options::pipeline(), "    limits: {messagesPerSecond: 2}\n").await;

    publish_all(&big, "ref-paced", BACKLOG, &body).await;
    let mut small = app.sender().await;
    deliver(
        &mut small,
        "ref-small",
        sample_v2(SAMPLE_SSIN, MESSAGE_TYPE),
    )
    .await;
    // Twenty-four at two a second (a second's worth at once) take eleven seconds at least.
    let published = count(&app, &big_id, "published").await;
    assert!(
        published < BACKLOG as i64,
        "the small sender's message went first: {published} of {BACKLOG} before it"
    );
    let pace: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT paced_until FROM sender_usage WHERE sender_id = $1")
            .bind(&big_id)
            .fetch_optional(&app.pool)
            .await
            .expect("the big sender's usage");
    assert!(pace.is_some(), "the big sender's batches were charged");

    // Delayed, not dropped: the whole backlog is published at its pace.
    until_all_published(&app, &big_id, BACKLOG, WAIT * 2).await;
}

/// A publication on another sender's lane is refused (`WRONG_LANE`), a limited sender's on the
/// shared lane too (`OWN_LANE_REQUIRED`); an unlimited sender still publishes on the shared
/// lane (the previous contract release).
#[tokio::test]
async fn lanes_are_their_senders_own_and_a_limited_sender_keeps_to_its_own() {
    let body = body();
    let (app, limited_id, limited) = with_big_sender(
        Options::pipeline(),
        "    limits: {messagesPerSecond: 100}\n",
    )
    .await;

    let mut intruder = app
        .sender()
        .await
        .with_routing_key(lane_routing_key(&limited_id));
    let refused = publish_and_wait(&mut intruder, "ref-intruder", TYPE_V2, &body).await;
    assert_eq!(
        (refused.status, refused.code.as_str()),
        (Status::Rejected, "WRONG_LANE"),
        "{refused:?}"
    );
    assert!(
        refused.message.contains(&lane_routing_key(&app.sender_id)),
        "{}",
        refused.message
    );

    let mut limited = limited.with_routing_key(PUBLISH_ROUTING_KEY);
    let refused = publish_and_wait(&mut limited, "ref-shared", TYPE_V2, &body).await;
    assert_eq!(
        (refused.status, refused.code.as_str()),
        (Status::Rejected, "OWN_LANE_REQUIRED"),
        "{refused:?}"
    );
    let audited = app.audit_actions("ref-shared").await;
    assert!(
        audited
            .iter()
            .any(|(action, code)| action == "rejected"
                && code.as_deref() == Some("OWN_LANE_REQUIRED")),
        "{audited:?}"
    );

    intruder.close().await;
    let mut previous_release = app.sender().await.with_routing_key(PUBLISH_ROUTING_KEY);
    let accepted = publish_and_wait(&mut previous_release, "ref-shared-ok", TYPE_V2, &body).await;
    assert_eq!(accepted.status, Status::Accepted, "{accepted:?}");
}

/// Messages in flight: with intake alone running nothing leaves `accepted`, so a sender stops
/// being taken at its bound (`EBOX_INTAKE_IN_FLIGHT_PER_SENDER`) while another sender's
/// message still is; the rest waits in its lane, refused nothing, and is taken once the
/// later stages bring the messages in flight to their final status.
#[tokio::test]
async fn a_sender_at_its_bound_of_messages_in_flight_waits_in_its_lane_while_the_others_go_on() {
    const BOUND: i64 = 3;
    const BACKLOG: usize = 10;
    let body = body();
    let bound = (
        "EBOX_INTAKE_IN_FLIGHT_PER_SENDER".to_owned(),
        BOUND.to_string(),
    );
    let options = Options {
        vars: vec![bound],
        ..Options::default()
    };
    let (mut app, big_id, big) = with_big_sender(options, "").await;

    publish_all(&big, "ref-flight", BACKLOG, &body).await;
    eventually("the big sender's first messages to be accepted", || async {
        count(&app, &big_id, "accepted").await == BOUND
    })
    .await;
    // Barrier: the small sender's message is accepted while the big one is at its bound.
    let mut small = app.sender().await;
    let answer = publish_and_wait(&mut small, "ref-small", TYPE_V2, &body).await;
    assert_eq!(answer.status, Status::Accepted, "{answer:?}");
    assert_eq!(
        count(&app, &big_id, "accepted").await,
        BOUND,
        "no more taken from the big sender's lane"
    );
    assert!(
        depth(&app, &intake_lane(&big_id)).await >= BACKLOG as i64 - BOUND - 1,
        "the rest waits in the lane (one may be held by intake)"
    );
    assert!(waits_counted("in_flight") > 0, "the waits are counted");

    // The later stages publish what is in flight: the rest is taken.
    app.stop_workers().await;
    app.start_workers(&ebox::workers::Worker::ALL).await;
    until_all_published(&app, &big_id, BACKLOG, WAIT * 3).await;
}
