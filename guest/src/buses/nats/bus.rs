//! NATS JetStream as one of the provider's buses: its stream and consumer drivers, the
//! checks plan makes without a server, and its schemas.

use super::consumer_config::ConsumerCfg;
use super::rules::Version;
use super::stream_config::StreamCfg;
use super::{consumer, consumer_config, stream, stream_config, to_user};
use crate::buses::{Bus, Config, Kind, mismatch, no_preflight};
use crate::config;
use crate::error::Result;
use crate::model::{CONSUMER, Json, Output, STREAM};
use serde_json::{Value, json};

pub const BUS: Bus = Bus {
    name: "nats",
    stream: Kind {
        parse: |spec| stream_config::parse(&spec.name, &spec.config).map(Config::NatsStream),
        create: |name, c| stream::create(name, stream_of(c)?),
        read: stream::read,
        update: |r, name, c| stream::update(r, name, stream_of(c)?),
        delete: stream::delete,
        diff: |_, c, out| Ok(stream::diff_output(stream_of(c)?, out)),
        check_version: |name, c, server| match (stream_of(c), Version::parse(server)) {
            (Ok(c), Some(v)) => stream::check(name, c, v, server),
            _ => vec![],
        },
        check_create: |name, c| {
            stream_of(c)
                .ok()
                .and_then(|c| stream_config::sealed_at_create(name, c))
        },
        replace_note: "replacing a stream deletes its messages and its consumers; they are recreated empty",
        schema: stream_schema,
        to_user: |out| to_user(stream_config::FIELDS, &live_config(out)),
    },
    consumer: Kind {
        parse: |spec| consumer_config::parse(&spec.name, &spec.config).map(Config::NatsConsumer),
        create: |name, c| consumer::create(name, consumer_of(c)?),
        read: consumer::read,
        update: |r, name, c| consumer::update(r, name, consumer_of(c)?),
        delete: consumer::delete,
        diff: |_, c, out| Ok(consumer::diff_output(consumer_of(c)?, out)),
        check_version: |name, c, server| match (consumer_of(c), Version::parse(server)) {
            (Ok(c), Some(v)) => consumer::check(name, c, v, server),
            _ => vec![],
        },
        check_create: crate::buses::nothing_at_create,
        replace_note: "replacing a consumer resets its delivery position: acknowledgements, pending and redelivery state are lost",
        schema: consumer_schema,
        to_user: |out| {
            let mut c = to_user(consumer_config::FIELDS, &live_config(out));
            c.insert(
                "stream_name".into(),
                out.outputs
                    .get("stream_name")
                    .cloned()
                    .unwrap_or(Value::Null),
            );
            c
        },
    },
    preflight: no_preflight,
};

fn stream_of(c: &Config) -> Result<&StreamCfg> {
    match c {
        Config::NatsStream(c) => Ok(c),
        other => Err(mismatch("a NATS stream", other)),
    }
}

fn consumer_of(c: &Config) -> Result<&ConsumerCfg> {
    match c {
        Config::NatsConsumer(c) => Ok(c),
        other => Err(mismatch("a NATS consumer", other)),
    }
}

fn live_config(out: &Output) -> Json {
    out.outputs
        .get("config")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn stream_schema() -> Value {
    let extra = json!({"broker_ref": {"type": "string", "description": "the infra.eventbus module this stream lives on"}});
    config::schema(
        STREAM,
        stream_config::FIELDS,
        &["name", "subjects"],
        extra.as_object().cloned().unwrap_or_default(),
    )
}

fn consumer_schema() -> Value {
    let extra = json!({
        "broker_ref": {"type": "string", "description": "defaults to the stream's broker"},
        "stream_name": {"type": "string", "description": "the JetStream name of the stream"}
    });
    config::schema(
        CONSUMER,
        consumer_config::FIELDS,
        &["name", "stream_name"],
        extra.as_object().cloned().unwrap_or_default(),
    )
}
