//! Kinesis as one of the provider's buses: data streams and enhanced fan-out consumers, the
//! checks plan makes without a server, and its schemas.

use super::consumer::{self, ConsumerCfg};
use super::stream_config::{self, StreamCfg};
use super::{limits, stream};
use crate::buses::{Bus, Config, Kind, mismatch, nothing_at_create};
use crate::error::Result;
use crate::model::{Json, Output};

pub const BUS: Bus = Bus {
    name: "kinesis",
    stream: Kind {
        parse: |spec| stream_config::parse(&spec.name, &spec.config).map(Config::KinesisStream),
        create: |name, c| {
            super::begin();
            stream::create(name, stream_of(c)?)
        },
        read: stream::read,
        update: |r, name, c| {
            super::begin();
            stream::update(r, name, stream_of(c)?)
        },
        delete: |r| {
            super::begin();
            stream::delete(r)
        },
        diff: |name, c, out| stream::diff(name, stream_of(c)?, out),
        check_version: |_, _, _| vec![],
        check_create: nothing_at_create,
        replace_note: "replacing a Kinesis stream deletes it with its records and consumers; it is created again empty",
        schema: stream_config::schema,
        to_user: |out: &Output| {
            let mut c = Json::new();
            for k in [
                "name",
                "stream_mode",
                "shard_count",
                "retention",
                "encryption",
                "kms_key_id",
                "tags",
                "max_record_size",
            ] {
                if let Some(v) = out.outputs.get(k).filter(|v| !v.is_null()) {
                    c.insert(k.into(), v.clone());
                }
            }
            c
        },
    },
    consumer: Kind {
        parse: |spec| consumer::parse(&spec.name, &spec.config).map(Config::KinesisConsumer),
        create: |name, c| {
            super::begin();
            consumer::create(name, consumer_of(c)?)
        },
        read: consumer::read,
        update: |r, name, c| consumer::update(r, name, consumer_of(c)?),
        delete: |r| {
            super::begin();
            consumer::delete(r)
        },
        diff: |_, c, out| Ok(consumer::diff(consumer_of(c)?, out)),
        check_version: |_, _, _| vec![],
        check_create: nothing_at_create,
        replace_note: "replacing an enhanced fan-out consumer deregisters it; its readers must subscribe again under the new ARN",
        schema: consumer::schema,
        to_user: |out: &Output| {
            let mut c = Json::new();
            for k in ["name", "stream_name"] {
                if let Some(v) = out.outputs.get(k) {
                    c.insert(k.into(), v.clone());
                }
            }
            c
        },
    },
    preflight: limits::preflight,
};

fn stream_of(c: &Config) -> Result<&StreamCfg> {
    match c {
        Config::KinesisStream(c) => Ok(c),
        other => Err(mismatch("a Kinesis stream", other)),
    }
}

fn consumer_of(c: &Config) -> Result<&ConsumerCfg> {
    match c {
        Config::KinesisConsumer(c) => Ok(c),
        other => Err(mismatch("a Kinesis consumer", other)),
    }
}
