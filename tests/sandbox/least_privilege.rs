//! Attacks on least privilege: inside the endpoints it was granted, the component may only
//! manage streams and durable consumers; it may change the server only inside a mutating
//! call, and there only the resource that call is for. Every attack is judged on the server
//! (or the fake API), not only by the error the component got.

use super::*;
use async_nats::jetstream;

/// A stream that is not in any infra.yaml, with one message holding a canary and a durable
/// pull consumer that has not been delivered anything yet.
struct Victim {
    js: jetstream::Context,
    stream: String,
    canary: String,
}

const LIVE: &str = "live";

impl Victim {
    async fn new(e: &Env) -> Result<Victim, String> {
        let js = jetstream::new(direct(e).await);
        let stream = random_text("VICTIM").replace('-', "_").to_uppercase();
        let canary = random_text("message-canary");
        js.create_stream(jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![format!("{}.>", stream.to_lowercase())],
            ..Default::default()
        })
        .await
        .map_err(|err| format!("setting up the victim stream: {err}"))?;
        js.publish(
            format!("{}.a", stream.to_lowercase()),
            canary.clone().into(),
        )
        .await
        .map_err(|err| format!("publish: {err}"))?
        .await
        .map_err(|err| format!("publish ack: {err}"))?;
        js.create_consumer_on_stream(
            jetstream::consumer::pull::Config {
                durable_name: Some(LIVE.into()),
                ..Default::default()
            },
            stream.as_str(),
        )
        .await
        .map_err(|err| format!("setting up the live consumer: {err}"))?;
        Ok(Victim { js, stream, canary })
    }

    /// The stream, its one message and its untouched consumer are all still there.
    async fn intact(&self) -> Result<(), String> {
        let mut s = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|err| format!("the victim stream is gone: {err}"))?;
        let info = s.info().await.map_err(|err| format!("{err}"))?;
        if info.state.messages != 1 {
            return Err(format!(
                "the victim stream holds {} messages instead of 1",
                info.state.messages
            ));
        }
        let c: jetstream::consumer::PullConsumer = s
            .get_consumer(LIVE)
            .await
            .map_err(|err| format!("the live consumer is gone: {err}"))?;
        let ci = c.cached_info();
        if ci.delivered.stream_sequence != 0 || ci.num_ack_pending != 0 {
            return Err(format!(
                "the live consumer was delivered to: {:?}",
                ci.delivered
            ));
        }
        Ok(())
    }

    async fn remove(&self) {
        self.js.delete_stream(&self.stream).await.ok();
    }

    fn stream_spec(&self) -> Value {
        json!({"name": self.stream, "broker_ref": "local"})
    }
}

/// `subjects` as requests from inside `export` for a resource `rtype` with config `resource`.
async fn requests(
    e: &Env,
    rt: &Runtime,
    export: &str,
    rtype: &str,
    resource: Value,
    subjects: &[(String, Value)],
) -> Result<Vec<Value>, String> {
    let mut g = fresh(rt).await?;
    let reqs: Vec<Value> = subjects
        .iter()
        .map(|(s, body)| json!({"subject": s, "payload": body.to_string(), "timeout_ms": 2000}))
        .collect();
    let c = call_as(
        e,
        &mut g,
        export,
        rtype,
        resource,
        "nats",
        json!({"broker": "local", "requests": reqs}),
    )
    .await;
    Ok(c.out()?["requests"].as_array().cloned().unwrap_or_default())
}

/// Every answer a denial; returns the first message (to quote it).
fn denied(answers: &[Value]) -> Result<String, String> {
    if answers.is_empty() {
        return Err("no request was made".into());
    }
    let mut first = String::new();
    for a in answers {
        let m = cap_err(a, "denied")?;
        if first.is_empty() {
            first = m;
        }
    }
    Ok(first)
}

