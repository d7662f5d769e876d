//! How a Kafka node of `super::Kafka` is set up: its jars (`scripts/kafka.sh`), the `java`
//! command line, the storage format, `server.properties`, logging into its own dir (log4j2 for
//! 4.x, log4j 1 through reload4j for 3.9), and a random KRaft cluster id.

use super::KafkaOpts;
use crate::{Owned, workspace_root};
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// `.cache/kafka/<version>/libs`, fetched by `scripts/kafka.sh` first if it is not complete.
pub(super) fn kafka_libs(version: &str) -> PathBuf {
    let libs = workspace_root().join(format!(".cache/kafka/{version}/libs"));
    if !libs.join(".complete").is_file() {
        let script = workspace_root().join("scripts/kafka.sh");
        let out = Command::new(&script)
            .arg(version)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "scripts/kafka.sh {version} failed (it needs java and mvn; `./dev setup` runs it):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    libs
}

/// `java -cp '<libs>/*' <main> ...` in `dir`, logging into `dir`, its output into `dir/out`.
pub(super) fn java(
    libs: &Path,
    dir: &Path,
    main: &str,
    out: &str,
    args: impl FnOnce(&mut Command),
) -> Child {
    let java = std::env::var_os("JAVA_HOME")
        .map(|home| PathBuf::from(home).join("bin/java"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("java"));
    let log = std::fs::File::create(dir.join(out)).expect("create the JVM's output file");
    let mut cmd = Command::new(&java);
    cmd.args([
        "-Xms64m",
        "-Xmx512m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
    ])
    .arg("-Djava.awt.headless=true")
    .arg(format!(
        "-Dlog4j2.configurationFile={}",
        dir.join("log4j2.properties").display()
    ))
    .arg(format!(
        "-Dlog4j.configuration=file:{}",
        dir.join("log4j.properties").display()
    ))
    .arg(format!("-Dkafka.logs.dir={}", dir.display()))
    .arg("-cp")
    .arg(format!("{}/*", libs.display()))
    .arg(main);
    args(&mut cmd);
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup the JVM's output file"))
        .stderr(log)
        .owned()
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start `{}` (Kafka needs Java 17 or newer): {e}",
                java.display()
            )
        })
}

/// `kafka.tools.StorageTool format` (3.9 and 4.x alike), with the SASL user's SCRAM secrets.
pub(super) fn format_storage(libs: &Path, dir: &Path, cluster_id: &str, opts: &KafkaOpts) -> Child {
    java(libs, dir, "kafka.tools.StorageTool", "format.log", |c| {
        c.args([
            "format",
            "--ignore-formatted",
            &format!("--cluster-id={cluster_id}"),
            "-c",
        ])
        .arg(dir.join("server.properties"));
        if let Some((user, password)) = &opts.sasl {
            for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
                c.arg("--add-scram")
                    .arg(format!("{mechanism}=[name={user},password={password}]"));
            }
        }
    })
}

/// A throwaway TLS setup for `KafkaOpts.tls`, made with the `openssl` CLI in a cluster's temp
/// dir: a CA (`ca.pem`, what clients trust) and a server certificate for 127.0.0.1 (an IP SAN)
/// signed by it, with its unencrypted PKCS#8 key.
pub(super) struct Tls {
    pub ca: PathBuf,
    /// The server certificate then the CA's, PEM.
    pub chain: String,
    /// The server's private key, PEM (`BEGIN PRIVATE KEY`, unencrypted PKCS#8).
    pub key: String,
}

