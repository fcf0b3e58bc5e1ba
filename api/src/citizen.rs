//! `/ebox` and `/ebox/messages/**`: a citizen's own messages, and nobody else's.
//!
//! A message that does not exist, expired, or belongs to another citizen gets the same 404 (same
//! body, same single query), so nobody can probe for ids. Expired messages are never returned;
//! hidden ones are listed only when `visible=false` is asked for.

use crate::AppState;
use crate::audit::{AuditSlot, bearer};
use crate::auth::{SCOPE_MESSAGES, SCOPE_SUMMARY};
use crate::error::ApiError;
use crate::model::{
    ATTACHMENT_COLUMNS, AttachmentRow, ContractDate, DOCUMENT_COLUMNS, DocumentRow, Page,
    PaymentData,
};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use domain::citizen::CitizenKeys;
use domain::ssin::Ssin;
use serde::Deserialize;
use sqlx::{Postgres, QueryBuilder};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// Verifies the token for `scope` and records who called in the audit slot: once the token is
/// valid, its client and (when its subject is a national number) the citizen's hash, so that
/// a call refused for its scope or assurance level is on the trail under their name too. Then
/// the citizen's limits ([`crate::limits`]) admit the call, for as long as it lasts.
pub fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    slot: &AuditSlot,
    scope: &str,
) -> Result<(Ssin, CitizenKeys), ApiError> {
    let token = bearer(headers).ok_or_else(ApiError::unauthorized)?;
    let principal = state.verifier.verify(token)?;
    let subject = principal
        .subject
        .as_deref()
        .and_then(|sub| Ssin::parse(sub).ok())
        .map(|ssin| state.hasher.hash(&ssin));
    slot.with(|info| {
        info.client_id = principal.client_id.clone();
        info.ssin_hash = subject;
    });
    let ssin = state.verifier.citizen(&principal, scope)?;
    let citizen = state.hasher.keys(&ssin);
    let permit = state
        .limits
        .admit(citizen.current(), std::time::Instant::now())?;
    slot.hold(permit);
    Ok((ssin, citizen))
}

/// The absolute URL of the API's root, for `contentHref`: configured, never taken from the
/// request (a forged `Host` must not redirect a client's token elsewhere).
pub(crate) fn href_base(state: &AppState) -> String {
    state.public_url.trim_end_matches('/').to_owned()
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    number_of_messages: i64,
    number_of_unread_messages: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_receipt_date: Option<ContractDate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_consultation_date: Option<ContractDate>,
    ebox_size: f64,
}

/// When the citizen last used their eBox before this call: their latest call to their own
/// messages that succeeded (`/ebox` or `/ebox/messages/**`, a `consultation` or an `update`), as
/// the audit trail records it. Reference data and logos are no use of the eBox: the portal
/// fetches them for its pages, whatever the citizen does. The trail already holds every such
/// call, written once the call is answered, so this one is not counted and nothing is written
/// twice; refused calls are not an access. A partial index on (citizen, time) makes it one
/// index range (migration `20261207000005_contract.sql`). The paths are matched under the base
/// path the API serves now, as the records have the URL as the client sent it.
async fn last_consultation(
    state: &AppState,
    citizen: &CitizenKeys,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    let ebox = format!("{}/ebox", state.base_path.trim_end_matches('/'));
    let messages = format!("{ebox}/messages");
    Ok(sqlx::query_scalar(
        "SELECT max(at) FROM audit_events
          WHERE ssin_hash = ANY($1) AND stage = 'api' AND action IN ('consultation', 'update')
            AND (split_part(details->>'url', '?', 1) IN ($2, $3)
                 OR starts_with(split_part(details->>'url', '?', 1), $3 || '/'))",
    )
    .bind(citizen.all())
    .bind(&ebox)
    .bind(&messages)
    .fetch_one(&state.pool)
    .await?)
}