/// Runs `attack` against a fresh victim, checks the victim is intact, removes it.
async fn on_victim<'a, F, Fut>(e: &'a Env, attack: F) -> R
where
    F: FnOnce(&'a Env, Victim) -> Fut,
    Fut: Future<Output = Result<(String, Victim), String>>,
{
    let v = Victim::new(e).await?;
    let (how, v) = attack(e, v).await?;
    let verdict = v.intact().await;
    let leaked = e.seen.lock().unwrap().contains(&v.canary);
    v.remove().await;
    verdict?;
    if leaked {
        return Err("the message's content reached the component".into());
    }
    Ok(how)
}

const STREAM: &str = "infra.eventbus.stream";
const CONSUMER: &str = "infra.eventbus.consumer";

fn subj(verb: &str) -> (String, Value) {
    (format!("$JS.API.{verb}"), json!({}))
}

pub async fn msg_get(e: &Env, rt: &Runtime) -> R {
    on_victim(e, |e, v| async move {
        // Even inside a create of that very stream: reading messages is never granted.
        let a = requests(
            e,
            rt,
            "create",
            STREAM,
            v.stream_spec(),
            &[
                (format!("$JS.API.STREAM.MSG.GET.{}", v.stream), json!({"seq": 1})),
                (format!("$JS.API.DIRECT.GET.{}", v.stream), json!({"seq": 1})),
                (
                    format!("$JS.API.DIRECT.GET.{}.{}.a", v.stream, v.stream.to_lowercase()),
                    json!({}),
                ),
            ],
        )
        .await?;
        let m = denied(&a)?;
        Ok((format!("STREAM.MSG.GET and DIRECT.GET (both forms) -> denied (\"{}\"); the canary message never reached the guest", first_line(&m)), v))
    })
    .await
}

pub async fn msg_next(e: &Env, rt: &Runtime) -> R {
    on_victim(e, |e, v| async move {
        let a = requests(
            e,
            rt,
            "create",
            STREAM,
            v.stream_spec(),
            &[(
                format!("$JS.API.CONSUMER.MSG.NEXT.{}.{LIVE}", v.stream),
                json!({"batch": 1}),
            )],
        )
        .await?;
        denied(&a)?;
        Ok((
            "CONSUMER.MSG.NEXT on a live durable -> denied; on the server it was delivered nothing"
                .into(),
            v,
        ))
    })
    .await
}

pub async fn purge_and_delete_messages(e: &Env, rt: &Runtime) -> R {
    on_victim(e, |e, v| async move {
        // From a create of another stream, and from one of the victim itself.
        let mut n = 0;
        for owner in [json!({"name": "MINE", "broker_ref": "local"}), v.stream_spec()] {
            let a = requests(
                e,
                rt,
                "create",
                STREAM,
                owner,
                &[
                    (format!("$JS.API.STREAM.PURGE.{}", v.stream), json!({})),
                    (format!("$JS.API.STREAM.MSG.DELETE.{}", v.stream), json!({"seq": 1})),
                    (format!("$JS.API.STREAM.MSG.DELETE.{}", v.stream), json!({"seq": 1, "no_erase": true})),
                ],
            )
            .await?;
            n += a.len();
            denied(&a)?;
        }
        Ok((format!("STREAM.PURGE and STREAM.MSG.DELETE on a stream not in the file ({n} requests) -> denied; the server still holds its message"), v))
    })
    .await
}

pub async fn snapshot_and_admin(e: &Env, rt: &Runtime) -> R {
    on_victim(e, |e, v| async move {
        let s = &v.stream;
        let a = requests(
            e,
            rt,
            "create",
            STREAM,
            v.stream_spec(),
            &[
                subj(&format!("STREAM.SNAPSHOT.{s}")),
                subj(&format!("STREAM.RESTORE.{s}")),
                subj("ACCOUNT.PURGE.$G"),
                subj("SERVER.REMOVE"),
                subj(&format!("STREAM.PEER.REMOVE.{s}")),
                subj(&format!("STREAM.LEADER.STEPDOWN.{s}")),
                subj(&format!("CONSUMER.LEADER.STEPDOWN.{s}.{LIVE}")),
                subj("META.LEADER.STEPDOWN"),
                subj(&format!("CONSUMER.PAUSE.{s}.{LIVE}")),
            ],
        )
        .await?;
        denied(&a)?;
        Ok((format!("{} snapshot, restore, account purge, server and peer removal, leader step-down and pause requests -> denied; the stream and its consumer are untouched", a.len()), v))
    })
    .await
}

pub async fn delete_stream_during_plan(e: &Env, rt: &Runtime) -> R {
    on_victim(e, |e, v| async move {
        let mut quoted = String::new();
        for export in ["plan", "validate", "diff", "detect_drift"] {
            let a = requests(
                e,
                rt,
                export,
                STREAM,
                v.stream_spec(),
                &[(format!("$JS.API.STREAM.DELETE.{}", v.stream), json!({}))],
            )
            .await
            .map_err(|m| format!("{export}: {m}"))?;
            let m = denied(&a).map_err(|m| format!("{export}: {m}"))?;
            if quoted.is_empty() {
                quoted = m;
            }
        }
        Ok((format!("STREAM.DELETE of the plan's own stream from plan, validate, diff and detect-drift -> denied (\"{}\"); the stream is still there", first_line(&quoted)), v))
    })
    .await
}

pub async fn create_stream_during_status(e: &Env, rt: &Runtime) -> R {
    let name = random_text("SNEAKY").replace('-', "_").to_uppercase();
    let body = json!({"name": name, "subjects": ["sneaky.>"]});
    for export in ["status", "read"] {
        let a = requests(
            e,
            rt,
            export,
            STREAM,
            json!({"name": name, "broker_ref": "local"}),
            &[(format!("$JS.API.STREAM.CREATE.{name}"), body.clone())],
        )
        .await
        .map_err(|m| format!("{export}: {m}"))?;
        denied(&a).map_err(|m| format!("{export}: {m}"))?;
    }
    let js = jetstream::new(direct(e).await);
    if js.get_stream(&name).await.is_ok() {
        js.delete_stream(&name).await.ok();
        return Err(format!("stream {name} was created"));
    }
    Ok("STREAM.CREATE from status and read -> denied; no such stream on the server".into())
}

pub async fn another_resource_in_update(e: &Env, rt: &Runtime) -> R {
    on_victim(e, |e, v| async move {
        // The update's own stream exists and may be changed; the victim may not.
        let js = &v.js;
        js.create_stream(jetstream::stream::Config {
            name: "MINE".into(),
            subjects: vec!["mine.>".into()],
            ..Default::default()
        })
        .await
        .map_err(|err| format!("setting up MINE: {err}"))?;
        let mine = json!({"name": "MINE", "broker_ref": "local"});
        let own = json!({"name": "MINE", "subjects": ["mine.>"], "description": "updated by its own update"});
        let a = requests(
            e,
            rt,
            "update",
            STREAM,
            mine,
            &[
                (format!("$JS.API.STREAM.DELETE.{}", v.stream), json!({})),
                (format!("$JS.API.STREAM.UPDATE.{}", v.stream), json!({"name": v.stream, "subjects": ["x.>"]})),
                (format!("$JS.API.CONSUMER.DELETE.{}.{LIVE}", v.stream), json!({})),
                ("$JS.API.STREAM.UPDATE.MINE".to_string(), own),
            ],
        )
        .await?;
        let verdict = denied(&a[..3]);
        let own_ok = a.get(3).is_some_and(|r| r.get("ok").is_some());
        let described = js
            .get_stream("MINE")
            .await
            .map(|s| s.cached_info().config.description.clone())
            .ok()
            .flatten();
        js.delete_stream("MINE").await.ok();
        let m = verdict?;
        if !own_ok || described.as_deref() != Some("updated by its own update") {
            return Err(format!("the update could not change its own stream: {:?}", a.get(3)));
        }
        Ok((format!("inside stream MINE's update: deleting or updating another stream and deleting its consumer -> denied (\"{}\"); MINE's own update went through", first_line(&m)), v))
    })
    .await
}

pub async fn another_resource_in_consumer_create(e: &Env, rt: &Runtime) -> R {
    on_victim(e, |e, v| async move {
        let own = json!({"stream_name": v.stream, "name": "mine", "broker_ref": "local"});
        let a = requests(
            e,
            rt,
            "create",
            CONSUMER,
            own,
            &[
                (format!("$JS.API.CONSUMER.DELETE.{}.{LIVE}", v.stream), json!({})),
                (format!("$JS.API.STREAM.DELETE.{}", v.stream), json!({})),
                (format!("$JS.API.STREAM.UPDATE.{}", v.stream), json!({"name": v.stream, "subjects": ["x.>"]})),
                (format!("$JS.API.CONSUMER.CREATE.{}.{LIVE}", v.stream), json!({"stream_name": v.stream, "config": {"durable_name": LIVE, "ack_policy": "none"}, "action": "update"})),
            ],
        )
        .await?;
        denied(&a)?;
        Ok(("inside consumer mine's create: deleting or rewriting a sibling consumer, deleting or updating its stream -> denied".into(), v))
    })
    .await
}

pub async fn odd_consumer_forms(e: &Env, rt: &Runtime) -> R {
    on_victim(e, |e, v| async move {
        let s = &v.stream;
        let a = requests(
            e,
            rt,
            "create",
            STREAM,
            v.stream_spec(),
            &[
                (format!("$JS.API.CONSUMER.CREATE.{s}"), json!({"stream_name": s, "config": {"deliver_subject": "spy.x"}})),
                (format!("$JS.API.CONSUMER.CREATE.{s}.spy.{}.>", s.to_lowercase()), json!({"stream_name": s, "config": {"name": "spy"}})),
            ],
        )
        .await?;
        denied(&a)?;
        Ok(("an ephemeral push consumer and the filtered CONSUMER.CREATE form -> denied; the stream has only its own consumer".into(), v))
    })
    .await
}

pub async fn cloud_change_during_plan(e: &Env, rt: &Runtime) -> R {
    let before = e.fake.hits();
    let calls = json!({"calls": [
        {"account": "fake", "method": "POST", "path": "/api/store", "body": "{\"k\":\"plan\"}"},
        {"account": "fake", "method": "DELETE", "path": "/api/store"},
    ]});
    let mut kinds = vec![];
    for export in ["plan", "status", "detect_drift"] {
        let mut g = fresh(rt).await?;
        let c = call_as(
            e,
            &mut g,
            export,
            STREAM,
            json!({"name": "X"}),
            "cloud",
            calls.clone(),
        )
        .await;
        for r in c.out()?.as_array().cloned().unwrap_or_default() {
            kinds.push(cap_err(&r, "denied").map_err(|m| format!("{export}: {m}"))?);
        }
    }
    if e.fake.hits() != before {
        return Err(format!(
            "{} request(s) reached the cloud API",
            e.fake.hits() - before
        ));
    }
    Ok(format!(
        "a granted POST and a DELETE from plan, status and detect-drift -> {} denials (\"{}\"); the API saw 0 requests",
        kinds.len(),
        first_line(&kinds[0])
    ))
}

pub async fn secret_generated_during_plan(e: &Env, rt: &Runtime) -> R {
    let name = random_text("plan-made");
    let mut g = fresh(rt).await?;
    let c = call_as(
        e,
        &mut g,
        "plan",
        STREAM,
        json!({"name": "X"}),
        "secrets",
        json!({"generate": [name]}),
    )
    .await;
    let got = c.out()?["generated"][0]["result"].clone();
    cap_err(&got, "denied")?;
    if rt.caps.secrets.has(&name) {
        return Err("the secret was generated".into());
    }
    Ok(
        "secrets.generate of a new secret from plan -> denied; the host holds no such secret"
            .into(),
    )
}

pub async fn consumer_changed_during_read(e: &Env, rt: &Runtime) -> R {
    on_victim(e, |e, v| async move {
        let own = json!({"stream_name": v.stream, "name": LIVE, "broker_ref": "local"});
        let rewrite = json!({"stream_name": v.stream, "config": {"durable_name": LIVE, "ack_policy": "none"}, "action": "update"});
        for export in ["read", "diff", "status", "validate"] {
            let a = requests(
                e,
                rt,
                export,
                CONSUMER,
                own.clone(),
                &[
                    (format!("$JS.API.CONSUMER.DELETE.{}.{LIVE}", v.stream), json!({})),
                    (format!("$JS.API.CONSUMER.CREATE.{}.{LIVE}", v.stream), rewrite.clone()),
                ],
            )
            .await
            .map_err(|m| format!("{export}: {m}"))?;
            denied(&a).map_err(|m| format!("{export}: {m}"))?;
        }
        Ok(("deleting or rewriting the call's own consumer from read, diff, status and validate -> denied; the consumer is untouched".into(), v))
    })
    .await
}

pub async fn http_change_during_plan(e: &Env, rt: &Runtime) -> R {
    let before = e.fake.hits();
    let url = format!("http://127.0.0.1:{}/api/store", e.fake.port);
    let mut n = 0;
    for method in ["POST", "PUT", "DELETE"] {
        let mut g = fresh(rt).await?;
        let c = call_as(
            e,
            &mut g,
            "plan",
            STREAM,
            json!({"name": "X"}),
            "http",
            json!({"urls": [url], "method": method}),
        )
        .await;
        cap_err(&c.out()?[0]["result"], "denied").map_err(|m| format!("{method}: {m}"))?;
        n += 1;
    }
    if e.fake.hits() != before {
        return Err(format!(
            "{} request(s) reached the allow-listed server",
            e.fake.hits() - before
        ));
    }
    Ok(format!(
        "{n} HTTP requests that are not GET, to an allow-listed origin, from plan -> denied; the server saw 0"
    ))
}

pub async fn stream_changes_in_a_broker_call(e: &Env, rt: &Runtime) -> R {
    on_victim(e, |e, v| async move {
        // A broker's own calls change its platform, never a JetStream object.
        let broker = json!({"name": v.stream, "stream_name": v.stream, "provider": "nats"});
        let a = requests(
            e,
            rt,
            "create",
            "infra.eventbus",
            broker,
            &[
                (format!("$JS.API.STREAM.DELETE.{}", v.stream), json!({})),
                (format!("$JS.API.CONSUMER.DELETE.{}.{LIVE}", v.stream), json!({})),
            ],
        )
        .await?;
        denied(&a)?;
        Ok(("deleting a stream and a consumer inside a broker's create -> denied (a broker call may change no JetStream object)".into(), v))
    })
    .await
}
