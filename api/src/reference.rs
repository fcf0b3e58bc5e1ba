//! `/referenceData/**`: message types, sender organisations and applications, from the
//! registry, and the organisations' and applications' logos. Cacheable for a day, as the
//! federation recommends; a logo also carries an `ETag` (the SHA-256 of its bytes) and answers
//! `If-None-Match` with `304 Not Modified`.
//!
//! The senders shown are those of the `reference_senders` view: the registered ones, and a
//! withdrawn one while a document of its is still in a citizen's eBox, so that the portal can
//! still show who sent a message the citizen can open. An organisation (or an application id
//! several senders share) is shown as its first sender has it, registered senders first, then
//! by sender id: its names, URL, contacts and logos.

use crate::AppState;
use crate::audit::AuditSlot;
use crate::auth::SCOPE_REFERENCE_DATA;
use crate::citizen::authenticate;
use crate::error::ApiError;
use crate::model::Page;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::registry::{PeriodUnit, ValidityPeriod};
use domain::translated::TranslatedString;
use serde::Serialize;
use sqlx::PgPool;
use sqlx::types::Json as Jsonb;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub const CACHE_CONTROL: &str = "public, no-transform, proxy-revalidate, max-age=86400";

fn cached<T: Serialize>(body: T) -> Response {
    let mut response = Json(body).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    response
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageType {
    message_type_id: String,
    message_type_name: TranslatedString,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_type_description: Option<TranslatedString>,
    validity_period: ValidityPeriod,
    sender_organization_ids: Vec<String>,
    sender_application_ids: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SenderOrganization {
    organization_id: String,
    organization_short_name: TranslatedString,
    #[serde(skip_serializing_if = "Option::is_none")]
    organization_long_name: Option<TranslatedString>,
    organization_logos: Vec<Image>,
    #[serde(skip_serializing_if = "Option::is_none")]
    organization_url: Option<TranslatedString>,
    sender_application_ids: Vec<String>,
    message_type_ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    contact_business: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    contact_technical: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SenderApplication {
    application_id: String,
    application_name: TranslatedString,
    #[serde(skip_serializing_if = "Option::is_none")]
    application_description: Option<TranslatedString>,
    application_logos: Vec<Image>,
    #[serde(skip_serializing_if = "Option::is_none")]
    application_url: Option<TranslatedString>,
    sender_organization_ids: Vec<String>,
    message_type_ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    contact_business: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    contact_technical: Option<String>,
}

/// The contract's `Image`: a logo's metadata and where its bytes are.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    image_id: String,
    /// In kilobytes, as the contract says.
    size: f64,
    media_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    language: Option<String>,
    content_href: String,
}

/// A `message_types` row: id, name, description, validity number and unit.
type TypeRow = (
    String,
    Jsonb<TranslatedString>,
    Option<Jsonb<TranslatedString>>,
    i32,
    String,
);

/// A shown sender: what its organisation's entry takes from it.
#[derive(Default, sqlx::FromRow)]
struct SenderRow {
    id: String,
    organization_id: String,
    name: Jsonb<TranslatedString>,
    long_name: Option<Jsonb<TranslatedString>>,
    url: Option<Jsonb<TranslatedString>>,
    contact_business: Option<String>,
    contact_technical: Option<String>,
}

/// An application of a shown sender.
#[derive(Default, sqlx::FromRow)]
struct ApplicationRow {
    sender_id: String,
    id: String,
    name: Jsonb<TranslatedString>,
    description: Option<Jsonb<TranslatedString>>,
    url: Option<Jsonb<TranslatedString>>,
    contact_business: Option<String>,
    contact_technical: Option<String>,
}

/// A logo of a shown sender (`application_id` none) or of one of its applications, without
/// its bytes.
#[derive(Default, sqlx::FromRow)]
struct LogoRow {
    sender_id: String,
    application_id: Option<String>,
    image_id: String,
    media_type: String,
    language: Option<String>,
    size: i64,
}

/// The registry as the reference data shows it (shown senders only).
struct Registry {
    types: Vec<MessageType>,
    organizations: Vec<SenderOrganization>,
    applications: Vec<SenderApplication>,
}

/// The registry's tables as read, before they are cross-referenced.
struct RegistryRows {
    /// Shown senders, registered first, then by id.
    senders: Vec<SenderRow>,
    /// Applications of shown senders, by id, then as their senders are ordered.
    apps: Vec<ApplicationRow>,
    /// Their logos, in the registry file's order.
    logos: Vec<LogoRow>,
    /// Message types shown senders may send: sender id, message type id.
    allowed: Vec<(String, String)>,
    types: Vec<TypeRow>,
}

async fn registry(state: &AppState) -> Result<Registry, ApiError> {
    let rows = read_registry(&state.pool).await?;
    Ok(assemble(rows, &crate::citizen::href_base(state)))
}

async fn read_registry(pool: &PgPool) -> Result<RegistryRows, ApiError> {
    let senders = sqlx::query_as(
        "SELECT id, organization_id, name, long_name, url, contact_business, contact_technical
           FROM reference_senders ORDER BY NOT active, id",
    )
    .fetch_all(pool)
    .await?;
    let apps = sqlx::query_as(
        "SELECT a.sender_id, a.id, a.name, a.description, a.url, a.contact_business,
                a.contact_technical
           FROM sender_applications a JOIN reference_senders s ON s.id = a.sender_id
          ORDER BY a.id, NOT s.active, a.sender_id",
    )
    .fetch_all(pool)
    .await?;
    let logos = sqlx::query_as(
        "SELECT sender_id, application_id, image_id, media_type, language, size FROM (
           SELECT l.sender_id, NULL::text AS application_id, l.image_id, l.media_type,
                  l.language, octet_length(l.content)::bigint AS size, l.position
             FROM sender_logos l JOIN reference_senders s ON s.id = l.sender_id
           UNION ALL
           SELECT l.sender_id, l.application_id, l.image_id, l.media_type, l.language,
                  octet_length(l.content)::bigint, l.position
             FROM application_logos l JOIN reference_senders s ON s.id = l.sender_id
         ) logos ORDER BY sender_id, application_id NULLS FIRST, position",
    )
    .fetch_all(pool)
    .await?;
    let allowed = sqlx::query_as(
        "SELECT t.sender_id, t.message_type_id FROM sender_message_types t
           JOIN reference_senders s ON s.id = t.sender_id",
    )
    .fetch_all(pool)
    .await?;
    let types =
        sqlx::query_as(
            "SELECT id, name, description, validity_number, validity_unit FROM message_types ORDER BY id",
        )
        .fetch_all(pool)
        .await?;
    Ok(RegistryRows {
        senders,
        apps,
        logos,
        allowed,
        types,
    })
}

/// Cross-references the rows: each kind lists the ids of the others it is linked to, sorted and
/// without duplicates. `href_base` is the API's public root (no trailing slash), for the
/// logos' `contentHref`.
fn assemble(rows: RegistryRows, href_base: &str) -> Registry {
    let org_of: HashMap<&str, &str> = rows
        .senders
        .iter()
        .map(|sender| (sender.id.as_str(), sender.organization_id.as_str()))
        .collect();
    Registry {
        organizations: organization_entries(&rows, href_base),
        applications: application_entries(&rows, &org_of, href_base),
        types: message_type_entries(&rows, &org_of),
    }
}

/// One entry per organisation, shown as its first sender has it, with the applications and
/// message types of all its senders.
fn organization_entries(rows: &RegistryRows, href_base: &str) -> Vec<SenderOrganization> {
    let mut organizations: BTreeMap<String, SenderOrganization> = BTreeMap::new();
    for sender in &rows.senders {
        let org = &sender.organization_id;
        let entry = organizations
            .entry(org.clone())
            .or_insert_with(|| SenderOrganization {
                organization_id: org.clone(),
                organization_short_name: sender.name.0.filled(),
                organization_long_name: sender.long_name.as_ref().map(|t| t.0.filled()),
                organization_logos: images(
                    &rows.logos,
                    &sender.id,
                    None,
                    &format!(
                        "{href_base}/referenceData/senderOrganizations/{}",
                        path_segment(org)
                    ),
                ),
                organization_url: sender.url.as_ref().map(|t| t.0.filled()),
                sender_application_ids: Vec::new(),
                message_type_ids: Vec::new(),
                contact_business: sender.contact_business.clone(),
                contact_technical: sender.contact_technical.clone(),
            });
        entry.sender_application_ids.extend(
            rows.apps
                .iter()
                .filter(|a| a.sender_id == sender.id)
                .map(|a| a.id.clone()),
        );
        entry.message_type_ids.extend(
            rows.allowed
                .iter()
                .filter(|t| t.0 == sender.id)
                .map(|t| t.1.clone()),
        );
    }
    let mut organizations: Vec<_> = organizations.into_values().collect();
    for org in &mut organizations {
        org.sender_application_ids = dedup(org.sender_application_ids.drain(..));
        org.message_type_ids = dedup(org.message_type_ids.drain(..));
    }
    organizations
}

/// One entry per application id, shown as its first row has it, with its senders'
/// organisations and message types.
fn application_entries(
    rows: &RegistryRows,
    org_of: &HashMap<&str, &str>,
    href_base: &str,
) -> Vec<SenderApplication> {
    let mut applications: BTreeMap<String, SenderApplication> = BTreeMap::new();
    for app in &rows.apps {
        let entry = applications
            .entry(app.id.clone())
            .or_insert_with(|| SenderApplication {
                application_id: app.id.clone(),
                application_name: app.name.0.filled(),
                application_description: app.description.as_ref().map(|t| t.0.filled()),
                application_logos: images(
                    &rows.logos,
                    &app.sender_id,
                    Some(&app.id),
                    &format!(
                        "{href_base}/referenceData/senderApplications/{}",
                        path_segment(&app.id)
                    ),
                ),
                application_url: app.url.as_ref().map(|t| t.0.filled()),
                sender_organization_ids: Vec::new(),
                message_type_ids: Vec::new(),
                contact_business: app.contact_business.clone(),
                contact_technical: app.contact_technical.clone(),
            });
        if let Some(org) = org_of.get(app.sender_id.as_str()) {
            entry.sender_organization_ids.push((*org).to_owned());
        }
        entry.message_type_ids.extend(
            rows.allowed
                .iter()
                .filter(|t| t.0 == app.sender_id)
                .map(|t| t.1.clone()),
        );
    }
    let mut applications: Vec<_> = applications.into_values().collect();
    for app in &mut applications {
        app.sender_organization_ids = dedup(app.sender_organization_ids.drain(..));
        app.message_type_ids = dedup(app.message_type_ids.drain(..));
    }
    applications
}

/// The logos of a sender (`application` none) or of one of its applications, each with its
/// `contentHref` under `owner_href`.
fn images(
    logos: &[LogoRow],
    sender_id: &str,
    application: Option<&str>,
    owner_href: &str,
) -> Vec<Image> {
    logos
        .iter()
        .filter(|logo| logo.sender_id == sender_id && logo.application_id.as_deref() == application)
        .map(|logo| Image {
            image_id: logo.image_id.clone(),
            size: logo.size as f64 / 1024.0,
            media_type: logo.media_type.clone(),
            language: logo.language.clone(),
            content_href: format!(
                "{owner_href}/images/{}/content",
                path_segment(&logo.image_id)
            ),
        })
        .collect()
}

/// `raw` as one segment of a URL's path: every byte but the unreserved ones (RFC 3986)
/// percent-encoded.
fn path_segment(raw: &str) -> String {
    raw.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Every message type with the organisations and applications of the senders allowed to send
/// it; a type whose validity period is not one the contract can show is left out.
fn message_type_entries(rows: &RegistryRows, org_of: &HashMap<&str, &str>) -> Vec<MessageType> {
    rows.types
        .iter()
        .filter_map(|(id, name, description, number, unit)| {
            let senders_of: Vec<&str> = rows
                .allowed
                .iter()
                .filter(|t| &t.1 == id)
                .map(|t| t.0.as_str())
                .collect();
            Some(MessageType {
                message_type_name: name.0.filled(),
                message_type_description: description.as_ref().map(|d| d.0.filled()),
                validity_period: ValidityPeriod {
                    validity_period_number: u32::try_from(*number).ok()?,
                    validity_period_unit: PeriodUnit::parse(unit)?,
                },
                sender_organization_ids: dedup(
                    senders_of
                        .iter()
                        .filter_map(|s| org_of.get(s).map(|o| (*o).to_owned())),
                ),
                sender_application_ids: dedup(
                    rows.apps
                        .iter()
                        .filter(|a| senders_of.contains(&a.sender_id.as_str()))
                        .map(|a| a.id.clone()),
                ),
                message_type_id: id.clone(),
            })
        })
        .collect()
}

fn dedup(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut items: Vec<String> = items.collect();
    items.sort();
    items.dedup();
    items
}

fn page<T>(items: Vec<T>, query: &HashMap<String, String>) -> Result<Page<T>, ApiError> {
    let number = |name: &str, default: usize, max: usize| match query.get(name) {
        None => Ok(default),
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!("{name} must be a whole number from 1 to {max}"))
            }),
    };
    let page = number("page", 1, i32::MAX as usize)?;
    let size = number("pageSize", 25, 100)?;
    let total_items = items.len() as i64;
    let items = items
        .into_iter()
        .skip((page - 1).saturating_mul(size))
        .take(size)
        .collect();
    Ok(Page { items, total_items })
}

