//! JetStream API replies on arbitrary input: `parse_reply` (what `Js::request` does with a
//! reply), then the object as a *live* stream and consumer config through the normalise and
//! diff path a plan takes, against fixed valid specs. Nothing may panic, and a valid spec
//! always diffs (whatever the server reported).
#![no_main]

use eventbus_guest::buses::nats::{
    api_error, consumer as nats_consumer, describe, parse_reply, project, stream as nats_stream,
    to_user,
};
use eventbus_guest::buses::nats::{consumer_config as consumer, stream_config as stream};
use eventbus_guest::model::{CONSUMER, Json, Output, STREAM, Spec};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fn spec(name: &str, rtype: &str, config: Value) -> Spec {
    Spec {
        name: name.into(),
        rtype: rtype.into(),
        config: config.as_object().cloned().unwrap_or_default(),
        ..Spec::default()
    }
}

/// Outputs as a driver records them: `extra` keys from the reply, then the config.
fn output(rtype: &str, reply: &Json, config: Json) -> Output {
    let mut outputs = Json::new();
    for k in ["broker", "server_version", "stream_name", "name"] {
        if let Some(v) = reply.get(k) {
            outputs.insert(k.into(), v.clone());
        }
    }
    outputs.insert("config".into(), Value::Object(config));
    Output {
        name: "fuzz".into(),
        rtype: rtype.into(),
        outputs,
        ..Output::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let reply = match parse_reply("$JS.API.STREAM.INFO.FUZZ", data) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            let _ = api_error("fuzz", "reading stream FUZZ", e).to_string();
            return;
        }
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let Value::Object(reply) = reply else { return };
    // A STREAM.INFO / CONSUMER.INFO reply carries `config`; a bare object is tried as one too.
    let live = match reply.get("config") {
        Some(Value::Object(c)) => c.clone(),
        _ => reply.clone(),
    };

    let stream_spec = spec(
        "bmw-stream",
        STREAM,
        json!({"broker_ref": "bmw-eventbus", "name": "BMW_FULFILLMENT", "subjects": ["bmw.>"],
               "retention_policy": "limits", "max_age": "168h"}),
    );
    let consumer_spec = spec(
        "bmw-orders-intake",
        CONSUMER,
        json!({"stream_name": "BMW_FULFILLMENT", "name": "orders-intake",
               "filter_subject": "bmw.orders.created", "ack_policy": "explicit",
               "max_deliver": 5, "backoff": ["1s", "5s"]}),
    );

    let stream_cfg = stream::parse(&stream_spec.name, &stream_spec.config).expect("a valid stream");
    let consumer_cfg =
        consumer::parse(&consumer_spec.name, &consumer_spec.config).expect("a valid consumer");

    // Stream: the raw live config, and the normalised projection a driver stores.
    let changes =
        nats_stream::diff_output(&stream_cfg, &output(STREAM, &reply, live.clone()).outputs);
    let _ = describe(&changes);
    let mut norm = live.clone();
    stream::normalise(&mut norm);
    let stored = project(stream::FIELDS, &norm);
    let _ = to_user(stream::FIELDS, &stored);
    let _ = nats_stream::diff_output(&stream_cfg, &output(STREAM, &reply, stored).outputs);

    // Consumer: the same.
    let changes = nats_consumer::diff_output(
        &consumer_cfg,
        &output(CONSUMER, &reply, live.clone()).outputs,
    );
    let _ = describe(&changes);
    let mut norm = live;
    consumer::normalise(&mut norm);
    let _ = consumer::request_config(&norm);
    let stored = project(consumer::FIELDS, &norm);
    let _ = to_user(consumer::FIELDS, &stored);
    let _ = nats_consumer::diff_output(&consumer_cfg, &output(CONSUMER, &reply, stored).outputs);
});
