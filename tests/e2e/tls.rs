//! TLS to the broker and the database, against the test CA that `scripts/services.sh` makes and
//! gives RabbitMQ's TLS listener (`EBOX_TEST_AMQPS_HOST`, default `localhost:5671`) and
//! PostgreSQL: its files are in `EBOX_TEST_TLS_DIR` (default `/var/lib/ebox-test-tls`). Another
//! CA, and a client certificate it signs, are made here with `openssl`. A machine without the
//! TLS listener fails these tests: it would not prove anything.

use crate::helpers::spawn_app;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation};
use queues::tls::BrokerTls;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use uuid::Uuid;

fn tls_dir() -> PathBuf {
    std::env::var_os("EBOX_TEST_TLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/ebox-test-tls"))
}

fn amqps_host() -> String {
    std::env::var("EBOX_TEST_AMQPS_HOST").unwrap_or_else(|_| "localhost:5671".to_owned())
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| {
        panic!(
            "{} cannot be read ({e}): scripts/services.sh makes the test CA",
            path.display()
        )
    })
}

/// Trusts the test CA only; fails the test, naming the fix, when the TLS listener is closed.
async fn trusting_the_test_ca() -> BrokerTls {
    let host = amqps_host();
    if let Err(e) = tokio::net::TcpStream::connect(&host).await {
        panic!(
            "RabbitMQ's TLS listener at {host} is not open ({e}): scripts/services.sh configures it"
        );
    }
    BrokerTls::trusting(&read(&tls_dir().join("ca.pem"))).expect("the test CA parses")
}

/// A CA of this test's own, made with `openssl`, with a client certificate it signs: what the
/// broker was never told to trust. Removed when dropped.
struct OtherCa {
    dir: PathBuf,
}

impl OtherCa {
    fn make() -> Self {
        let dir = std::env::temp_dir().join(format!("ebox-other-ca-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let cnf = dir.join("openssl.cnf");
        std::fs::write(
            &cnf,
            "[req]\ndistinguished_name = dn\nx509_extensions = ca\nprompt = no\n\
             [dn]\nCN = Another CA\n\
             [ca]\nbasicConstraints = critical, CA:true\nkeyUsage = critical, keyCertSign\n\
             subjectKeyIdentifier = hash\n\
             [client]\nbasicConstraints = critical, CA:false\n\
             keyUsage = critical, digitalSignature\nextendedKeyUsage = clientAuth\n",
        )
        .expect("write openssl.cnf");
        let openssl = |args: &[&str]| {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("openssl runs (scripts/services.sh installs it)");
            assert!(
                output.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        for key in ["ca.key", "client.key"] {
            openssl(&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                key,
            ]);
        }
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-config",
            "openssl.cnf",
            "-key",
            "ca.key",
            "-days",
            "1",
            "-out",
            "ca.pem",
        ]);
        openssl(&[
            "req",
            "-new",
            "-key",
            "client.key",
            "-subj",
            "/CN=someone else",
            "-out",
            "client.csr",
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "openssl.cnf",
            "-extensions",
            "client",
            "-out",
            "client.pem",
        ]);
        Self { dir }
    }

    fn file(&self, name: &str) -> Vec<u8> {
        read(&self.dir.join(name))
    }
}

impl Drop for OtherCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn amqps_with_the_test_ca_verifies_the_broker_and_carries_publishes() {
    let tls = trusting_the_test_ca().await;
    let app = spawn_app().await;
    let url = format!("amqps://guest:guest@{}/{}", amqps_host(), app.vhost);

