//! `/referenceData/**`: message types, sender organisations and applications, from the
//! registry. Cacheable for a day, as the federation recommends.

use crate::AppState;
use crate::audit::AuditSlot;
use crate::auth::SCOPE_REFERENCE_DATA;
use crate::citizen::authenticate;
use crate::error::ApiError;
use crate::model::Page;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
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
    sender_application_ids: Vec<String>,
    message_type_ids: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SenderApplication {
    application_id: String,
    application_name: TranslatedString,
    sender_organization_ids: Vec<String>,
    message_type_ids: Vec<String>,
}

/// A `message_types` row: id, name, description, validity number and unit.
type TypeRow = (
    String,
    Jsonb<TranslatedString>,
    Option<Jsonb<TranslatedString>>,
    i32,
    String,
);

/// The registry as the reference data shows it (active senders only).
struct Registry {
    types: Vec<MessageType>,
    organizations: Vec<SenderOrganization>,
    applications: Vec<SenderApplication>,
}

/// The registry's tables as read, before they are cross-referenced.
struct RegistryRows {
    /// Active senders: id, organisation id, name.
    senders: Vec<(String, String, Jsonb<TranslatedString>)>,
    /// Applications of active senders: sender id, application id, name.
    apps: Vec<(String, String, Jsonb<TranslatedString>)>,
    /// Message types active senders may send: sender id, message type id.
    allowed: Vec<(String, String)>,
    types: Vec<TypeRow>,
}

async fn registry(state: &AppState) -> Result<Registry, ApiError> {
    let rows = read_registry(&state.pool).await?;
    Ok(assemble(rows))
}

async fn read_registry(pool: &PgPool) -> Result<RegistryRows, ApiError> {
    let senders =
        sqlx::query_as("SELECT id, organization_id, name FROM senders WHERE active ORDER BY id")
            .fetch_all(pool)
            .await?;
    let apps = sqlx::query_as(
        "SELECT a.sender_id, a.id, a.name FROM sender_applications a
           JOIN senders s ON s.id = a.sender_id WHERE s.active ORDER BY a.id",
    )
    .fetch_all(pool)
    .await?;
    let allowed = sqlx::query_as(
        "SELECT t.sender_id, t.message_type_id FROM sender_message_types t
           JOIN senders s ON s.id = t.sender_id WHERE s.active",
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
        allowed,
        types,
    })
}

/// Cross-references the rows: each kind lists the ids of the others it is linked to, sorted and
/// without duplicates.
fn assemble(rows: RegistryRows) -> Registry {
    let org_of: HashMap<&str, &str> = rows
        .senders
        .iter()
        .map(|(id, org, _)| (id.as_str(), org.as_str()))
        .collect();
    Registry {
        organizations: organization_entries(&rows),
        applications: application_entries(&rows, &org_of),
        types: message_type_entries(&rows, &org_of),
    }
}

/// One entry per organisation, named after its first sender (by id), with the applications and
/// message types of all its senders.
fn organization_entries(rows: &RegistryRows) -> Vec<SenderOrganization> {
    let mut organizations: BTreeMap<String, SenderOrganization> = BTreeMap::new();
    for (id, org, name) in &rows.senders {
        let entry = organizations
            .entry(org.clone())
            .or_insert_with(|| SenderOrganization {
                organization_id: org.clone(),
                organization_short_name: name.0.filled(),
                sender_application_ids: Vec::new(),
                message_type_ids: Vec::new(),
            });
        entry
            .sender_application_ids
            .extend(rows.apps.iter().filter(|a| &a.0 == id).map(|a| a.1.clone()));
        entry.message_type_ids.extend(
            rows.allowed
                .iter()
                .filter(|t| &t.0 == id)
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

/// One entry per application id, named after its first row, with its senders' organisations
/// and message types.
fn application_entries(
    rows: &RegistryRows,
    org_of: &HashMap<&str, &str>,
) -> Vec<SenderApplication> {
    let mut applications: BTreeMap<String, SenderApplication> = BTreeMap::new();
    for (sender, id, name) in &rows.apps {
        let entry = applications
            .entry(id.clone())
            .or_insert_with(|| SenderApplication {
                application_id: id.clone(),
                application_name: name.0.filled(),
                sender_organization_ids: Vec::new(),
                message_type_ids: Vec::new(),
            });
        if let Some(org) = org_of.get(sender.as_str()) {
            entry.sender_organization_ids.push((*org).to_owned());
        }
        entry.message_type_ids.extend(
            rows.allowed
                .iter()
                .filter(|t| &t.0 == sender)
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
                        .filter(|a| senders_of.contains(&a.0.as_str()))
                        .map(|a| a.1.clone()),
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

    fn named<const N: usize>(
        rows: [(&str, &str, &str); N],
    ) -> Vec<(String, String, Jsonb<TranslatedString>)> {
        rows.iter()
            .map(|(a, b, text)| ((*a).to_owned(), (*b).to_owned(), name(text)))
            .collect()
    }

    fn message_type(id: &str, number: i32, unit: &str) -> TypeRow {
        (id.to_owned(), name(id), None, number, unit.to_owned())
    }

    /// Two senders of one organisation sharing an application id, one sender of another.
    fn registry() -> Value {
        let rows = RegistryRows {
            senders: named([
                ("onem-1", "onem", "ONEM"),
                ("onem-2", "onem", "ONEM bis"),
                ("spf", "spf-fin", "SPF"),
            ]),
            apps: named([
                ("onem-2", "claims", "Claims bis"),
                ("onem-1", "claims", "Claims"),
                ("onem-1", "portal", "Portal"),
                ("spf", "tax", "Tax"),
            ]),
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
        let registry = assemble(rows);
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
        ];
        for (what, pointer, expected) in cases {
            assert_eq!(registry.pointer(pointer), Some(&expected), "{what}");
        }
    }
}
