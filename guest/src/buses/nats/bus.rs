//! NATS JetStream as one of the provider's buses: its stream and consumer drivers, the
//! checks plan makes without a server, and its schemas.

use super::rules::Version;
use super::{consumer, consumer_config, stream, stream_config, to_user};
use crate::buses::{Bus, ConsumerSummary, Kind, StreamSummary, no_preflight};
use crate::config;
use crate::error::FieldDiag;
use crate::model::{CONSUMER, Json, Output, STREAM, Spec};
use serde_json::{Value, json};

pub const BUS: Bus = Bus {
    name: "nats",
    stream: Kind {
        parse: stream_summary,
        create: stream::create,
        read: stream::read,
        update: stream::update,
        delete: stream::delete,
        diff: stream::diff_output,
        check_version: |spec, server| check(spec, server, stream::check),
        check_create: |spec| {
            stream_config::parse(&spec.name, &spec.config)
                .ok()
                .and_then(|c| stream_config::sealed_at_create(&spec.name, &c))
        },
        replace_note: "replacing a stream deletes its messages and its consumers; they are recreated empty",
        schema: stream_schema,
        to_user: |out| to_user(stream_config::FIELDS, &live_config(out)),
    },
    consumer: Kind {
        parse: consumer_summary,
        create: consumer::create,
        read: consumer::read,
        update: consumer::update,
        delete: consumer::delete,
        diff: consumer::diff_output,
        check_version: |spec, server| check(spec, server, consumer::check),
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

fn check(
    spec: &Spec,
    server: &str,
    f: fn(&Spec, Version, &str) -> Vec<FieldDiag>,
) -> Vec<FieldDiag> {
    Version::parse(server).map_or_else(Vec::new, |v| f(spec, v, server))
}

fn live_config(out: &Output) -> Json {
    out.outputs
        .get("config")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn stream_summary(spec: &Spec) -> Result<StreamSummary, Vec<FieldDiag>> {
    let c = stream_config::parse(&spec.name, &spec.config)?;
    let subjects = c
        .wire
        .get("subjects")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    Ok(StreamSummary {
        name: c.name,
        broker_ref: c.broker_ref,
        subjects,
    })
}

fn consumer_summary(spec: &Spec) -> Result<ConsumerSummary, Vec<FieldDiag>> {
    let c = consumer_config::parse(&spec.name, &spec.config)?;
    Ok(ConsumerSummary {
        name: c.name,
        streams: vec![c.stream_name],
        broker_ref: c.broker_ref,
    })
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
