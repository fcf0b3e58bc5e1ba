//! `POST /searchMessageStatus`: a sender asks where its own messages stand. A sender token
//! (`client_id` = the sender id, scope `ebox:sender`) sees only messages that sender published,
//! addressed to the eBox it names.
//!
//! The request is the contract's `MessagesStatusRequest`; an item that does not fit it — not a
//! `MessageIdEboxId`, a `messageId` that is not one of this provider's (a UUID), an `eboxType`
//! outside the contract's two, or a citizen's `eboxIdValue` that is not a national number — is
//! a 400 naming the item (`[2].eboxId.eboxIdValue …`). A well-formed item the sender cannot
//! see (another sender's message, another eBox, an enterprise's eBox, which this provider
//! does not hold) is left out of the answer.

use crate::AppState;
use crate::audit::{AuditSlot, bearer};
use crate::error::ApiError;
use crate::model::ContractDate;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use domain::ssin::Ssin;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageIdEboxId {
    message_id: String,
    ebox_id: EboxId,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EboxId {
    ebox_type: String,
    ebox_id_value: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageStatus {
    message_id: Uuid,
    ebox_id: EboxId,
    expiration_date: ContractDate,
    read_status: bool,
    visible: bool,
    /// The signed proofs (JWS), so that a sender can fetch them again later.
    #[serde(skip_serializing_if = "Option::is_none")]
    proof_of_deposit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proof_of_reading: Option<String>,
}

pub async fn search_status(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Extension(slot): axum::Extension<AuditSlot>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Vec<MessageStatus>>), ApiError> {
    let token = bearer(&headers).ok_or_else(ApiError::unauthorized)?;
    let principal = state.verifier.verify(token)?;
    slot.with(|info| info.client_id = principal.client_id.clone());
    let sender = state.verifier.sender(&principal)?;
    let request: Vec<serde_json::Value> = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body is not a MessagesStatusRequest (an array of MessageIdEboxId): {e}"
        ))
    })?;
    if request.len() > 100 {
        return Err(ApiError::bad_request("at most 100 messages per request"));
    }
    let items = request
        .into_iter()
        .enumerate()
        .map(|(index, item)| Asked::parse(index, item))
        .collect::<Result<Vec<_>, _>>()?;
    let mut found = Vec::new();
    for Asked { id, ebox_id, ssin } in items {
        let Some(ssin) = ssin else {
            // An enterprise's eBox: well formed, but none is held here.
            continue;
        };
        type Row = (
            DateTime<Utc>,
            Option<DateTime<Utc>>,
            bool,
            Option<String>,
            Option<String>,
        );
        let row: Option<Row> = sqlx::query_as(
            "SELECT d.expiration_date, d.read_at, d.visible, m.proof_of_deposit, m.proof_of_reading
               FROM documents d JOIN messages m ON m.id = d.message_id
              WHERE d.message_id = $1 AND d.sender_id = $2 AND d.citizen = ANY($3)
                AND d.published",
        )
        .bind(id)
        .bind(&sender)
        .bind(state.hasher.keys(&ssin).all())
        .fetch_optional(&state.pool)
        .await?;
        if let Some((expiration_date, read_at, visible, proof_of_deposit, proof_of_reading)) = row {
            found.push(MessageStatus {
                message_id: id,
                ebox_id,
                expiration_date: expiration_date.into(),
                read_status: read_at.is_some(),
                visible,
                proof_of_deposit,
                proof_of_reading,
            });
        }
    }
    slot.with(|info| {
        info.details.insert(
            "messageIds".into(),
            serde_json::json!(found.iter().map(|f| f.message_id).collect::<Vec<_>>()),
        );
    });
    // The contract answers this search with 201.
    Ok((StatusCode::CREATED, Json(found)))
}

/// One item of the request, checked: the message id, the eBox as asked, and the citizen's
/// national number (`None` for an enterprise's eBox).
#[derive(Debug)]
struct Asked {
    id: Uuid,
    ebox_id: EboxId,
    ssin: Option<Ssin>,
}

impl Asked {
    /// Item `index` of the request, or a 400 naming it and what is wrong. The message names
    /// the field, never quotes it: an `eboxIdValue` is a national number.
    fn parse(index: usize, raw: serde_json::Value) -> Result<Self, ApiError> {
        let item: MessageIdEboxId = serde_json::from_value(raw).map_err(|_| {
            ApiError::bad_request(format!(
                "[{index}] is not a MessageIdEboxId: it needs messageId and eboxId \
                 {{eboxType, eboxIdValue}}, all strings"
            ))
        })?;
        let id = Uuid::parse_str(&item.message_id).map_err(|_| {
            ApiError::bad_request(format!(
                "[{index}].messageId is not a message id of this provider (a UUID)"
            ))
        })?;
        let ssin = match item.ebox_id.ebox_type.as_str() {
            "citizen" => Some(Ssin::parse(&item.ebox_id.ebox_id_value).map_err(|_| {
                ApiError::bad_request(format!(
                    "[{index}].eboxId.eboxIdValue is not a valid national number"
                ))
            })?),
            "enterprise" => None,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "[{index}].eboxId.eboxType must be citizen or enterprise"
                )));
            }
        };
        Ok(Self {
            id,
            ebox_id: item.ebox_id,
            ssin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SSIN: &str = "85073003328";
    const ID: &str = "7d0b6b1e-4f2a-5c3d-9e8f-0a1b2c3d4e5f";

    #[test]
    fn a_malformed_item_is_named_by_its_place_and_its_field() {
        let cases = [
            (json!("x"), "[0] is not a MessageIdEboxId"),
            (json!({"messageId": ID}), "[0] is not a MessageIdEboxId"),
            (
                json!({"messageId": "m-1", "eboxId": {"eboxType": "citizen", "eboxIdValue": SSIN}}),
                "[0].messageId is not a message id of this provider (a UUID)",
            ),
            (
                json!({"messageId": ID, "eboxId": {"eboxType": "citizen", "eboxIdValue": "85073003329"}}),
                "[0].eboxId.eboxIdValue is not a valid national number",
            ),
            (
                json!({"messageId": ID, "eboxId": {"eboxType": "person", "eboxIdValue": SSIN}}),
                "[0].eboxId.eboxType must be citizen or enterprise",
            ),
        ];
        for (item, message) in cases {
            let refused = Asked::parse(0, item.clone()).expect_err("refused");
            assert!(
                refused.message.starts_with(message),
                "{item}: {}",
                refused.message
            );
            assert!(!refused.message.contains("85073003329"), "never quoted");
        }
    }

    #[test]
    fn an_enterprise_ebox_is_well_formed_but_holds_nothing_here() {
        let asked = Asked::parse(
            3,
            json!({"messageId": ID, "eboxId": {"eboxType": "enterprise", "eboxIdValue": "0406798006"}}),
        )
        .expect("well formed");
        assert!(asked.ssin.is_none());
        let citizen = Asked::parse(
            3,
            json!({"messageId": ID, "eboxId": {"eboxType": "citizen", "eboxIdValue": SSIN}}),
        )
        .expect("well formed");
        assert!(citizen.ssin.is_some());
    }
}
