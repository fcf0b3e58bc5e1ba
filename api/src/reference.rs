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
use common::registry::{PeriodUnit, ValidityPeriod};
use common::translated::TranslatedString;
use serde::Serialize;
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

async fn registry(state: &AppState) -> Result<Registry, ApiError> {
    let senders: Vec<(String, String, Jsonb<TranslatedString>)> =
        sqlx::query_as("SELECT id, organization_id, name FROM senders WHERE active ORDER BY id")
            .fetch_all(&state.pool)
            .await?;
    let apps: Vec<(String, String, Jsonb<TranslatedString>)> = sqlx::query_as(
        "SELECT a.sender_id, a.id, a.name FROM sender_applications a
           JOIN senders s ON s.id = a.sender_id WHERE s.active ORDER BY a.id",
    )
    .fetch_all(&state.pool)
    .await?;
    let allowed: Vec<(String, String)> = sqlx::query_as(
        "SELECT t.sender_id, t.message_type_id FROM sender_message_types t
           JOIN senders s ON s.id = t.sender_id WHERE s.active",
    )
    .fetch_all(&state.pool)
    .await?;
    let types: Vec<TypeRow> =
        sqlx::query_as(
            "SELECT id, name, description, validity_number, validity_unit FROM message_types ORDER BY id",
        )
        .fetch_all(&state.pool)
        .await?;

    let org_of: HashMap<&str, &str> = senders
        .iter()
        .map(|(id, org, _)| (id.as_str(), org.as_str()))
        .collect();
    let mut organizations: BTreeMap<String, SenderOrganization> = BTreeMap::new();
    for (id, org, name) in &senders {
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
            .extend(apps.iter().filter(|a| &a.0 == id).map(|a| a.1.clone()));
        entry
            .message_type_ids
            .extend(allowed.iter().filter(|t| &t.0 == id).map(|t| t.1.clone()));
    }
    let mut applications: BTreeMap<String, SenderApplication> = BTreeMap::new();
    for (sender, id, name) in &apps {
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
            allowed
                .iter()
                .filter(|t| &t.0 == sender)
                .map(|t| t.1.clone()),
        );
    }
    let types = types
        .into_iter()
        .filter_map(|(id, name, description, number, unit)| {
            let senders_of: Vec<&str> = allowed
                .iter()
                .filter(|t| t.1 == id)
                .map(|t| t.0.as_str())
                .collect();
            Some(MessageType {
                message_type_name: name.0.filled(),
                message_type_description: description.map(|d| d.0.filled()),
                validity_period: ValidityPeriod {
                    validity_period_number: u32::try_from(number).ok()?,
                    validity_period_unit: PeriodUnit::parse(&unit)?,
                },
                sender_organization_ids: dedup(
                    senders_of
                        .iter()
                        .filter_map(|s| org_of.get(s).map(|o| (*o).to_owned())),
                ),
                sender_application_ids: dedup(
                    apps.iter()
                        .filter(|a| senders_of.contains(&a.0.as_str()))
                        .map(|a| a.1.clone()),
                ),
                message_type_id: id,
            })
        })
        .collect();
    let mut organizations: Vec<_> = organizations.into_values().collect();
    for org in &mut organizations {
        org.sender_application_ids = dedup(org.sender_application_ids.drain(..));
        org.message_type_ids = dedup(org.message_type_ids.drain(..));
    }
    let mut applications: Vec<_> = applications.into_values().collect();
    for app in &mut applications {
        app.sender_organization_ids = dedup(app.sender_organization_ids.drain(..));
        app.message_type_ids = dedup(app.message_type_ids.drain(..));
    }
    Ok(Registry {
        types,
        organizations,
        applications,
    })
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