macro_rules! reference_endpoints {
    ($list:ident, $one:ident, $field:ident, $id:ident) => {
        pub async fn $list(
            State(state): State<Arc<AppState>>,
            headers: HeaderMap,
            axum::Extension(slot): axum::Extension<AuditSlot>,
            Query(query): Query<HashMap<String, String>>,
        ) -> Result<Response, ApiError> {
            authenticate(&state, &headers, &slot, SCOPE_REFERENCE_DATA)?;
            Ok(cached(page(registry(&state).await?.$field, &query)?))
        }

        pub async fn $one(
            State(state): State<Arc<AppState>>,
            headers: HeaderMap,
            axum::Extension(slot): axum::Extension<AuditSlot>,
            Path(id): Path<String>,
        ) -> Result<Response, ApiError> {
            authenticate(&state, &headers, &slot, SCOPE_REFERENCE_DATA)?;
            let item = registry(&state)
                .await?
                .$field
                .into_iter()
                .find(|item| item.$id == id)
                .ok_or_else(ApiError::not_found)?;
            Ok(cached(item))
        }
    };
}

reference_endpoints!(message_types, message_type, types, message_type_id);
reference_endpoints!(organizations, organization, organizations, organization_id);
reference_endpoints!(applications, application, applications, application_id);

/// A logo's bytes, with what the response says of them.
#[derive(sqlx::FromRow)]
struct Logo {
    media_type: String,
    sha256: Vec<u8>,
    content: Vec<u8>,
}

