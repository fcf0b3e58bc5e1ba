//! The audit trail as evidence: sealed in order, signed, and verified by recomputing
//! everything, so that tampering by anybody, a database superuser with the triggers disabled
//! included, is found.

use crate::helpers::*;
use ebox::audit::{Sealer, trace, verify};
use ebox::demo::{SAMPLE_SSIN, sample_v2};
use evidence::keys::{Keyring, Signer};
use intake::contract::TYPE_V2;
use std::sync::Arc;

fn keys() -> (Arc<Signer>, Keyring) {
    let signer = Signer::from_pem_file(std::path::Path::new(&fixture("proof-ed25519.pem")))
        .expect("the test signing key");
    let keyring = Keyring::from_jwks(
        &std::fs::read_to_string(fixture("proof-jwks.json")).expect("the test JWKS"),
    )
    .expect("a JWKS");
    (Arc::new(signer), keyring)
}

/// An app whose trail holds the records of `references`' acceptance, sealed.
async fn sealed_trail(references: &[&str]) -> (TestApp, Sealer, Keyring) {
    let app = spawn_app().await;
    let mut sender = app.sender().await;
    let body = serde_json::to_vec(&sample_v2(SAMPLE_SSIN, MESSAGE_TYPE)).expect("JSON");
    for reference in references {
        publish_and_wait(&mut sender, reference, TYPE_V2, &body).await;
    }
    let (signer, keyring) = keys();
    let sealer = Sealer::new(app.pool.clone(), signer).without_settling();
    assert!(sealer.seal_due().await.expect("sealed") >= references.len());
    (app, sealer, keyring)
}

/// Runs `sql` as the superuser the tests connect as, with the trail's triggers disabled.
async fn tamper(app: &TestApp, sql: &str) {
    let mut tx = app.pool.begin().await.expect("a transaction");
    for statement in [
        "ALTER TABLE audit_events DISABLE TRIGGER USER",
        sql,
        "ALTER TABLE audit_events ENABLE TRIGGER USER",
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned()))
            .execute(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    tx.commit().await.expect("committed");
}

async fn first_record(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT min(id) FROM audit_events")
        .fetch_one(&app.pool)
        .await
        .expect("a record")
}

#[tokio::test]
async fn a_sealed_trail_verifies_and_later_records_are_chained_to_it() {
    let (app, sealer, keyring) = sealed_trail(&["ref-a1", "ref-a2"]).await;
    let (seals, records) = verify(&app.pool, &keyring).await.expect("verifies");
    assert_eq!((seals, records), (1, 2));

    let mut sender = app.sender().await;
    let body = serde_json::to_vec(&sample_v2(SAMPLE_SSIN, MESSAGE_TYPE)).expect("JSON");
    publish_and_wait(&mut sender, "ref-a3", TYPE_V2, &body).await;
    assert_eq!(sealer.seal_due().await.expect("sealed"), 1);
    assert_eq!(verify(&app.pool, &keyring).await.expect("verifies"), (2, 3));

    // The journey of one message, each record with its seal.
    let journey = trace(&app.pool, &format!("{}:ref-a3", app.sender_id))
        .await
        .expect("traced");
    assert_eq!(journey.len(), 1, "{journey:?}");
    assert_eq!(journey[0]["action"], "accepted");
    assert_eq!(journey[0]["seal"], 2);

    // Another key does not verify the seals.
    let mut other = Keyring::default();
    other.add(
        Signer::from_pem(&evidence::keys::generate_pem().expect("a key"))
            .expect("a signer")
            .verifying_key(),
    );
    let refused = verify(&app.pool, &other).await.expect_err("another key");
    assert!(refused.to_string().contains("seal 1"), "{refused}");
}

#[tokio::test]
async fn an_edited_record_is_found_even_with_the_triggers_disabled() {
    let (app, _, keyring) = sealed_trail(&["ref-e1", "ref-e2"]).await;
    let id = first_record(&app).await;
    tamper(
        &app,
        &format!("UPDATE audit_events SET action = 'rejected' WHERE id = {id}"),
    )
    .await;
    let found = verify(&app.pool, &keyring).await.expect_err("tampered");
    assert!(found.to_string().contains("seal 1"), "{found}");
    assert!(found.to_string().contains("do not hash"), "{found}");
    // A period after the seal does not recompute it (its signature and the chain only).
    let later = Some(chrono::Utc::now() + chrono::Duration::hours(1));
    assert_eq!(
        ebox::audit::verify_period(&app.pool, &keyring, (later, None))
            .await
            .expect("nothing in the period"),
        (0, 0)
    );
}

