//! Administration shared by the CLI and the tests.

use domain::registry::{MAX_IMAGE_BYTES, RegistryFile};
use sqlx::PgPool;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// The reader of a registry file's logos (for [`RegistryFile::parse_with`]): each `path`
/// relative to the directory of `registry` (or absolute), and no more than one byte past
/// [`MAX_IMAGE_BYTES`] read, so that a wrong path to a large file costs nothing.
pub fn files_beside(registry: &Path) -> impl FnMut(&str) -> Result<Vec<u8>, String> + use<> {
    let directory: PathBuf = registry.parent().map(Path::to_path_buf).unwrap_or_default();
    move |path: &str| {
        let mut bytes = Vec::new();
        std::fs::File::open(directory.join(path))
            .and_then(|file| {
                file.take(MAX_IMAGE_BYTES as u64 + 1)
                    .read_to_end(&mut bytes)
            })
            .map_err(|error| format!("cannot be read: {error}"))?;
        Ok(bytes)
    }
}

/// Applies the registry to the database, then declares the topology and each listed sender's
/// status queue and own intake lane, so a sender can consume its answers before publishing
/// anything, on its own lane.
pub async fn apply_registry(
    pool: &PgPool,
    amqp_url: &str,
    registry: &RegistryFile,
) -> anyhow::Result<()> {
    records::registry::apply(registry, pool).await?;
    let connection = queues::driver::connect(amqp_url, "ebox registry").await?;
    queues::topology::declare(&connection).await?;
    for sender in &registry.senders {
        queues::topology::declare_status_queue(&connection, sender.id.as_str()).await?;
        queues::topology::declare_intake_lane(&connection, sender.id.as_str()).await?;
        let callbacks = sender.status_webhook_url.is_some();
        queues::topology::bind_status_callbacks(&connection, sender.id.as_str(), callbacks).await?;
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}