pub async fn summary(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Extension(slot): axum::Extension<AuditSlot>,
) -> Result<Json<Summary>, ApiError> {
    let (_, citizen) = authenticate(&state, &headers, &slot, SCOPE_SUMMARY)?;
    let (number_of_messages, number_of_unread_messages, last_receipt_date, bytes): (
        i64,
        i64,
        Option<DateTime<Utc>>,
        i64,
    ) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE d.read_at IS NULL), max(d.receipt_date),
                coalesce(sum((SELECT sum(a.size) FROM document_attachments a
                              WHERE a.message_id = d.message_id)), 0)::bigint
           FROM documents d
          WHERE d.citizen = ANY($1) AND d.published AND d.expiration_date > now() AND d.visible",
    )
    .bind(citizen.all())
    .fetch_one(&state.pool)
    .await?;
    let last_consultation_date = last_consultation(&state, &citizen).await?;
    Ok(Json(Summary {
        number_of_messages,
        number_of_unread_messages,
        last_receipt_date: last_receipt_date.map(ContractDate::from),
        last_consultation_date: last_consultation_date.map(ContractDate::from),
        ebox_size: bytes as f64 / 1024.0,
    }))
}

/// The list filters, checked one by one so that a bad one gets a `StatusMessage` naming it.
struct Filters {
    page: i64,
    page_size: i64,
    received_before: Option<DateTime<Utc>>,
    received_after: Option<DateTime<Utc>>,
    expired_before: Option<DateTime<Utc>>,
    expired_after: Option<DateTime<Utc>>,
    read_status: Option<bool>,
    visible: bool,
    message_type_id: Option<String>,
    sender_organization_id: Option<String>,
    sender_application_id: Option<String>,
    registered_mail: Option<bool>,
    q: Option<String>,
    qlang: Option<String>,
}

impl Filters {
    fn parse(query: &HashMap<String, String>) -> Result<Self, ApiError> {
        let qlang = search_language(query)?;
        Ok(Self {
            page: whole_number(query, "page", 1, 1..=i64::from(i32::MAX))?,
            page_size: whole_number(query, "pageSize", 25, 1..=100)?,
            received_before: date(query, "receivedBefore")?,
            received_after: date(query, "receivedAfter")?,
            expired_before: date(query, "expiredBefore")?,
            expired_after: date(query, "expiredAfter")?,
            read_status: boolean(query, "readStatus")?,
            visible: boolean(query, "visible")?.unwrap_or(true),
            message_type_id: query.get("messageTypeId").cloned(),
            sender_organization_id: query.get("senderOrganizationId").cloned(),
            sender_application_id: query.get("senderApplicationId").cloned(),
            registered_mail: boolean(query, "registeredMail")?,
            q: query.get("q").cloned().filter(|q| !q.is_empty()),
            qlang,
        })
    }

    /// Appends the WHERE clause (the citizen, not expired, and every filter given).
    fn push_where(&self, sql: &mut QueryBuilder<Postgres>, citizen: &[String]) {
        sql.push(" WHERE d.citizen = ANY(")
            .push_bind(citizen.to_vec())
            .push(")");
        sql.push(" AND d.published AND d.expiration_date > now() AND d.visible = ")
            .push_bind(self.visible);
        self.push_dates(sql);
        self.push_read_status(sql);
        self.push_sender_ids(sql);
        if let Some(registered) = self.registered_mail {
            sql.push(" AND d.registered_mail = ").push_bind(registered);
        }
        if let (Some(q), Some(lang)) = (&self.q, &self.qlang) {
            push_search(sql, q, lang);
        }
    }

    fn push_dates(&self, sql: &mut QueryBuilder<Postgres>) {
        for (column, op, value) in [
            ("receipt_date", "<", &self.received_before),
            ("receipt_date", ">=", &self.received_after),
            ("expiration_date", "<", &self.expired_before),
            ("expiration_date", ">=", &self.expired_after),
        ] {
            if let Some(value) = value {
                sql.push(format!(" AND d.{column} {op} ")).push_bind(value);
            }
        }
    }

    fn push_read_status(&self, sql: &mut QueryBuilder<Postgres>) {
        if let Some(read) = self.read_status {
            sql.push(if read {
                " AND d.read_at IS NOT NULL"
            } else {
                " AND d.read_at IS NULL"
            });
        }
    }

    /// The message type, sender organisation and sender application filters.
    fn push_sender_ids(&self, sql: &mut QueryBuilder<Postgres>) {
        for (column, value) in [
            ("message_type_id", &self.message_type_id),
            ("sender_organization_id", &self.sender_organization_id),
            ("sender_application_id", &self.sender_application_id),
        ] {
            if let Some(value) = value {
                sql.push(format!(" AND d.{column} = ")).push_bind(value);
            }
        }
    }
}

