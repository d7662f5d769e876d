//! Buses: how streams and consumers are made on each message system.
//! Only NATS JetStream exists today; Kafka and Kinesis will be siblings of `nats/`.

pub mod nats;
