//! `POST /searchMessageStatus`: a sender asks where its own messages stand. A sender token
//! (`client_id` = the sender id, scope `ebox:sender`) sees only messages that sender published,
//! addressed to the eBox it names.

use crate::AppState;
use crate::audit::{AuditSlot, bearer};
use crate::error::ApiError;
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
    expiration_date: DateTime<Utc>,
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
    let request: Vec<MessageIdEboxId> = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("the body is not a MessagesStatusRequest: {e}"))
    })?;
    if request.len() > 100 {
        return Err(ApiError::bad_request("at most 100 messages per request"));
    }
    let mut found = Vec::new();
    for item in request {
        let (Ok(id), Ok(ssin)) = (
            Uuid::parse_str(&item.message_id),
            Ssin::parse(&item.ebox_id.ebox_id_value),
        ) else {
            continue;
        };
        if item.ebox_id.ebox_type != "citizen" {
            continue;
        }
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
                ebox_id: item.ebox_id,
                expiration_date,
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
