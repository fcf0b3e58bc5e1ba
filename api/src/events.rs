//! `GET /ebox/citizen/document/events`: the federation's document events as a feed — the
//! citizen variant of the event API's `getEboxEnterpriseDocumentEvents`
//! (`ebox-enterprise-event-api-1.1.1.yaml`), answering an `EboxCitizenDocumentEventPage`
//! (`api/openapi.yaml`): the events in `EboxCitizenDocumentEvents`, and `pageInfo`.
//!
//! The reader is an application, not a citizen: the `client_id` of a token with the
//! `ebox:events` scope that is not a citizen's ([`crate::auth::Verifier::client`]); the feed
//! holds every citizen's events. A `clientId` parameter, when given, must name that client.
//!
//! Only numbered events are served, in number order; before it reads, the handler numbers
//! what committed since the last pass ([`records::events::number_committed`]), so a reader
//! paging with `lastSequenceNbr` sees every event, one committed late included, exactly once.

use crate::AppState;
use crate::audit::{AuditSlot, bearer};
use crate::auth::SCOPE_EVENTS;
use crate::error::ApiError;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use domain::events::EventPageItem;
use records::events::NUMBER_AT_ONCE;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

/// The largest `pageSize`: an event is well under a kilobyte.
pub const MAX_PAGE_SIZE: i64 = 1000;

/// `EboxCitizenDocumentEventPage`.
#[derive(Debug, Serialize)]
pub struct EventPage {
    #[serde(rename = "EboxCitizenDocumentEvents")]
    events: Vec<EventPageItem>,
    #[serde(rename = "pageInfo")]
    page_info: PageInfo,
}

/// `EventPageInfo`: the number to ask after next time, and whether more is waiting now.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PageInfo {
    last_sequence_nbr: i64,
    has_next: bool,
}

/// The parameters, each checked so that a bad one gets a `StatusMessage` naming it.
#[derive(Debug, PartialEq)]
struct FeedRequest {
    last_sequence_nbr: i64,
    page_size: i64,
    start_time: Option<DateTime<Utc>>,
}

impl FeedRequest {
    /// `client` is the token's: a `clientId` parameter must name it.
    fn parse(query: &HashMap<String, String>, client: &str) -> Result<Self, ApiError> {
        if query.contains_key("filter") {
            return Err(ApiError::bad_request(
                "filter is not supported: page with lastSequenceNbr and startTime",
            ));
        }
        if let Some(named) = query.get("clientId")
            && named != client
        {
            return Err(ApiError::forbidden(
                "clientId must be the client the token was issued to",
            ));
        }
        let start_time = query
            .get("startTime")
            .map(|raw| {
                DateTime::parse_from_rfc3339(raw)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| {
                        ApiError::bad_request(
                            "startTime must be a date-time (2026-12-07T10:00:00Z)",
                        )
                    })
            })
            .transpose()?;
        Ok(Self {
            last_sequence_nbr: required_number(query, "lastSequenceNbr", 0..=i64::MAX)?,
            page_size: required_number(query, "pageSize", 1..=MAX_PAGE_SIZE)?,
            start_time,
        })
    }
}

/// The required parameter `name`, a whole number in `range`.
fn required_number(
    query: &HashMap<String, String>,
    name: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, ApiError> {
    let raw = query
        .get(name)
        .ok_or_else(|| ApiError::bad_request(format!("{name} is required")))?;
    raw.parse::<i64>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{name} must be a whole number from {} to {}",
                range.start(),
                range.end()
            ))
        })
}

pub async fn feed(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Extension(slot): axum::Extension<AuditSlot>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<EventPage>, ApiError> {
    let client = authenticate(&state, &headers, &slot)?;
    let request = FeedRequest::parse(&query, &client)?;
    let mut conn = state.pool.acquire().await?;
    records::events::number_committed(&mut conn, NUMBER_AT_ONCE).await?;
    let page = records::events::page(
        &mut conn,
        request.last_sequence_nbr,
        request.start_time,
        request.page_size,
    )
    .await?;
    let last_sequence_nbr = page
        .items
        .last()
        .map_or(request.last_sequence_nbr, |item| item.event_sequence_nbr);
    slot.with(|info| {
        info.details.insert(
            "events".into(),
            serde_json::json!({
                "after": request.last_sequence_nbr,
                "count": page.items.len(),
                "lastSequenceNbr": last_sequence_nbr,
            }),
        );
    });
    Ok(Json(EventPage {
        events: page.items,
        page_info: PageInfo {
            last_sequence_nbr,
            has_next: page.has_next,
        },
    }))
}

/// The client behind the token, recorded in the audit slot once the token is valid.
fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    slot: &AuditSlot,
) -> Result<String, ApiError> {
    let token = bearer(headers).ok_or_else(ApiError::unauthorized)?;
    let principal = state.verifier.verify(token)?;
    slot.with(|info| info.client_id = principal.client_id.clone());
    state.verifier.client(&principal, SCOPE_EVENTS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_feed_parameters_are_read_as_the_event_api_describes_them() {
        let parsed = FeedRequest::parse(
            &query(&[
                ("lastSequenceNbr", "41"),
                ("pageSize", "100"),
                ("startTime", "2026-12-07T10:00:00+01:00"),
                ("clientId", "event-engine"),
            ]),
            "event-engine",
        )
        .expect("valid");
        assert_eq!(
            parsed,
            FeedRequest {
                last_sequence_nbr: 41,
                page_size: 100,
                start_time: Some(
                    DateTime::parse_from_rfc3339("2026-12-07T09:00:00Z")
                        .expect("a time")
                        .with_timezone(&Utc)
                ),
            }
        );
    }

    #[test]
    fn every_bad_parameter_is_refused_with_its_name() {
        let cases = [
            (
                vec![("pageSize", "10")],
                StatusCode::BAD_REQUEST,
                "lastSequenceNbr is required",
            ),
            (
                vec![("lastSequenceNbr", "0")],
                StatusCode::BAD_REQUEST,
                "pageSize is required",
            ),
            (
                vec![("lastSequenceNbr", "-1"), ("pageSize", "10")],
                StatusCode::BAD_REQUEST,
                "lastSequenceNbr must be a whole number",
            ),
            (
                vec![("lastSequenceNbr", "0"), ("pageSize", "0")],
                StatusCode::BAD_REQUEST,
                "pageSize must be a whole number from 1 to 1000",
            ),
            (
                vec![("lastSequenceNbr", "0"), ("pageSize", "1001")],
                StatusCode::BAD_REQUEST,
                "pageSize must be a whole number from 1 to 1000",
            ),
            (
                vec![
                    ("lastSequenceNbr", "0"),
                    ("pageSize", "10"),
                    ("startTime", "yesterday"),
                ],
                StatusCode::BAD_REQUEST,
                "startTime must be a date-time",
            ),
            (
                vec![
                    ("lastSequenceNbr", "0"),
                    ("pageSize", "10"),
                    ("filter", "x"),
                ],
                StatusCode::BAD_REQUEST,
                "filter is not supported",
            ),
            (
                vec![
                    ("lastSequenceNbr", "0"),
                    ("pageSize", "10"),
                    ("clientId", "someone-else"),
                ],
                StatusCode::FORBIDDEN,
                "clientId must be the client",
            ),
        ];
        for (pairs, status, message) in cases {
            let refused = FeedRequest::parse(&query(&pairs), "event-engine").expect_err("refused");
            assert_eq!(refused.status, status, "{pairs:?}");
            assert!(
                refused.message.starts_with(message),
                "{pairs:?}: {}",
                refused.message
            );
        }
    }
}
