//! Senders' lanes and limits: which lanes intake consumes, and what each limited sender has
//! used (`sender_usage`), shared by every intake replica (docs/operations.md, "Sender lanes and
//! limits").
//!
//! A limit never refuses a publication: it says until when intake waits before it takes more
//! from the sender's lane. The pace is the generic cell rate algorithm over `paced_until`:
//! each publication taken moves it `1 / messages_per_second` later (from now when it is in the
//! past), and a lane whose pace is more than [`BURST`] ahead waits until it is not, so a second's
//! worth may come at once and the average is the limit whatever the number of replicas. Bytes
//! are counted per UTC day; past `bytes_per_day`, the lane waits for the next day. And every
//! sender, limited or not, has a bound on its messages in flight ([`in_flight`]).

use chrono::{DateTime, Days, NaiveTime, TimeDelta, Utc};
use sqlx::PgPool;

/// How far ahead of now a sender's pace may run before its lane waits: a second's worth of
/// publications may come at once.
pub const BURST: TimeDelta = TimeDelta::seconds(1);

/// A sender's lane as intake consumes it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Lane {
    pub sender_id: String,
    /// Its publications per second, when limited: intake holds no more deliveries of the lane
    /// than a second's worth.
    pub messages_per_second: Option<i32>,
    /// Whether it has any limit: then its batches are charged.
    pub limited: bool,
    /// When it reached today's bytes: the next UTC day, when its lane may be taken again.
    pub waits_until: Option<DateTime<Utc>>,
}

/// Every registered sender's lane, withdrawn senders' included (what is left in their lane is
/// still answered), with the wait of those that reached today's bytes — under today's limit,
/// so that a raised limit opens the lane again.
pub async fn lanes(pool: &PgPool) -> sqlx::Result<Vec<Lane>> {
    sqlx::query_as(
        "SELECT s.id AS sender_id, s.messages_per_second,
                (s.messages_per_second IS NOT NULL OR s.bytes_per_day IS NOT NULL) AS limited,
                CASE WHEN u.day = (now() AT TIME ZONE 'UTC')::date AND u.bytes >= s.bytes_per_day
                     THEN (u.day + 1)::timestamp AT TIME ZONE 'UTC' END AS waits_until
         FROM senders s LEFT JOIN sender_usage u ON u.sender_id = s.id
         ORDER BY s.id",
    )
    .fetch_all(pool)
    .await
}

/// How many messages of each of `senders` are in flight: accepted, with no final status yet
/// (an index holds only those). Senders with none are left out.
pub async fn in_flight(pool: &PgPool, senders: &[&str]) -> sqlx::Result<Vec<(String, i64)>> {
    if senders.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_as(
        "SELECT sender_id, count(*) FROM messages
         WHERE sender_id = ANY($1) AND status = 'accepted'
         GROUP BY sender_id",
    )
    .bind(senders)
    .fetch_all(pool)
    .await
}

/// What a batch took from one sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub sender_id: String,
    pub messages: i32,
    pub bytes: i64,
}

/// A sender's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `messagesPerSecond`: its pace.
    MessagesPerSecond,
    /// `bytesPerDay`: the UTC day's bytes.
    BytesPerDay,
}

/// Until when a limited sender's lane waits, after a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    pub sender_id: String,
    pub until: DateTime<Utc>,
    /// Which limit.
    pub limit: Limit,
}

