//! Administration shared by the CLI and the tests.

use domain::registry::RegistryFile;
use sqlx::PgPool;

/// Applies the registry to the database, then declares the topology and each listed sender's
/// status queue, so a sender can consume its answers before publishing anything.
pub async fn apply_registry(
    pool: &PgPool,
    amqp_url: &str,
    registry: &RegistryFile,
) -> anyhow::Result<()> {
    records::registry::apply(registry, pool).await?;
    let connection = queues::driver::connect(amqp_url, "ebox registry").await?;
    let channel = connection.create_channel().await?;
    queues::topology::declare(&channel).await?;
    for sender in &registry.senders {
        queues::topology::declare_status_queue(&channel, sender.id.as_str()).await?;
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}