    let connection = queues::driver::connect_with_tls(&url, "tls test", &tls)
        .await
        .expect("the broker's certificate is trusted");
    let channel = connection.create_channel().await.expect("a channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let queue = format!("tls-test-{}", app.id);
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("the queue is declared over TLS");
    let confirmation = channel
        .basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            b"over TLS",
            BasicProperties::default(),
        )
        .await
        .expect("published")
        .await
        .expect("confirmed");
    assert!(
        matches!(confirmation, Confirmation::Ack(_)),
        "{confirmation:?}"
    );
    let message = channel
        .basic_get(queue.as_str().into(), BasicGetOptions::default())
        .await
        .expect("basic.get")
        .expect("the message is there");
    assert_eq!(message.delivery.data, b"over TLS");
    message
        .delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .expect("ack");
}

#[tokio::test]
async fn amqps_trusting_another_ca_is_refused_with_a_certificate_error() {
    trusting_the_test_ca().await;
    let other = OtherCa::make();
    let tls = BrokerTls::trusting(&other.file("ca.pem")).expect("the other CA parses");
    let url = format!("amqps://guest:guest@{}/%2f", amqps_host());

    let error = queues::driver::connect_with_tls(&url, "tls test", &tls)
        .await
        .expect_err("a broker certificate from an untrusted CA is refused");
    let error = error.to_string();
    assert!(
        error.contains("invalid peer certificate") && error.contains("UnknownIssuer"),
        "{error}"
    );
}

#[tokio::test]
async fn amqps_with_the_system_roots_does_not_trust_a_private_ca() {
    trusting_the_test_ca().await;
    let url = format!("amqps://guest:guest@{}/%2f", amqps_host());

    let error = queues::driver::connect_with_tls(&url, "tls test", &BrokerTls::system_roots())
        .await
        .expect_err("the test CA is not among the system's roots");
    assert!(error.to_string().contains("UnknownIssuer"), "{error}");
}

#[tokio::test]
async fn the_broker_accepts_a_client_certificate_of_its_ca_and_refuses_another() {
    let tls_dir = tls_dir();
    let ours = trusting_the_test_ca()
        .await
        .with_client_certificate(
            &read(&tls_dir.join("client.pem")),
            &read(&tls_dir.join("client.key")),
        )
        .expect("the test client certificate parses");
    let other = OtherCa::make();
    let theirs = trusting_the_test_ca()
        .await
        .with_client_certificate(&other.file("client.pem"), &other.file("client.key"))
        .expect("the other client certificate parses");
    let url = format!("amqps://guest:guest@{}/%2f", amqps_host());

    let connection = queues::driver::connect_with_tls(&url, "tls test", &ours)
        .await
        .expect("a client certificate of the broker's CA is accepted");
    connection.create_channel().await.expect("a channel");
    // The broker verifies any certificate a client presents: refusing this one shows that the
    // client certificate is sent.
    let refused = queues::driver::connect_with_tls(&url, "tls test", &theirs).await;
    assert!(
        refused.is_err(),
        "a client certificate of another CA was accepted"
    );
}

/// Issue #9: the `amqps://` port received `AMQP\0\0\t\x01`, the plain protocol header.
#[tokio::test]
async fn an_amqps_url_never_speaks_plain_amqp() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a local listener");
    let port = listener.local_addr().expect("its address").port();
    let first_bytes = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("the client connects");
        let mut bytes = [0_u8; 3];
        socket
            .read_exact(&mut bytes)
            .await
            .expect("the client speaks");
        bytes
    });

    // The process's own settings, as every worker uses them; the listener closes after the
    // first bytes, so the connection fails.
    let url = format!("amqps://guest:guest@127.0.0.1:{port}/%2f");
    let _ = tokio::time::timeout(
        Duration::from_secs(20),
        queues::driver::connect(&url, "tls test"),
    )
    .await;
    let bytes = tokio::time::timeout(Duration::from_secs(20), first_bytes)
        .await
        .expect("the client spoke")
        .expect("the listener ran");
    assert_ne!(&bytes, b"AMQ", "plain AMQP on an amqps:// URL");
    // A TLS record of type handshake (22), version 3.x: a ClientHello.
    assert_eq!(bytes[..2], [0x16, 0x03], "not a TLS ClientHello: {bytes:?}");
}

/// The database URL of the tests, with `sslmode=verify-full` and `sslrootcert=<ca>`.
fn verify_full(ca: &Path) -> String {
    let url = std::env::var("EBOX_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_owned());
    let separator = if url.contains('?') { '&' } else { '?' };
    format!(
        "{url}{separator}sslmode=verify-full&sslrootcert={}",
        ca.display()
    )
}

#[tokio::test]
async fn postgresql_verify_full_trusts_the_ca_of_sslrootcert_only() {
    let pool = runtime::db::connect_url(&verify_full(&tls_dir().join("ca.pem")), 1)
        .await
        .expect("PostgreSQL's certificate is verified against the test CA (scripts/services.sh)");
    let (ssl,): (bool,) =
        sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .expect("pg_stat_ssl");
    assert!(ssl, "the connection does not use TLS");

    let other = OtherCa::make();
    let other_ca = other.dir.join("ca.pem");
    let error = runtime::db::connect_url(&verify_full(&other_ca), 1)
        .await
        .expect_err("a server certificate from another CA is refused");
    assert!(format!("{error:#}").contains("UnknownIssuer"), "{error:#}");
}