/// `qlang` if given, which must be a language of the contract; a non-empty `q` needs it.
fn search_language(query: &HashMap<String, String>) -> Result<Option<String>, ApiError> {
    let qlang = query.get("qlang").cloned();
    if let Some(lang) = &qlang
        && !matches!(lang.as_str(), "nl" | "fr" | "de")
    {
        return Err(ApiError::bad_request("qlang must be nl, fr or de"));
    }
    if query.get("q").is_some_and(|q| !q.is_empty()) && qlang.is_none() {
        return Err(ApiError::bad_request("q needs qlang (nl, fr or de)"));
    }
    Ok(qlang)
}

/// The parameter `name` as a whole number within `range`, or `default` when it is absent.
fn whole_number(
    query: &HashMap<String, String>,
    name: &str,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, ApiError> {
    match query.get(name) {
        None => Ok(default),
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{name} must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                ))
            }),
    }
}

/// The parameter `name` as a day (midnight UTC) or an RFC 3339 instant.
fn date(query: &HashMap<String, String>, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    query
        .get(name)
        .map(|raw| {
            NaiveDate::parse_from_str(raw, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
                .or_else(|_| DateTime::parse_from_rfc3339(raw).map(|d| d.with_timezone(&Utc)))
                .map_err(|_| ApiError::bad_request(format!("{name} must be a date (2017-07-01)")))
        })
        .transpose()
}

/// The parameter `name` as exactly `true` or `false`.
fn boolean(query: &HashMap<String, String>, name: &str) -> Result<Option<bool>, ApiError> {
    query
        .get(name)
        .map(|raw| match raw.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(ApiError::bad_request(format!(
                "{name} must be true or false"
            ))),
        })
        .transpose()
}

/// Substring search in the textual metadata in that language — the subject and the names of the
/// message type, sender organisation and application, as shown (a missing language falls back
/// like the display does) — never in the content.
fn push_search(sql: &mut QueryBuilder<Postgres>, q: &str, lang: &str) {
    let pattern = like_pattern(q);
    sql.push(" AND ");
    // Bind each placeholder in order of appearance.
    let condition = search_condition();
    let mut rest = condition.as_str();
    while let Some(at) = rest.find('$') {
        sql.push(&rest[..at]);
        if rest[at..].starts_with("$LANG") {
            sql.push_bind(lang.to_owned());
            rest = &rest[at + 5..];
        } else {
            sql.push_bind(pattern.clone());
            rest = &rest[at + 2..];
        }
    }
    sql.push(rest);
}

/// `%q%` for ILIKE, with the wildcards and the escape character in `q` taken literally.
fn like_pattern(q: &str) -> String {
    format!(
        "%{}%",
        q.replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    )
}

/// The search condition, with `$LANG` for the language and `$P` for the pattern.
fn search_condition() -> String {
    let shown = |column: &str| {
        format!(
            "coalesce({column} ->> $LANG, {column} ->> 'nl', {column} ->> 'fr', {column} ->> 'de')"
        )
    };
    format!(
        "({} ILIKE $P
                  OR EXISTS (SELECT 1 FROM message_types t WHERE t.id = d.message_type_id AND {} ILIKE $P)
                  OR EXISTS (SELECT 1 FROM senders s WHERE s.organization_id = d.sender_organization_id AND {} ILIKE $P)
                  OR EXISTS (SELECT 1 FROM sender_applications a WHERE a.sender_id = d.sender_id
                             AND a.id = d.sender_application_id AND {} ILIKE $P))",
        shown("d.subject"),
        shown("t.name"),
        shown("s.name"),
        shown("a.name"),
    )
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Extension(slot): axum::Extension<AuditSlot>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Page<crate::model::Message>>, ApiError> {
    let (_, citizen) = authenticate(&state, &headers, &slot, SCOPE_MESSAGES)?;
    let filters = Filters::parse(&query)?;
    let mut count = QueryBuilder::new("SELECT count(*) FROM documents d");
    filters.push_where(&mut count, &citizen.all());
    let total_items: i64 = count.build_query_scalar().fetch_one(&state.pool).await?;

    let mut select = QueryBuilder::new(format!("SELECT {DOCUMENT_COLUMNS} FROM documents d"));
    filters.push_where(&mut select, &citizen.all());
    select
        .push(" ORDER BY d.receipt_date DESC, d.message_id LIMIT ")
        .push_bind(filters.page_size)
        .push(" OFFSET ")
        .push_bind((filters.page - 1).saturating_mul(filters.page_size));
    let rows: Vec<DocumentRow> = select.build_query_as().fetch_all(&state.pool).await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.message_id).collect();
    let attachments = attachments_of(&state, &ids).await?;
    let base = href_base(&state);
    let items = rows
        .iter()
        .map(|row| {
            let own = attachments
                .iter()
                .filter(|a| a.message_id == row.message_id)
                .map(|a| a.to_attachment(&base))
                .collect();
            row.to_message(own)
        })
        .collect::<Vec<_>>();
    slot.with(|info| {
        info.details
            .insert("messageIds".into(), serde_json::json!(ids));
    });
    Ok(Json(Page { items, total_items }))
}

