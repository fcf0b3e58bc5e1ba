//! Least privilege: the services connect as a login role of their own, a member of
//! `ebox_runtime`, that owns nothing. It does all the pipeline's and the API's work, reads and
//! adds to the audit trail, and is refused everything else on it: changing or deleting records,
//! truncating, and the owner's DDL (ALTER TABLE, DROP TRIGGER…).

use crate::helpers::*;
use chrono::Utc;
use domain::citizen::{Channel, Consent, Preferences};
use domain::ssin::Ssin;
use domain::status::Status;
use domain::translated::Language;
use ebox::demo::{SAMPLE_SSIN, sample_v2};
use ebox::token::{TokenArgs, mint};
use intake::contract::TYPE_V2;
use records::citizens::{record_consent, record_preferences};
use sqlx::{Connection, PgConnection, PgPool};

/// The SQLSTATE of `permission denied` and of `must be owner of …`.
const INSUFFICIENT_PRIVILEGE: &str = "42501";

/// The test's runtime role, checked to be what production runs as: not a superuser, not the
/// tables' owner (either would make every refusal below impossible to observe).
async fn assert_runtime_role(app: &TestApp) -> String {
    let (user, superuser): (String, bool) = sqlx::query_as(
        "SELECT current_user::text, rolsuper FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&app.pool)
    .await
    .expect("who am I");
    assert_eq!(user, format!("ebox_rt_{}", app.id));
    assert!(!superuser, "the runtime role is no superuser");
    let owned: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class WHERE relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)",
    )
    .fetch_one(&app.pool)
    .await
    .expect("count what it owns");
    assert_eq!(owned, 0, "the runtime role owns nothing");
    user
}

/// The tables' owner (the role the migrations ran as), connected to the test's database.
async fn owner(app: &TestApp) -> PgConnection {
    PgConnection::connect(&app.settings.migration_database_url)
        .await
        .expect("the owner connects")
}

/// Runs `sql` as the runtime role and returns the refusal's message, checking it is a
/// privilege error.
async fn refused(pool: &PgPool, sql: &str) -> String {
    let error = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .expect_err(sql);
    let database = error
        .as_database_error()
        .unwrap_or_else(|| panic!("{sql}: not a database error: {error}"));
    assert_eq!(
        database.code().as_deref(),
        Some(INSUFFICIENT_PRIVILEGE),
        "{sql}: {database}"
    );
    database.message().to_owned()
}

#[tokio::test]
async fn the_pipeline_and_the_api_do_their_whole_work_as_a_runtime_role_that_owns_nothing() {
    let mut app = spawn_app_with(Options {
        runtime_role: true,
        ..Options::with_api()
    })
    .await;
    assert_runtime_role(&app).await;

    // `ebox consent` and `ebox citizen set`, as the runtime role.
    let ssin = Ssin::parse(SAMPLE_SSIN).expect("valid");
    let mut tx = app.pool.begin().await.expect("tx");
    record_consent(
        &mut tx,
        &app.hasher,
        &ssin,
        Consent::Granted,
        Utc::now(),
        "test",
    )
    .await
    .expect("consent recorded");
    let preferences = Preferences {
        language: Language::Nl,
        channel: Channel::Email {
            email: "burger@example.be".to_owned(),
        },
    };
    record_preferences(&mut tx, &app.hasher, &ssin, &preferences, Utc::now())
        .await
        .expect("preferences recorded");
    tx.commit().await.expect("commit");

    // Intake, consent-check, store (with its proof) and notify.
    let mut sender = app.sender().await;
    let body = serde_json::to_vec(&sample_v2(SAMPLE_SSIN, MESSAGE_TYPE)).expect("JSON");
    sender
        .publish(sender.properties("ref-least", TYPE_V2), &body)
        .await
        .expect("published");
    let accepted = sender.next_status(WAIT).await.expect("a status");
    assert_eq!(accepted.status, Status::Accepted, "{accepted:?}");
    let published = sender.next_status(WAIT).await.expect("a status");
    assert_eq!(published.status, Status::Published, "{published:?}");
    assert!(published.proof_of_deposit.is_some());
    let mail = tokio::time::timeout(WAIT, app.mails.recv())
        .await
        .expect("an e-mail in time")
        .expect("mail");
    assert_eq!(mail.to, ["burger@example.be"]);

    // The citizen opens it through the API: consultation audited, read receipt, `read`.
    let message_id = published.message_id.expect("an id").as_uuid();
    let token = mint(&TokenArgs {
        key: fixture("es256-private.pem").into(),
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        sub: Some(SAMPLE_SSIN.into()),
        client_id: Some("ebox-portal".into()),
        scope: "ebox:summary ebox:messages ebox:referencedata".into(),
        acr: "http://eidas.europa.eu/LoA/substantial".into(),
        ttl: 600,
        kid: Some("test-es256".into()),
    })
    .expect("a token");
    let content = open_main_content(&app, message_id, &token).await;
    assert!(content.status().is_success(), "{}", content.status());
    let read = sender.next_status(WAIT).await.expect("the read status");
    assert_eq!(read.status, Status::Read, "{read:?}");

    eventually("the notification to be marked sent", || async {
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM notifications")
            .fetch_optional(&app.pool)
            .await
            .expect("query");
        state.as_deref() == Some("sent")
    })
    .await;
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT stage || ':' || action FROM audit_events WHERE message_id = $1 ORDER BY id",
    )
    .bind(published.message_id.map(|id| id.as_uuid()))
    .fetch_all(&app.pool)
    .await
    .expect("the runtime role reads the audit trail");
    for expected in [
        "intake:accepted",
        "consent-check:consented",
        "store:stored",
        "notify:notification-queued",
        "notify:notified",
        "api:consultation",
        "read-receipt:read-confirmed",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} missing from {actions:?}"
        );
    }
    // The sealer (in the store worker) seals the trail as the runtime role too.
    eventually("the journey's records to be sealed", || async {
        let sealed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM audit_seal_members m JOIN audit_events e ON e.id = m.record_id
              WHERE e.message_id = $1",
        )
        .bind(published.message_id.map(|id| id.as_uuid()))
        .fetch_one(&app.pool)
        .await
        .expect("the runtime role reads the seals");
        sealed == actions.len() as i64
    })
    .await;
}