/// `GET /referenceData/senderOrganizations/{id}/images/{imageId}/content`: a logo of the
/// organisation as its entry lists it (its first shown sender's).
pub async fn organization_image(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Extension(slot): axum::Extension<AuditSlot>,
    Path((organization_id, image_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers, &slot, SCOPE_REFERENCE_DATA)?;
    refuse_nul(&[&organization_id, &image_id])?;
    let logo: Option<Logo> = sqlx::query_as(
        "SELECT l.media_type, l.sha256, l.content FROM sender_logos l
          WHERE l.image_id = $2
            AND l.sender_id = (SELECT s.id FROM reference_senders s WHERE s.organization_id = $1
                                ORDER BY NOT s.active, s.id LIMIT 1)",
    )
    .bind(&organization_id)
    .bind(&image_id)
    .fetch_optional(&state.pool)
    .await?;
    Ok(logo_response(
        logo.ok_or_else(ApiError::not_found)?,
        &headers,
    ))
}

/// `GET /referenceData/senderApplications/{id}/images/{imageId}/content`: a logo of the
/// application as its entry lists it (its first shown row's).
pub async fn application_image(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Extension(slot): axum::Extension<AuditSlot>,
    Path((application_id, image_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers, &slot, SCOPE_REFERENCE_DATA)?;
    refuse_nul(&[&application_id, &image_id])?;
    let logo: Option<Logo> = sqlx::query_as(
        "SELECT l.media_type, l.sha256, l.content FROM application_logos l
          WHERE l.application_id = $1 AND l.image_id = $2
            AND l.sender_id = (SELECT a.sender_id FROM sender_applications a
                                 JOIN reference_senders s ON s.id = a.sender_id
                                WHERE a.id = $1 ORDER BY NOT s.active, a.sender_id LIMIT 1)",
    )
    .bind(&application_id)
    .bind(&image_id)
    .fetch_optional(&state.pool)
    .await?;
    Ok(logo_response(
        logo.ok_or_else(ApiError::not_found)?,
        &headers,
    ))
}

/// No id holds a NUL (which PostgreSQL refuses in a text parameter): such a path names nothing.
fn refuse_nul(ids: &[&str]) -> Result<(), ApiError> {
    if ids.iter().any(|id| id.contains('\0')) {
        return Err(ApiError::not_found());
    }
    Ok(())
}

/// The logo's bytes as its media type, cacheable for a day with its SHA-256 as the `ETag`; or
/// `304 Not Modified` when the request's `If-None-Match` names that tag. (`nosniff` and the
/// sandbox are layers on the routes: `crate::headers`.)
fn logo_response(logo: Logo, request: &HeaderMap) -> Response {
    let etag = format!("\"{}\"", hex::encode(&logo.sha256));
    let not_modified = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| if_none_match_holds(value, &etag));
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let media_type = HeaderValue::from_str(&logo.media_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream"));
        ([(header::CONTENT_TYPE, media_type)], logo.content).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    response
}

/// Whether an `If-None-Match` value names `etag` (RFC 9110, 13.1.2): `*`, or a list of entity
/// tags compared weakly (a `W/` prefix does not matter).
fn if_none_match_holds(value: &str, etag: &str) -> bool {
    value
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn name(text: &str) -> Jsonb<TranslatedString> {
        Jsonb(TranslatedString {
            fr: Some(text.to_owned()),
            ..Default::default()
        })
    }

    fn pairs<const N: usize>(rows: [(&str, &str); N]) -> Vec<(String, String)> {
        rows.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    fn senders<const N: usize>(rows: [(&str, &str, &str); N]) -> Vec<SenderRow> {
        rows.iter()
            .map(|(id, org, text)| SenderRow {
                id: (*id).to_owned(),
                organization_id: (*org).to_owned(),
                name: name(text),
                ..Default::default()
            })
            .collect()
    }

    fn apps<const N: usize>(rows: [(&str, &str, &str); N]) -> Vec<ApplicationRow> {
        rows.iter()
            .map(|(sender, id, text)| ApplicationRow {
                sender_id: (*sender).to_owned(),
                id: (*id).to_owned(),
                name: name(text),
                ..Default::default()
            })
            .collect()
    }

    fn logo(sender: &str, application: Option<&str>, id: &str, size: i64) -> LogoRow {
        LogoRow {
            sender_id: sender.to_owned(),
            application_id: application.map(str::to_owned),
            image_id: id.to_owned(),
            media_type: "image/png".to_owned(),
            language: None,
            size,
        }
    }

    fn message_type(id: &str, number: i32, unit: &str) -> TypeRow {
        (id.to_owned(), name(id), None, number, unit.to_owned())
    }

    /// Two senders of one organisation sharing an application id, one sender of another; the
    /// first sender of the first organisation shows everything the contract allows.
    fn registry() -> Value {
        let mut senders = senders([
            ("onem-1", "onem", "ONEM"),
            ("onem-2", "onem", "ONEM bis"),
            ("spf", "spf-fin", "SPF"),
        ]);
        senders[0].long_name = Some(name("Office national de l'emploi"));
        senders[0].url = Some(name("https://www.onem.be"));
        senders[0].contact_business = Some("https://www.onem.be/contact".to_owned());
        let mut apps = apps([
            ("onem-1", "claims", "Claims"),
            ("onem-2", "claims", "Claims bis"),
            ("onem-1", "portal", "Portal"),
            ("spf", "tax", "Tax"),
        ]);
        apps[0].description = Some(name("Allocations"));
        let rows = RegistryRows {
            senders,
            apps,
            logos: vec![
                logo("onem-1", None, "onem-logo", 2048),
                logo("onem-1", Some("claims"), "claims-logo", 512),
                logo("onem-2", None, "other-logo", 1024),
                logo("onem-2", Some("claims"), "other-claims-logo", 1024),
            ],
            allowed: pairs([
                ("onem-1", "benefit"),
                ("onem-2", "benefit"),
                ("onem-2", "letter"),
                ("spf", "letter"),
            ]),
            types: vec![
                message_type("benefit", 2, "year"),
                message_type("letter", 30, "day"),
                message_type("negative", -1, "day"),
                message_type("weekly", 1, "week"),
            ],
        };
        let registry = assemble(rows, "https://api.example/ebox");
        json!({
            "types": registry.types,
            "organizations": registry.organizations,
            "applications": registry.applications,
        })
    }

    fn ids(registry: &Value, kind: &str, field: &str) -> Vec<Value> {
        registry[kind]
            .as_array()
            .map(|items| items.iter().map(|item| item[field].clone()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn each_kind_is_listed_once_per_id_in_id_order() {
        let registry = registry();
        for (kind, field, expected) in [
            (
                "organizations",
                "organizationId",
                json!(["onem", "spf-fin"]),
            ),
            (
                "applications",
                "applicationId",
                json!(["claims", "portal", "tax"]),
            ),
            ("types", "messageTypeId", json!(["benefit", "letter"])),
        ] {
            assert_eq!(Value::from(ids(&registry, kind, field)), expected, "{kind}");
        }
    }

    #[test]
    fn each_entry_lists_what_it_is_linked_to_sorted_and_once() {
        let registry = registry();
        let cases = [
            (
                "an organisation has the applications of all its senders",
                "/organizations/0/senderApplicationIds",
                json!(["claims", "portal"]),
            ),
            (
                "an organisation has the message types of all its senders",
                "/organizations/0/messageTypeIds",
                json!(["benefit", "letter"]),
            ),
            (
                "an organisation is named after its first sender by id",
                "/organizations/0/organizationShortName/nl",
                json!("ONEM"),
            ),
            (
                "an application has the organisations of its senders",
                "/applications/0/senderOrganizationIds",
                json!(["onem"]),
            ),
            (
                "an application has the message types of its senders",
                "/applications/0/messageTypeIds",
                json!(["benefit", "letter"]),
            ),
            (
                "a message type has the organisations allowed to send it",
                "/types/1/senderOrganizationIds",
                json!(["onem", "spf-fin"]),
            ),
            (
                "a message type has the applications of the senders allowed to send it",
                "/types/1/senderApplicationIds",
                json!(["claims", "tax"]),
            ),
            (
                "a message type shows its validity period",
                "/types/0/validityPeriod",
                json!({"validityPeriodNumber": 2, "validityPeriodUnit": "year"}),
            ),
            (
                "an organisation shows its first sender's long name",
                "/organizations/0/organizationLongName",
                json!({"nl": "Office national de l'emploi", "fr": "Office national de l'emploi",
                       "de": "Office national de l'emploi"}),
            ),
            (
                "an organisation shows its first sender's URL, in every language",
                "/organizations/0/organizationUrl/de",
                json!("https://www.onem.be"),
            ),
            (
                "an organisation shows its first sender's business contact",
                "/organizations/0/contactBusiness",
                json!("https://www.onem.be/contact"),
            ),
            (
                "an organisation shows its first sender's logos only, sized in kB, with where to get them",
                "/organizations/0/organizationLogos",
                json!([{
                    "imageId": "onem-logo", "size": 2.0, "mediaType": "image/png",
                    "contentHref": "https://api.example/ebox/referenceData/senderOrganizations/onem/images/onem-logo/content"
                }]),
            ),
            (
                "an organisation without logos shows an empty list",
                "/organizations/1/organizationLogos",
                json!([]),
            ),
            (
                "an application shows its first row's description and logos",
                "/applications/0",
                json!({
                    "applicationId": "claims",
                    "applicationName": {"nl": "Claims", "fr": "Claims", "de": "Claims"},
                    "applicationDescription": {"nl": "Allocations", "fr": "Allocations", "de": "Allocations"},
                    "applicationLogos": [{
                        "imageId": "claims-logo", "size": 0.5, "mediaType": "image/png",
                        "contentHref": "https://api.example/ebox/referenceData/senderApplications/claims/images/claims-logo/content"
                    }],
                    "senderOrganizationIds": ["onem"],
                    "messageTypeIds": ["benefit", "letter"],
                }),
            ),
        ];
        for (what, pointer, expected) in cases {
            assert_eq!(registry.pointer(pointer), Some(&expected), "{what}");
        }
    }

    #[test]
    fn if_none_match_names_the_tag_weakly_in_a_list_or_with_a_star() {
        let etag = "\"abc\"";
        for (value, holds) in [
            ("\"abc\"", true),
            ("W/\"abc\"", true),
            ("\"old\", \"abc\"", true),
            ("*", true),
            ("\"old\"", false),
            ("abc", false),
            ("", false),
        ] {
            assert_eq!(if_none_match_holds(value, etag), holds, "{value}");
        }
    }

    #[test]
    fn an_id_in_a_url_is_percent_encoded_but_for_unreserved_characters() {
        assert_eq!(path_segment("claims-2026_v1.0~x"), "claims-2026_v1.0~x");
        assert_eq!(path_segment("a b/é"), "a%20b%2F%C3%A9");
    }
}