async fn attachments_of(state: &AppState, ids: &[Uuid]) -> Result<Vec<AttachmentRow>, ApiError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ATTACHMENT_COLUMNS} FROM document_attachments a
          WHERE a.message_id = ANY($1) ORDER BY a.message_id, a.position"
    )))
    .bind(ids)
    .fetch_all(&state.pool)
    .await?)
}

/// One document's attachments, as the contract shows them.
async fn attachments_of_document(
    state: &AppState,
    document: &DocumentRow,
) -> Result<Vec<crate::model::Attachment>, ApiError> {
    let base = href_base(state);
    Ok(attachments_of(state, &[document.message_id])
        .await?
        .iter()
        .map(|a| a.to_attachment(&base))
        .collect())
}

/// The citizen's live message with this id, or the one 404.
pub async fn own_document(
    state: &AppState,
    citizen: &CitizenKeys,
    raw_id: &str,
) -> Result<DocumentRow, ApiError> {
    let Ok(id) = Uuid::parse_str(raw_id) else {
        return Err(ApiError::not_found());
    };
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {DOCUMENT_COLUMNS} FROM documents d
          WHERE d.message_id = $1 AND d.citizen = ANY($2) AND d.published
            AND d.expiration_date > now()"
    )))
    .bind(id)
    .bind(citizen.all())
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(ApiError::not_found)
}

pub async fn message(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Extension(slot): axum::Extension<AuditSlot>,
    Path(message_id): Path<String>,
) -> Result<Json<crate::model::Message>, ApiError> {
    let (_, citizen) = authenticate(&state, &headers, &slot, SCOPE_MESSAGES)?;
    let document = own_document(&state, &citizen, &message_id).await?;
    slot.with(|info| info.message_id = Some(document.message_id));
    let attachments = attachments_of_document(&state, &document).await?;
    Ok(Json(document.to_message(attachments)))
}

pub async fn attachments(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Extension(slot): axum::Extension<AuditSlot>,
    Path(message_id): Path<String>,
) -> Result<Json<Page<crate::model::Attachment>>, ApiError> {
    let (_, citizen) = authenticate(&state, &headers, &slot, SCOPE_MESSAGES)?;
    let document = own_document(&state, &citizen, &message_id).await?;
    slot.with(|info| info.message_id = Some(document.message_id));
    let items = attachments_of_document(&state, &document).await?;
    let total_items = items.len() as i64;
    Ok(Json(Page { items, total_items }))
}

async fn own_attachment(
    state: &AppState,
    document: &DocumentRow,
    raw_id: &str,
) -> Result<AttachmentRow, ApiError> {
    let Ok(id) = Uuid::parse_str(raw_id) else {
        return Err(ApiError::not_found());
    };
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ATTACHMENT_COLUMNS} FROM document_attachments a
          WHERE a.message_id = $1 AND a.attachment_id = $2"
    )))
    .bind(document.message_id)
    .bind(id)
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(ApiError::not_found)
}

fn attachment_details(slot: &AuditSlot, attachment: &AttachmentRow) {
    slot.with(|info| {
        info.message_id = Some(attachment.message_id);
        info.details.insert(
            "attachments".into(),
            serde_json::json!([{
                "attachmentId": attachment.attachment_id,
                "mediaType": attachment.media_type,
                "size": attachment.size,
                "digest": domain::digest::Sha256Digest::from_slice(&attachment.sha256)
                    .map(|d| d.to_base64url()),
            }]),
        );
    });
}

pub async fn attachment(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Extension(slot): axum::Extension<AuditSlot>,
    Path((message_id, attachment_id)): Path<(String, String)>,
) -> Result<Json<crate::model::Attachment>, ApiError> {
    let (_, citizen) = authenticate(&state, &headers, &slot, SCOPE_MESSAGES)?;
    let document = own_document(&state, &citizen, &message_id).await?;
    let row = own_attachment(&state, &document, &attachment_id).await?;
    attachment_details(&slot, &row);
    Ok(Json(row.to_attachment(&href_base(&state))))
}

