//! An attachment's bytes, streamed: read from PostgreSQL in chunks of [`CHUNK`] bytes as the
//! client takes them, so that the API never holds a whole document (a citizen downloading many
//! 16 MiB documents at once costs a few chunks each). Documents are written once, so the chunks
//! of one download are consistent; the column is stored uncompressed (`STORAGE EXTERNAL`), so
//! each chunk reads only its own pages.

use axum::body::Body;
use futures_util::TryStreamExt as _;
use sqlx::PgPool;
use uuid::Uuid;

/// Bytes per database read.
pub const CHUNK: i64 = 256 * 1024;

/// The body of attachment `attachment_id` of message `message_id`, `size` bytes long.
pub fn attachment_body(pool: PgPool, message_id: Uuid, attachment_id: Uuid, size: i64) -> Body {
    let chunks = futures_util::stream::try_unfold(0_i64, move |offset| {
        let pool = pool.clone();
        async move {
            if offset >= size {
                return Ok::<_, sqlx::Error>(None);
            }
            let chunk: Vec<u8> = sqlx::query_scalar(
                "SELECT substring(content FROM $3::int FOR $4::int) FROM document_attachments
                  WHERE message_id = $1 AND attachment_id = $2",
            )
            .bind(message_id)
            .bind(attachment_id)
            .bind(offset + 1)
            .bind(CHUNK)
            .fetch_one(&pool)
            .await?;
            if chunk.is_empty() {
                // Shorter than its recorded size: end rather than loop.
                return Ok(None);
            }
            let next = offset + i64::try_from(chunk.len()).unwrap_or(CHUNK);
            Ok(Some((chunk, next)))
        }
    });
    // An error ends the response short of its Content-Length: the client sees it fail.
    Body::from_stream(chunks.inspect_err(move |error| {
        tracing::warn!(%message_id, %attachment_id, error = %error, "an attachment's download failed");
    }))
}