/// `openssl` with `args` in `dir`, panicking with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (KafkaOpts.tls needs it): {e}"));
    assert!(
        out.status.success(),
        "openssl {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA named `name` (`<name>.pem`, `<name>.key`) in `dir`; its certificate's path.
pub fn make_ca(dir: &Path, name: &str) -> PathBuf {
    let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-noenc",
            "-days",
            "2",
            "-keyout",
            &key,
            "-out",
            &cert,
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    dir.join(cert)
}

/// The CA and the server certificate for 127.0.0.1 in `dir`.
pub(super) fn make_tls(dir: &Path) -> Tls {
    let ca = make_ca(dir, "ca");
    write(
        &dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\n\
         basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n",
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-noenc",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "2",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.join(f).display()))
    };
    let key = read("server.key");
    assert!(
        key.contains("BEGIN PRIVATE KEY"),
        "openssl did not write PKCS#8: {key}"
    );
    Tls {
        chain: read("server.pem") + &read("ca.pem"),
        key,
        ca,
    }
}

/// A PEM as one `server.properties` value: its newlines as `\n` escapes.
fn pem_value(pem: &str) -> String {
    pem.trim().replace('\n', "\\n")
}

/// A node's `server.properties`; `ports` are its client, controller and internal listeners'.
/// With `tls`, the client listener is SSL (SASL_SSL with `opts.sasl`), the others PLAINTEXT.
pub(super) fn server_properties(
    id: i32,
    dir: &Path,
    voters: &str,
    ports: [u16; 3],
    opts: &KafkaOpts,
    tls: Option<&Tls>,
) -> String {
    let [client, controller, internal] = ports;
    let p = format!(
        "process.roles=broker,controller\n\
         node.id={id}\n\
         controller.quorum.voters={voters}\n\
         controller.listener.names=CONTROLLER\n\
         log.dirs={data}\n\
         num.partitions=1\n\
         auto.create.topics.enable=false\n\
         offsets.topic.replication.factor=1\n\
         offsets.topic.num.partitions=1\n\
         transaction.state.log.replication.factor=1\n\
         transaction.state.log.min.isr=1\n\
         transaction.state.log.num.partitions=1\n\
         share.coordinator.state.topic.replication.factor=1\n\
         share.coordinator.state.topic.min.isr=1\n\
         group.initial.rebalance.delay.ms=0\n\
         authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n",
        data = dir.join("data").display()
    );
    let mut lines: Vec<String> = match (&opts.sasl, tls.is_some()) {
        (None, false) => vec![
            format!("listeners=PLAINTEXT://127.0.0.1:{client},CONTROLLER://127.0.0.1:{controller}"),
            format!("advertised.listeners=PLAINTEXT://127.0.0.1:{client}"),
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT".into(),
            "inter.broker.listener.name=PLAINTEXT".into(),
            "super.users=User:ANONYMOUS".into(),
        ],
        // Clients on SSL (no client certificates, so they are User:ANONYMOUS); the brokers
        // among themselves on INTERNAL (PLAINTEXT).
        (None, true) => {
            let (ssl, internal) = (
                format!("SSL://127.0.0.1:{client}"),
                format!("INTERNAL://127.0.0.1:{internal}"),
            );
            vec![
                format!("listeners={ssl},{internal},CONTROLLER://127.0.0.1:{controller}"),
                format!("advertised.listeners={ssl},{internal}"),
                "listener.security.protocol.map=SSL:SSL,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"
                    .into(),
                "inter.broker.listener.name=INTERNAL".into(),
                "super.users=User:ANONYMOUS".into(),
            ]
        }
        // Clients on SASL_PLAINTEXT (SASL_SSL with tls); the brokers among themselves on
        // INTERNAL (PLAINTEXT).
        (Some((user, password)), tls) => {
            let plain = "org.apache.kafka.common.security.plain.PlainLoginModule";
            let scram = "org.apache.kafka.common.security.scram.ScramLoginModule";
            let name = if tls { "SASL_SSL" } else { "SASL_PLAINTEXT" };
            let jaas = format!("listener.name.{}", name.to_lowercase());
            let (sasl, internal) = (
                format!("{name}://127.0.0.1:{client}"),
                format!("INTERNAL://127.0.0.1:{internal}"),
            );
            vec![
                format!("listeners={sasl},{internal},CONTROLLER://127.0.0.1:{controller}"),
                format!("advertised.listeners={sasl},{internal}"),
                format!(
                    "listener.security.protocol.map={name}:{name},\
                     INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"
                ),
                "inter.broker.listener.name=INTERNAL".into(),
                "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512".into(),
                format!(
                    "{jaas}.plain.sasl.jaas.config={plain} required user_{user}=\"{password}\";"
                ),
                format!("{jaas}.scram-sha-256.sasl.jaas.config={scram} required;"),
                format!("{jaas}.scram-sha-512.sasl.jaas.config={scram} required;"),
                format!("super.users=User:ANONYMOUS;User:{user}"),
            ]
        }
    };
    // Kafka's PEM key store, inline (newlines escaped): an unencrypted PKCS#8 key, so
    // ssl.key.password stays unset (with one, Kafka reads the key as encrypted PKCS#8).
    if let Some(tls) = tls {
        lines.extend([
            "ssl.keystore.type=PEM".into(),
            format!("ssl.keystore.certificate.chain={}", pem_value(&tls.chain)),
            format!("ssl.keystore.key={}", pem_value(&tls.key)),
            "ssl.client.auth=none".into(),
        ]);
    }
    p + &lines.join("\n") + "\n"
}

/// Logging into `dir/server.log` only, without the configuration dumps: log4j2 (4.x) and
/// log4j 1 (3.9, reload4j) read their own file.
pub(super) fn write_logging(dir: &Path) {
    let file = dir.join("server.log");
    let pattern = "[%d] %p %m (%c)%n";
    let quiet = [
        "org.apache.kafka.common.config.AbstractConfig",
        "kafka.request.logger",
    ];
    let mut log4j2 = format!(
        "status = error\n\
         appender.file.type = File\n\
         appender.file.name = file\n\
         appender.file.fileName = {}\n\
         appender.file.layout.type = PatternLayout\n\
         appender.file.layout.pattern = {pattern}\n\
         rootLogger.level = info\n\
         rootLogger.appenderRef.file.ref = file\n",
        file.display()
    );
    let mut log4j = format!(
        "log4j.rootLogger=INFO, file\n\
         log4j.appender.file=org.apache.log4j.FileAppender\n\
         log4j.appender.file.File={}\n\
         log4j.appender.file.layout=org.apache.log4j.PatternLayout\n\
         log4j.appender.file.layout.ConversionPattern={pattern}\n",
        file.display()
    );
    for (i, name) in quiet.iter().enumerate() {
        log4j2 += &format!("logger.q{i}.name = {name}\nlogger.q{i}.level = warn\n");
        log4j += &format!("log4j.logger.{name}=WARN\n");
    }
    write(&dir.join("log4j2.properties"), &log4j2);
    write(&dir.join("log4j.properties"), &log4j);
}

pub(super) fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// 16 random bytes in URL-safe base64 without padding, not starting with `-` (a command line
/// would take it for an option), as `kafka-storage random-uuid` prints.
pub(super) fn random_cluster_id() -> String {
    loop {
        let id = random_base64_uuid();
        if !id.starts_with('-') {
            return id;
        }
    }
}

fn random_base64_uuid() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    // std's hasher keys are random per process and differ per RandomState.
    let half = || RandomState::new().build_hasher().finish().to_be_bytes();
    let bytes: Vec<u8> = [half(), half()].concat();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * k)) & 63) as usize] as char);
        }
    }
    out
}