pub async fn content(
    State(state): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    axum::Extension(slot): axum::Extension<AuditSlot>,
    Path((message_id, attachment_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (ssin, citizen) = authenticate(&state, &headers, &slot, SCOPE_MESSAGES)?;
    let document = own_document(&state, &citizen, &message_id).await?;
    let row = own_attachment(&state, &document, &attachment_id).await?;
    attachment_details(&slot, &row);
    let bytes = crate::download::attachment_body(
        state.pool.clone(),
        row.message_id,
        row.attachment_id,
        row.size,
    );
    let response = (
        [
            (header::CONTENT_TYPE, row.media_type.clone()),
            (
                header::CONTENT_DISPOSITION,
                content_disposition(&row.file_name),
            ),
            (header::CONTENT_LENGTH, row.size.to_string()),
        ],
        bytes,
    )
        .into_response();
    // Only a GET that is about to deliver the bytes counts as reading (not a HEAD).
    if row.main_content && method == Method::GET {
        crate::read::mark_read(&state, &document, &ssin).await;
    }
    Ok(response)
}

pub async fn body(
    State(state): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    axum::Extension(slot): axum::Extension<AuditSlot>,
    Path(message_id): Path<String>,
) -> Result<Json<domain::translated::TranslatedString>, ApiError> {
    let (ssin, citizen) = authenticate(&state, &headers, &slot, SCOPE_MESSAGES)?;
    let document = own_document(&state, &citizen, &message_id).await?;
    slot.with(|info| info.message_id = Some(document.message_id));
    let body = document
        .body_content
        .as_ref()
        .map(|b| b.0.filled())
        .ok_or_else(ApiError::not_found)?;
    if document.body_main_content && method == Method::GET {
        crate::read::mark_read(&state, &document, &ssin).await;
    }
    Ok(Json(body))
}

/// `GET /ebox/messages/{id}/paymentData`: what the citizen is asked to pay, or a 404 when the
/// message asks nothing (the contract's "PaymentData not found").
pub async fn payment_data(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Extension(slot): axum::Extension<AuditSlot>,
    Path(message_id): Path<String>,
) -> Result<Json<PaymentData>, ApiError> {
    let (_, citizen) = authenticate(&state, &headers, &slot, SCOPE_MESSAGES)?;
    let document = own_document(&state, &citizen, &message_id).await?;
    slot.with(|info| info.message_id = Some(document.message_id));
    document.payment().map(Json).ok_or_else(ApiError::not_found)
}

/// `attachment; filename="…"; filename*=UTF-8''…`: an ASCII fallback without quotes or control
/// characters, and the exact name percent-encoded (RFC 6266).
fn content_disposition(file_name: &str) -> String {
    let fallback: String = file_name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = file_name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// Items one PATCH may change.
const MAX_UPDATES: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessagesToUpdate {
    items: Vec<MessageToUpdate>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageToUpdate {
    message_id: String,
    visible: bool,
}

/// `PATCH /ebox/messages` (`application/merge-patch+json`): hide or show messages. All or
/// nothing: one id that is not the citizen's live message makes it a 404 and changes nothing.
/// The audit record of a change is written in its transaction: both commit, or neither.
pub async fn update(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Extension(slot): axum::Extension<AuditSlot>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (_, citizen) = authenticate(&state, &headers, &slot, SCOPE_MESSAGES)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !(content_type.starts_with("application/merge-patch+json")
        || content_type.starts_with("application/json"))
    {
        return Err(ApiError::bad_request(
            "the body must be application/merge-patch+json",
        ));
    }
    let request: MessagesToUpdate = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not a MessagesToUpdate: {e}")))?;
    if request.items.len() > MAX_UPDATES {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_UPDATES} items per request"
        )));
    }
    let mut tx = state.pool.begin().await?;
    let mut changed = Vec::new();
    for item in &request.items {
        let Ok(id) = Uuid::parse_str(&item.message_id) else {
            return Err(ApiError::not_found());
        };
        let updated = sqlx::query(
            "UPDATE documents SET visible = $3
              WHERE message_id = $1 AND citizen = ANY($2) AND published
                AND expiration_date > now()",
        )
        .bind(id)
        .bind(citizen.all())
        .bind(item.visible)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            return Err(ApiError::not_found());
        }
        changed.push(serde_json::json!({"messageId": id, "visible": item.visible}));
    }
    record_update(&mut tx, &slot, &changed).await?;
    tx.commit().await?;
    slot.mark_recorded();
    Ok(Json(
        serde_json::json!({"items": changed, "totalItems": changed.len()}),
    ))
}