/// Charges what a batch took to the senders that have limits (one statement, whatever the
/// number of senders; senders without limits are not written) and says which lanes must wait,
/// and until when.
pub async fn charge(pool: &PgPool, charges: &[Charge]) -> sqlx::Result<Vec<Wait>> {
    if charges.is_empty() {
        return Ok(Vec::new());
    }
    let senders: Vec<&str> = charges.iter().map(|c| c.sender_id.as_str()).collect();
    let messages: Vec<i32> = charges.iter().map(|c| c.messages).collect();
    let bytes: Vec<i64> = charges.iter().map(|c| c.bytes).collect();
    let rows: Vec<Usage> = sqlx::query_as(
        "WITH charge AS (
             SELECT c.sender_id, c.messages, c.bytes, s.messages_per_second, s.bytes_per_day
             FROM UNNEST($1::text[], $2::int[], $3::bigint[]) AS c (sender_id, messages, bytes)
             JOIN senders s ON s.id = c.sender_id
             WHERE s.messages_per_second IS NOT NULL OR s.bytes_per_day IS NOT NULL
         ), charged AS (
             INSERT INTO sender_usage AS u (sender_id, paced_until, day, bytes)
             SELECT sender_id,
                    now() + coalesce(messages::float8 / messages_per_second, 0) * interval '1 second',
                    (now() AT TIME ZONE 'UTC')::date,
                    bytes
             FROM charge
             ON CONFLICT (sender_id) DO UPDATE SET
                 paced_until = greatest(u.paced_until, now()) + (EXCLUDED.paced_until - now()),
                 bytes = CASE WHEN u.day = EXCLUDED.day THEN u.bytes + EXCLUDED.bytes
                              ELSE EXCLUDED.bytes END,
                 day = EXCLUDED.day
             RETURNING u.sender_id, u.paced_until, u.bytes
         )
         SELECT charged.sender_id, charged.paced_until, now() AS now, charged.bytes AS used,
                charge.bytes_per_day AS per_day
         FROM charged JOIN charge USING (sender_id)",
    )
    .bind(&senders)
    .bind(&messages)
    .bind(&bytes)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().filter_map(Usage::wait).collect())
}

/// A sender's usage after a charge.
#[derive(Debug, sqlx::FromRow)]
struct Usage {
    sender_id: String,
    paced_until: DateTime<Utc>,
    /// The database's clock, which the pace is kept in.
    now: DateTime<Utc>,
    /// Today's bytes.
    used: i64,
    per_day: Option<i64>,
}

impl Usage {
    /// The wait this usage calls for, if any: to the next UTC day once its bytes reached the
    /// day's limit, else until its pace is no more than [`BURST`] ahead of `now`.
    fn wait(self) -> Option<Wait> {
        let Usage {
            sender_id,
            paced_until,
            now,
            used,
            per_day,
        } = self;
        wait(sender_id, paced_until, now, used, per_day)
    }
}

fn wait(
    sender_id: String,
    paced_until: DateTime<Utc>,
    now: DateTime<Utc>,
    used: i64,
    per_day: Option<i64>,
) -> Option<Wait> {
    if per_day.is_some_and(|limit| used >= limit) {
        let tomorrow = now.date_naive().checked_add_days(Days::new(1))?;
        return Some(Wait {
            sender_id,
            until: tomorrow.and_time(NaiveTime::MIN).and_utc(),
            limit: Limit::BytesPerDay,
        });
    }
    let until = paced_until - BURST;
    (until > now).then_some(Wait {
        sender_id,
        until,
        limit: Limit::MessagesPerSecond,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("an RFC 3339 time")
            .to_utc()
    }

    #[test]
    fn a_pace_within_a_second_of_now_waits_for_nothing() {
        let now = at("2026-12-08T10:00:00Z");
        assert_eq!(wait("a".into(), now, now, 0, None), None);
        assert_eq!(
            wait(
                "a".into(),
                now + TimeDelta::milliseconds(1000),
                now,
                0,
                None
            ),
            None
        );
    }

    #[test]
    fn a_pace_further_ahead_waits_until_it_is_a_second_ahead() {
        let now = at("2026-12-08T10:00:00Z");
        let waited =
            wait("a".into(), at("2026-12-08T10:00:03Z"), now, 0, Some(10)).expect("a wait");
        assert_eq!(waited.until, at("2026-12-08T10:00:02Z"));
        assert_eq!(waited.limit, Limit::MessagesPerSecond);
    }

    #[test]
    fn the_days_bytes_reached_wait_for_the_next_utc_day() {
        let now = at("2026-12-08T23:59:59Z");
        let waited = wait("a".into(), now, now, 100, Some(100)).expect("a wait");
        assert_eq!(waited.until, at("2026-12-09T00:00:00Z"));
        assert_eq!(waited.limit, Limit::BytesPerDay);
        assert_eq!(wait("a".into(), now, now, 99, Some(100)), None);
    }
}
