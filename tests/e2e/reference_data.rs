//! Reference data beyond the names: a sender organisation's and an application's long name,
//! URL, contacts and logos, loaded from the registry file (logos read beside it and checked
//! against their media type) and served as the Message Registry 2.1 contract defines them; and
//! a sender withdrawn from the registry, still shown while its messages are live, refused when
//! it publishes.

use crate::citizen_api::{Api, assert_valid, citizen_token};
use crate::helpers::*;
use domain::registry::RegistryFile;
use domain::status::{Code, Status};
use ebox::demo::{SAMPLE_SSIN, sample_v2};
use intake::contract::TYPE_V2;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The demo's logo (`demo/logo.png`), a real 16×16 PNG.
const PNG: &[u8] = include_bytes!("../../demo/logo.png");
const SVG: &[u8] = b"<?xml version=\"1.0\"?>\n\
    <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"8\" height=\"8\"><rect width=\"8\" height=\"8\"/></svg>\n";
const CACHE_CONTROL: &str = "public, no-transform, proxy-revalidate, max-age=86400";

/// A directory of the test's own, for a registry file and its logos; removed with it.
struct Dir(PathBuf);

impl Dir {
    fn new(app: &TestApp) -> Self {
        let path = std::env::temp_dir().join(format!("ebox-registry-{}", app.id));
        std::fs::create_dir_all(path.join("icons")).expect("a directory");
        Self(path)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).expect("written");
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The test registry, its sender showing a long name, URLs, contacts and a PNG logo
/// (`logo.png`), its application a description and an SVG logo (`icons/app.svg`).
fn showing(sender_id: &str) -> String {
    let plain = registry_yaml(sender_id);
    let yaml = plain
        .replacen(
            "    name: {nl: RVA, fr: ONEM, de: LfA}\n",
            "    name: {nl: RVA, fr: ONEM, de: LfA}
    longName: {nl: Rijksdienst voor Arbeidsvoorziening, fr: Office national de l'Emploi}
    url: {nl: 'https://www.rva.be', fr: 'https://www.onem.be'}
    contactBusiness: 'https://www.onem.be/contact'
    contactTechnical: 'ebox-helpdesk@onem.example'
    logos: [{id: onem-logo, path: logo.png, mediaType: image/png}]
",
            1,
        )
        .replacen(
            "applications: [{id: unemployment, name: {nl: Werkloosheid, fr: Chômage}}]",
            "applications: [{id: unemployment, name: {nl: Werkloosheid, fr: Chômage}, \
             description: {fr: Allocations de chômage}, \
             logos: [{id: app-logo, path: icons/app.svg, mediaType: image/svg+xml, language: fr}]}]",
            1,
        );
    assert_eq!(yaml.matches("logos:").count(), 2, "{yaml}");
    yaml
}

/// What `ebox registry load FILE` does: the file parsed and checked with its logos read beside
/// it, then applied.
async fn load(app: &TestApp, file: &Path) -> Result<(), Vec<String>> {
    let yaml = std::fs::read_to_string(file).expect("the registry file");
    let registry = RegistryFile::parse_with(&yaml, ebox::admin::files_beside(file))?;
    ebox::admin::apply_registry(&app.pool, &app.settings.amqp_url, &registry)
        .await
        .expect("the registry applied");
    Ok(())
}

/// The test's registry with its logos, loaded from a directory of the test's own.
async fn load_showing(app: &TestApp) -> Dir {
    let dir = Dir::new(app);
    dir.write("logo.png", PNG);
    dir.write("icons/app.svg", SVG);
    let file = dir.write("registry.yaml", showing(&app.sender_id).as_bytes());
    load(app, &file).await.expect("a valid registry");
    dir
}

/// The path of a `contentHref` under the API's root.
fn path_of(href: &Value) -> String {
    let href = href.as_str().expect("a contentHref");
    let at = href.find("/referenceData/").expect("under /referenceData");
    href[at..].to_owned()
}

fn etag_of(bytes: &[u8]) -> String {
    format!("\"{}\"", hex::encode(Sha256::digest(bytes)))
}

/// A logo's content: its bytes as its media type, cacheable for a day under its digest, never
/// sniffed, sandboxed if opened as a page.
fn assert_logo(response: &reqwest::Response, media_type: &str, bytes: &[u8], what: &str) {
    let headers = response.headers();
    assert_eq!(headers["content-type"], media_type, "{what}");
    assert_eq!(headers["cache-control"], CACHE_CONTROL, "{what}");
    assert_eq!(headers["etag"], etag_of(bytes).as_str(), "{what}");
    assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(headers["content-security-policy"], "sandbox", "{what}");
}

#[tokio::test]
async fn an_organisation_and_an_application_show_their_names_links_contacts_and_logos() {
    // As production connects: the registry loaded and the API reading as the runtime role.
    let app = spawn_app_with(Options {
        api: true,
        runtime_role: true,
        ..Options::default()
    })
    .await;
    let _dir = load_showing(&app).await;
    let api = Api::of(&app);
    let token = citizen_token(SAMPLE_SSIN);

    let organization = format!("/referenceData/senderOrganizations/{ORGANIZATION}");
    let (status, org) = api.get(&organization, Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_valid("SenderOrganization", &org);
    assert_eq!(
        org["organizationLongName"],
        json!({"nl": "Rijksdienst voor Arbeidsvoorziening", "fr": "Office national de l'Emploi",
               "de": "Rijksdienst voor Arbeidsvoorziening"}),
        "every language filled"
    );
    assert_eq!(org["organizationUrl"]["fr"], "https://www.onem.be");
    assert_eq!(org["contactBusiness"], "https://www.onem.be/contact");
    assert_eq!(org["contactTechnical"], "ebox-helpdesk@onem.example");
    let logos = org["organizationLogos"].as_array().expect("logos");
    assert_eq!(logos.len(), 1, "{org:#}");
    assert_eq!(logos[0]["imageId"], "onem-logo");
    assert_eq!(logos[0]["mediaType"], "image/png");
    assert_eq!(logos[0]["size"], json!(PNG.len() as f64 / 1024.0), "in kB");
    let logo = path_of(&logos[0]["contentHref"]);
    assert_eq!(
        logo,
        format!("{organization}/images/onem-logo/content"),
        "the contract's path"
    );
    let (_, list) = api
        .get("/referenceData/senderOrganizations", Some(&token))
        .await;
    assert_valid("SenderOrganizations", &list);
    assert_eq!(list["items"][0], org);

    let (status, application) = api
        .get(
            "/referenceData/senderApplications/unemployment",
            Some(&token),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_valid("SenderApplication", &application);
    assert_eq!(
        application["applicationDescription"]["nl"],
        "Allocations de chômage"
    );
    let app_logo = &application["applicationLogos"][0];
    assert_eq!(
        (app_logo["mediaType"].clone(), app_logo["language"].clone()),
        (json!("image/svg+xml"), json!("fr"))
    );

    // The bytes, as declared, cacheable, revalidated by their digest.
    let response = api.get_raw(&logo, &token).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_logo(&response, "image/png", PNG, "the organisation's logo");
    assert_eq!(response.bytes().await.expect("bytes").as_ref(), PNG);
    let svg = api
        .get_raw(&path_of(&app_logo["contentHref"]), &token)
        .await;
    assert_eq!(svg.status(), StatusCode::OK);
    assert_logo(&svg, "image/svg+xml", SVG, "the application's SVG logo");
    assert_eq!(svg.bytes().await.expect("bytes").as_ref(), SVG);

    let revalidate = |tag: String| {
        api.http
            .get(format!("{}{logo}", api.base))
            .bearer_auth(&token)
            .header("if-none-match", tag)
            .send()
    };
    let unchanged = revalidate(etag_of(PNG)).await.expect("an answer");
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(unchanged.headers()["etag"], etag_of(PNG).as_str());
    assert_eq!(unchanged.headers()["cache-control"], CACHE_CONTROL);
    assert!(unchanged.bytes().await.expect("a body").is_empty());
    let weak_in_a_list = revalidate(format!("\"old\", W/{}", etag_of(PNG)))
        .await
        .expect("an answer");
    assert_eq!(weak_in_a_list.status(), StatusCode::NOT_MODIFIED);
    let changed = revalidate(etag_of(b"an older logo"))
        .await
        .expect("an answer");
    assert_eq!(changed.status(), StatusCode::OK);
    assert_eq!(changed.bytes().await.expect("bytes").as_ref(), PNG);

    for (what, path) in [
        (
            "an image the organisation does not have",
            format!("{organization}/images/nope/content"),
        ),
        (
            "an organisation that is not registered",
            "/referenceData/senderOrganizations/0123456749/images/onem-logo/content".to_owned(),
        ),
        (
            "the organisation's image asked of its application",
            "/referenceData/senderApplications/unemployment/images/onem-logo/content".to_owned(),
        ),
    ] {
        let (status, error) = api.get(&path, Some(&token)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{what}");
        assert_valid("StatusMessage", &error);
    }
    let (status, _) = api.get(&logo, None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a token, as for all reference data"
    );
}

#[tokio::test]
async fn a_registry_whose_logo_is_not_its_media_type_is_refused_naming_the_field() {
    let app = spawn_app_with(Options {
        api: true,
        ..Options::default()
    })
    .await;
    let dir = load_showing(&app).await;
    // Bytes of another type under a declared PNG, and an SVG the file names but nobody wrote.
    dir.write("logo.png", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;");
    std::fs::remove_file(dir.0.join("icons/app.svg")).expect("removed");
    let file = dir.0.join("registry.yaml");
    let problems = load(&app, &file).await.expect_err("refused");
    let sender = &app.sender_id;
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert_eq!(
        problems[0],
        format!(
            "sender {sender}: logos[0].path \"logo.png\" is not image/png: \
             its bytes do not start with the PNG signature"
        )
    );
    assert!(
        problems[1].starts_with(&format!(
            "application unemployment of sender {sender}: logos[0].path \"icons/app.svg\" \
             cannot be read: "
        )),
        "{}",
        problems[1]
    );

    // Nothing was written: the logo loaded before is still served.
    let api = Api::of(&app);
    let response = api
        .get_raw(
            &format!("/referenceData/senderOrganizations/{ORGANIZATION}/images/onem-logo/content"),
            &citizen_token(SAMPLE_SSIN),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.expect("bytes").as_ref(), PNG);
}

#[tokio::test]
async fn a_withdrawn_sender_is_still_shown_while_its_message_is_live_but_may_not_publish() {
    let app = spawn_app_with(Options {
        runtime_role: true,
        ..Options::with_api()
    })
    .await;
    let _dir = load_showing(&app).await;
    app.grant_consent(SAMPLE_SSIN).await;
    let mut sender = app.sender().await;
    let live = deliver(
        &mut sender,
        "ref-before-withdrawal",
        sample_v2(SAMPLE_SSIN, MESSAGE_TYPE),
    )
    .await;

    // The operator removes the sender from the file and loads it again.
    let plain = registry_yaml(&app.sender_id);
    let (_, types) = plain
        .split_once("\nmessageTypes:\n")
        .expect("the file's message types");
    let withdrawn =
        RegistryFile::parse(&format!("messageTypes:\n{types}")).expect("a valid registry");
    ebox::admin::apply_registry(&app.pool, &app.settings.amqp_url, &withdrawn)
        .await
        .expect("applied");
    let active: bool = sqlx::query_scalar("SELECT active FROM senders WHERE id = $1")
        .bind(&app.sender_id)
        .fetch_one(&app.pool)
        .await
        .expect("the sender's row is kept");
    assert!(!active, "withdrawn");

    // It may no longer publish: intake refuses it, and says so on its status queue.
    let body = serde_json::to_vec(&sample_v2(SAMPLE_SSIN, MESSAGE_TYPE)).expect("JSON");
    let refused = publish_and_wait(&mut sender, "ref-after-withdrawal", TYPE_V2, &body).await;
    assert_eq!(
        refused.sender_reference.as_deref(),
        Some("ref-after-withdrawal")
    );
    assert_eq!(
        (refused.status, refused.code),
        (Status::Rejected, Code::SenderNotAuthorized),
        "{refused:?}"
    );
    assert_eq!(
        refused.message,
        "this sender's registration has been withdrawn"
    );

    // Its message is still in the citizen's eBox, and the portal can still show who sent it.
    let api = Api::of(&app);
    let token = citizen_token(SAMPLE_SSIN);
    let (status, message) = api
        .get(&format!("/ebox/messages/{live}"), Some(&token))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(message["senderOrganizationId"], ORGANIZATION);
    let organization = format!("/referenceData/senderOrganizations/{ORGANIZATION}");
    let logo = format!("{organization}/images/onem-logo/content");
    let (status, org) = api.get(&organization, Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{org}");
    assert_valid("SenderOrganization", &org);
    assert_eq!(
        org["organizationLongName"]["fr"],
        "Office national de l'Emploi"
    );
    assert_eq!(org["organizationLogos"][0]["imageId"], "onem-logo");
    let response = api.get_raw(&logo, &token).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.expect("bytes").as_ref(), PNG);
    let (status, _) = api
        .get(
            "/referenceData/senderApplications/unemployment",
            Some(&token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "its application too");

    // Once its last message has expired, it is shown no more.
    sqlx::query(
        "UPDATE documents SET expiration_date = now() - interval '1 second' WHERE sender_id = $1",
    )
    .bind(&app.sender_id)
    .execute(&app.pool)
    .await
    .expect("expired");
    for path in [&organization, &logo] {
        let (status, _) = api.get(path, Some(&token)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (_, list) = api
        .get("/referenceData/senderOrganizations", Some(&token))
        .await;
    assert_eq!(list["totalItems"], 0, "{list}");
}

#[tokio::test]
async fn fetching_reference_data_and_logos_is_not_a_use_of_the_citizens_ebox() {
    let app = spawn_app_with(Options {
        api: true,
        ..Options::default()
    })
    .await;
    let _dir = load_showing(&app).await;
    let api = Api::of(&app);
    let token = citizen_token(SAMPLE_SSIN);
    let organization = format!("/referenceData/senderOrganizations/{ORGANIZATION}");
    for path in [
        "/referenceData/messageTypes".to_owned(),
        format!("{organization}/images/onem-logo/content"),
        organization,
        "/referenceData/senderApplications/unemployment/images/app-logo/content".to_owned(),
    ] {
        let response = api.get_raw(&path, &token).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events
          WHERE stage = 'api' AND action = 'consultation' AND details->>'url' LIKE '/referenceData/%'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("the audit trail");
    assert_eq!(audited, 4, "each fetch is on the trail, as a consultation");

    let (status, summary) = api.get("/ebox", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        summary.get("lastConsultationDate"),
        None,
        "reference data is no use of the eBox: {summary:#}"
    );
    // Their own messages are: the summary just answered counts for the next one.
    let (_, summary) = api.get("/ebox", Some(&token)).await;
    assert!(summary["lastConsultationDate"].is_string(), "{summary:#}");
}