/// The PATCH's audit record, in the transaction of the change it records. Should the commit
/// fail, the middleware records the failed call instead, without the changes that did not
/// happen.
async fn record_update(
    tx: &mut sqlx::PgConnection,
    slot: &AuditSlot,
    changed: &[serde_json::Value],
) -> Result<(), ApiError> {
    let Some(mut event) = slot.event(axum::http::StatusCode::OK) else {
        return Ok(());
    };
    if let serde_json::Value::Object(details) = &mut event.details {
        details.insert("updated".into(), serde_json::json!(changed));
    }
    event.record(tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    /// The WHERE clause the filters of `pairs` append, or the message of their rejection.
    fn where_clause(pairs: &[(&str, &str)]) -> Result<String, String> {
        let filters = Filters::parse(&query(pairs)).map_err(|e| e.message)?;
        let mut sql = QueryBuilder::<Postgres>::new("");
        filters.push_where(&mut sql, &["citizen".to_owned()]);
        Ok(sql.sql().as_ref().to_owned())
    }

    /// What the case shows, its query, and what it must give.
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static str,
    );

    const OWN_LIVE: &str = " WHERE d.citizen = ANY($1) AND d.published AND d.expiration_date > now() AND d.visible = $2";

    #[test]
    fn a_file_name_cannot_break_the_header() {
        let header = content_disposition("a\u{1}\"b\r\n.pdf");
        assert!(
            header.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "{header}"
        );
        assert!(axum::http::HeaderValue::from_str(&header).is_ok());
        assert_eq!(
            content_disposition("attest été.pdf"),
            "attachment; filename=\"attest _t_.pdf\"; filename*=UTF-8''attest%20%C3%A9t%C3%A9.pdf"
        );
    }

    #[test]
    fn a_bad_filter_is_refused_with_a_message_naming_it() {
        let cases: &[Case] = &[
            (
                "a page below one",
                &[("page", "0")],
                "page must be a whole number from 1 to 2147483647",
            ),
            (
                "a page beyond the 32-bit range",
                &[("page", "2147483648")],
                "page must be a whole number from 1 to 2147483647",
            ),
            (
                "a page size over a hundred",
                &[("pageSize", "101")],
                "pageSize must be a whole number from 1 to 100",
            ),
            (
                "a date that is not one",
                &[("receivedAfter", "yesterday")],
                "receivedAfter must be a date (2017-07-01)",
            ),
            (
                "an empty date",
                &[("expiredBefore", "")],
                "expiredBefore must be a date (2017-07-01)",
            ),
            (
                "a flag other than true or false",
                &[("readStatus", "True")],
                "readStatus must be true or false",
            ),
            (
                "a visibility other than true or false",
                &[("visible", "1")],
                "visible must be true or false",
            ),
            (
                "a search language outside nl, fr and de",
                &[("qlang", "en")],
                "qlang must be nl, fr or de",
            ),
            (
                "a search without a language",
                &[("q", "tax")],
                "q needs qlang (nl, fr or de)",
            ),
            (
                "a bad language before a bad page",
                &[("qlang", "en"), ("page", "x")],
                "qlang must be nl, fr or de",
            ),
            (
                "a bad page before a bad date",
                &[("page", "x"), ("receivedBefore", "x")],
                "page must be a whole number from 1 to 2147483647",
            ),
            (
                "a bad date before a bad flag",
                &[("readStatus", "x"), ("expiredAfter", "x")],
                "expiredAfter must be a date (2017-07-01)",
            ),
        ];
        for (what, pairs, message) in cases {
            assert_eq!(
                where_clause(pairs).err().as_deref(),
                Some(*message),
                "{what}"
            );
        }
    }

    #[test]
    fn filter_values_are_read_in_their_documented_forms() {
        let day = |raw: &str| date(&query(&[("d", raw)]), "d").ok().flatten();
        let midnight = NaiveDate::from_ymd_opt(2017, 7, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc());
        assert_eq!(day("2017-07-01"), midnight, "a day is its midnight in UTC");
        assert_eq!(
            day("2017-07-01T02:00:00+02:00"),
            midnight,
            "an instant is taken in UTC"
        );
        let none = query(&[]);
        assert_eq!(date(&none, "d").ok(), Some(None), "an absent date is none");
        assert_eq!(
            boolean(&none, "b").ok(),
            Some(None),
            "an absent flag is none"
        );
        for (raw, expected) in [("true", true), ("false", false)] {
            assert_eq!(
                boolean(&query(&[("b", raw)]), "b").ok(),
                Some(Some(expected)),
                "{raw}"
            );
        }
        for (pairs, expected) in [
            (&[][..], 25),
            (&[("n", "1")][..], 1),
            (&[("n", "+100")][..], 100),
        ] {
            assert_eq!(
                whole_number(&query(pairs), "n", 25, 1..=100).ok(),
                Some(expected),
                "{pairs:?}"
            );
        }
        for (pairs, expected) in [
            (&[][..], None),
            (&[("q", "")][..], None),
            (&[("q", ""), ("qlang", "de")][..], Some("de")),
            (&[("q", "tax"), ("qlang", "fr")][..], Some("fr")),
        ] {
            assert_eq!(
                search_language(&query(pairs)).ok(),
                Some(expected.map(str::to_owned)),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn each_filter_given_adds_its_condition_in_a_fixed_order() {
        let cases: &[Case] = &[
            ("no filter", &[], ""),
            ("hidden messages", &[("visible", "false")], ""),
            (
                "received before a day",
                &[("receivedBefore", "2017-07-01")],
                " AND d.receipt_date < $3",
            ),
            (
                "every date bound",
                &[
                    ("expiredAfter", "2017-07-01"),
                    ("receivedAfter", "2017-07-01"),
                    ("expiredBefore", "2017-07-01"),
                    ("receivedBefore", "2017-07-01"),
                ],
                " AND d.receipt_date < $3 AND d.receipt_date >= $4 \
                 AND d.expiration_date < $5 AND d.expiration_date >= $6",
            ),
            (
                "read",
                &[("readStatus", "true")],
                " AND d.read_at IS NOT NULL",
            ),
            (
                "unread",
                &[("readStatus", "false")],
                " AND d.read_at IS NULL",
            ),
            (
                "the sender ids",
                &[
                    ("senderApplicationId", "a"),
                    ("messageTypeId", "t"),
                    ("senderOrganizationId", "o"),
                ],
                " AND d.message_type_id = $3 AND d.sender_organization_id = $4 \
                 AND d.sender_application_id = $5",
            ),
            (
                "registered mail after read status",
                &[("registeredMail", "false"), ("readStatus", "false")],
                " AND d.read_at IS NULL AND d.registered_mail = $3",
            ),
            ("an empty search", &[("q", ""), ("qlang", "nl")], ""),
        ];
        for (what, pairs, conditions) in cases {
            assert_eq!(
                where_clause(pairs).ok(),
                Some(format!("{OWN_LIVE}{conditions}")),
                "{what}"
            );
        }
    }

    #[test]
    fn a_search_numbers_its_language_and_pattern_placeholders_in_order() {
        let clause = where_clause(&[("q", "tax"), ("readStatus", "true"), ("qlang", "nl")])
            .expect("valid filters");
        let search = clause
            .strip_prefix(&format!("{OWN_LIVE} AND d.read_at IS NOT NULL AND ("))
            .expect("the search comes last");
        assert!(
            !search.contains("$LANG") && !search.contains("$P"),
            "{search}"
        );
        for (at, n) in (3..=10).enumerate() {
            let placeholder = format!("${n}");
            assert!(search.contains(&placeholder), "{placeholder} in {search}");
            let language = at % 2 == 0;
            let bound = if language {
                format!(" ->> {placeholder},")
            } else {
                format!(" ILIKE {placeholder}")
            };
            assert!(search.contains(&bound), "{bound} in {search}");
        }
        assert!(!search.contains("$11"), "{search}");
    }

    #[test]
    fn wildcards_in_a_search_are_matched_literally() {
        for (q, pattern) in [
            ("tax", "%tax%"),
            ("50%", "%50\\%%"),
            ("a_b", "%a\\_b%"),
            ("c:\\tmp", "%c:\\\\tmp%"),
        ] {
            assert_eq!(like_pattern(q), pattern, "{q}");
        }
    }
}