#[tokio::test]
async fn a_deleted_record_is_found_even_with_the_triggers_disabled() {
    let (app, _, keyring) = sealed_trail(&["ref-d1", "ref-d2"]).await;
    let id = first_record(&app).await;
    tamper(&app, &format!("DELETE FROM audit_events WHERE id = {id}")).await;
    let found = verify(&app.pool, &keyring).await.expect_err("tampered");
    assert!(
        found
            .to_string()
            .contains(&format!("record {id} (seal 1) is missing")),
        "{found}"
    );
}

#[tokio::test]
async fn an_inserted_record_is_found_even_with_the_triggers_disabled() {
    let (app, _, keyring) = sealed_trail(&["ref-i1"]).await;
    tamper(
        &app,
        "INSERT INTO audit_events (at, retain_until, stage, action, sender_reference)
         VALUES (now() - interval '1 day', current_date + 3650, 'intake', 'accepted', 'ref-forged')",
    )
    .await;
    let found = verify(&app.pool, &keyring).await.expect_err("tampered");
    assert!(found.to_string().contains("no seal covers it"), "{found}");
}

#[tokio::test]
async fn reordered_records_are_found_even_with_the_triggers_disabled() {
    let (app, _, keyring) = sealed_trail(&["ref-r1", "ref-r2"]).await;
    let first = first_record(&app).await;
    let second: i64 = sqlx::query_scalar("SELECT min(id) FROM audit_events WHERE id > $1")
        .bind(first)
        .fetch_one(&app.pool)
        .await
        .expect("a second record");
    tamper(
        &app,
        &format!(
            "UPDATE audit_events SET id = -id WHERE id = {first};
             UPDATE audit_events SET id = {first} WHERE id = {second};
             UPDATE audit_events SET id = {second} WHERE id = -{first}"
        ),
    )
    .await;
    let found = verify(&app.pool, &keyring).await.expect_err("tampered");
    assert!(found.to_string().contains("do not hash"), "{found}");
}

#[tokio::test]
async fn an_export_verifies_offline_and_fails_after_one_changed_byte() {
    let (app, _, keyring) = sealed_trail(&["ref-x1", "ref-x2"]).await;
    let (signer, _) = keys();
    let period = (
        chrono::Utc::now() - chrono::Duration::hours(1),
        chrono::Utc::now() + chrono::Duration::hours(1),
    );
    let mut bytes = Vec::new();
    let manifest = ebox::audit::export(
        &app.pool,
        &signer,
        "ebox-test",
        period,
        Some(app.sender_id.clone()),
        &mut bytes,
    )
    .await
    .expect("exported");
    assert_eq!(manifest.record_count, 2);
    assert_eq!(manifest.seals, [1]);
    let verified = evidence::export::verify(&keyring, &bytes).expect("the export verifies");
    assert_eq!(verified, manifest);

    // What `sha256sum` says of every line before the manifest is what the manifest states.
    let text = String::from_utf8(bytes.clone()).expect("UTF-8");
    let body_len = text.trim_end().rfind('\n').expect("a manifest line") + 1;
    let digest: String = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(
        &bytes[..body_len],
    ))
    .iter()
    .map(|b| format!("{b:02x}"))
    .collect();
    assert_eq!(digest, manifest.sha256);

    let mut changed = bytes.clone();
    let at = text.find("ref-x1").expect("the reference");
    changed[at + 4] = b'9';
    let refused = evidence::export::verify(&keyring, &changed).expect_err("changed");
    assert!(refused.to_string().contains("was changed"), "{refused}");
}

#[tokio::test]
async fn records_past_their_retention_are_purged_whole_seals_at_a_time_and_the_chain_still_verifies()
 {
    let (app, sealer, keyring) = sealed_trail(&["ref-p1", "ref-p2"]).await;
    let mut sender = app.sender().await;
    let body = serde_json::to_vec(&sample_v2(SAMPLE_SSIN, MESSAGE_TYPE)).expect("JSON");
    publish_and_wait(&mut sender, "ref-p3", TYPE_V2, &body).await;
    assert_eq!(sealer.seal_due().await.expect("sealed"), 1);
    // Ten years pass for the first seal's records (only for them).
    tamper(
        &app,
        "UPDATE audit_events SET retain_until = current_date - 1
          WHERE id IN (SELECT record_id FROM audit_seal_members WHERE seal_seq = 1)",
    )
    .await;
    let mut tx = app.pool.begin().await.expect("a transaction");
    let (up_to, purged) = records::seals::purge_expired(&mut tx)
        .await
        .expect("purged");
    tx.commit().await.expect("committed");
    assert_eq!((up_to, purged), (1, 2));
    let remaining: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events")
        .fetch_one(&app.pool)
        .await
        .expect("counted");
    assert_eq!(
        remaining, 1,
        "the record still in its retention period stays"
    );
    assert_eq!(
        verify(&app.pool, &keyring).await.expect("still verifies"),
        (1, 1),
        "the purged seal's records are not recomputed, the later seal's are"
    );
}