#[tokio::test]
async fn the_runtime_role_reads_and_adds_to_the_audit_trail_and_may_neither_change_it_nor_its_rules()
 {
    let app = spawn_app_with(Options {
        runtime_role: true,
        ..Options::default()
    })
    .await;
    assert_runtime_role(&app).await;

    let id: i64 = sqlx::query_scalar(
        "INSERT INTO audit_events (stage, action) VALUES ('test', 'inserted') RETURNING id",
    )
    .fetch_one(&app.pool)
    .await
    .expect("the runtime role adds a record");
    let action: String = sqlx::query_scalar("SELECT action FROM audit_events WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .expect("the runtime role reads it");
    assert_eq!(action, "inserted");

    // Refused by the privileges, before any trigger runs: even statements that would touch no
    // row, and a TRUNCATE, are refused.
    let denied = "permission denied for table audit_events";
    for sql in [
        "UPDATE audit_events SET action = 'forged' WHERE false",
        "UPDATE audit_events SET action = 'forged'",
        "DELETE FROM audit_events WHERE false",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "SELECT id FROM audit_events FOR UPDATE",
    ] {
        assert_eq!(refused(&app.pool, sql).await, denied, "{sql}");
    }
    // The triggers that keep the trail append-only, and the table itself, are the owner's
    // ("must be owner of table audit_events", or "of relation" for a trigger).
    for sql in [
        "DROP TRIGGER audit_events_no_update ON audit_events",
        "ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_early_delete",
        "ALTER TABLE audit_events DISABLE TRIGGER ALL",
        "ALTER TABLE audit_events ADD COLUMN forged text",
        "ALTER TABLE audit_events RENAME TO audit_events_old",
        "DROP TABLE audit_events",
    ] {
        let message = refused(&app.pool, sql).await;
        assert!(
            message.starts_with("must be owner of ") && message.ends_with(" audit_events"),
            "{sql}: {message}"
        );
    }
    // Nor may it create anything (a table of its own to stand in for the trail, say).
    let message = refused(&app.pool, "CREATE TABLE audit_copy (id bigint)").await;
    assert!(
        message.starts_with("permission denied for schema"),
        "{message}"
    );

    // The refusals are the role's: the owner may run the statements that touch no row.
    let mut owner = owner(&app).await;
    for sql in [
        "UPDATE audit_events SET action = 'forged' WHERE false",
        "DELETE FROM audit_events WHERE false",
    ] {
        sqlx::query(sql)
            .execute(&mut owner)
            .await
            .unwrap_or_else(|e| panic!("the owner runs {sql}: {e}"));
    }
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE id = $1")
        .bind(id)
        .fetch_one(&mut owner)
        .await
        .expect("count");
    assert_eq!(kept, 1, "the record is still there");
}

/// Checks every table there is, so that a later migration adding an audit table without the
/// REVOKE its rule asks for (`…_least_privilege.sql`) fails here.
#[tokio::test]
async fn every_audit_table_only_grows_for_the_runtime_role_and_every_other_table_is_its_to_work_with()
 {
    let app = spawn_app_with(Options {
        runtime_role: true,
        ..Options::default()
    })
    .await;
    assert_runtime_role(&app).await;

    let tables: Vec<(String, bool, bool, bool, bool, bool)> = sqlx::query_as(
        "SELECT tablename::text,
                has_table_privilege(quote_ident(tablename), 'SELECT'),
                has_table_privilege(quote_ident(tablename), 'INSERT'),
                has_table_privilege(quote_ident(tablename), 'UPDATE'),
                has_table_privilege(quote_ident(tablename), 'DELETE'),
                has_table_privilege(quote_ident(tablename), 'TRUNCATE, REFERENCES, TRIGGER')
         FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename",
    )
    .fetch_all(&app.pool)
    .await
    .expect("the runtime role's privileges");
    let audit: Vec<&str> = tables
        .iter()
        .map(|t| t.0.as_str())
        .filter(|t| t.starts_with("audit_"))
        .collect();
    assert!(audit.contains(&"audit_events"), "{audit:?}");
    assert!(
        tables.iter().any(|t| t.0 == "messages"),
        "the working tables are listed"
    );
    for (table, select, insert, update, delete, others) in &tables {
        let privileges = (*select, *insert, *update, *delete, *others);
        let expected = if table == "_sqlx_migrations" {
            (false, false, false, false, false)
        } else if table == "audit_purges" {
            // Only the owner purges (and records the purge); the services read it.
            (true, false, false, false, false)
        } else if table.starts_with("audit_") || table == "withdrawals" {
            // A withdrawal's tombstone is evidence too: written once, never changed.
            (true, true, false, false, false)
        } else {
            (true, true, true, true, false)
        };
        assert_eq!(
            privileges, expected,
            "{table}: (SELECT, INSERT, UPDATE, DELETE, TRUNCATE|REFERENCES|TRIGGER)"
        );
    }
    for table in audit {
        for sql in [
            format!("DELETE FROM {table} WHERE false"),
            format!("TRUNCATE {table}"),
        ] {
            let message = refused(&app.pool, &sql).await;
            assert_eq!(message, format!("permission denied for table {table}"));
        }
    }
}
