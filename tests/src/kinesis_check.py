"""An independent look at a Kinesis server, for the tests (tests/src/kinesis.rs, `KinesisCheck`).

It uses boto3 (botocore signs and parses; no code shared with the provider), so the tests judge
the provider by what the server really holds. One command per run, its answer as one JSON
document on stdout; a failure exits 1 with the reason on stderr.

Usage:
  kinesis_check.py --endpoint URL [--region R] [--access-key-id A --secret-access-key S]
                   COMMAND [ARGS]

Commands (answers):
  streams                 [names], sorted
  stream NAME             {"name", "arn", "status", "mode", "open_shards", "retention_hours",
                          "encryption", "key_id", "consumers", "tags": {k: v}} or null
  consumers STREAM        [{"name", "arn", "status"}], sorted by name
  create-stream NAME SHARDS  {"created": NAME} (PROVISIONED)

moto's server only (started with INITIAL_NO_AUTH_ACTION_COUNT=0: every request is verified):
  bootstrap               makes the test identities through moto's /moto-api/reset-auth, which
                          lets exactly as many unsigned requests through as it makes: a user
                          `eventbus` allowed kinesis:* with an access key, and a role `eventbus-web`
                          allowed kinesis:* (for web identity); then checks that a made-up key is
                          refused. {"access_key_id", "secret_access_key", "role_arn"}
  allow-unsigned N        lets the next N requests through unverified (moto refuses unsigned
                          requests that AWS takes, such as STS AssumeRoleWithWebIdentity)
                          {"allowed": N}
"""

import argparse
import json
import sys
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

KINESIS_ALL = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "kinesis:*", "Resource": "*"}],
    }
)
TRUST_WEB_IDENTITY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": "arn:aws:iam::123456789012:oidc-provider/test"},
                "Action": "sts:AssumeRoleWithWebIdentity",
            }
        ],
    }
)
# The requests `bootstrap` makes: CreateUser, PutUserPolicy, CreateAccessKey, CreateRole,
# PutRolePolicy.
BOOTSTRAP_REQUESTS = 5


def client(args, service, key=None, secret=None):
    return boto3.client(
        service,
        endpoint_url=args.endpoint,
        region_name=args.region,
        aws_access_key_id=key or args.access_key_id or "AKIACHECKER000000000",
        aws_secret_access_key=secret or args.secret_access_key or "checker",
        config=Config(retries={"max_attempts": 1}, connect_timeout=10, read_timeout=30),
    )


def reset_auth(args, n):
    # Not a form (urllib's default type), or moto reads the count from an empty body.
    req = urllib.request.Request(
        args.endpoint.rstrip("/") + "/moto-api/reset-auth",
        data=str(n).encode(),
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()


def stream(args, name):
    k = client(args, "kinesis")
    try:
        s = k.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    except ClientError as e:
        if e.response["Error"]["Code"] == "ResourceNotFoundException":
            return None
        raise
    tags = k.list_tags_for_stream(StreamName=name).get("Tags", [])
    return {
        "name": s["StreamName"],
        "arn": s["StreamARN"],
        "status": s["StreamStatus"],
        "mode": s.get("StreamModeDetails", {}).get("StreamMode"),
        "open_shards": s.get("OpenShardCount"),
        "retention_hours": s.get("RetentionPeriodHours"),
        "encryption": s.get("EncryptionType"),
        "key_id": s.get("KeyId"),
        "consumers": s.get("ConsumerCount"),
        "tags": {t["Key"]: t.get("Value", "") for t in tags},
    }


def consumers(args, name):
    k = client(args, "kinesis")
    arn = k.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    out = []
    for c in k.list_stream_consumers(StreamARN=arn).get("Consumers", []):
        out.append(
            {"name": c["ConsumerName"], "arn": c["ConsumerARN"], "status": c["ConsumerStatus"]}
        )
    return sorted(out, key=lambda c: c["name"])


def bootstrap(args):
    reset_auth(args, BOOTSTRAP_REQUESTS)
    iam = client(args, "iam")
    iam.create_user(UserName="eventbus")
    iam.put_user_policy(UserName="eventbus", PolicyName="kinesis", PolicyDocument=KINESIS_ALL)
    key = iam.create_access_key(UserName="eventbus")["AccessKey"]
    role = iam.create_role(RoleName="eventbus-web", AssumeRolePolicyDocument=TRUST_WEB_IDENTITY)
    iam.put_role_policy(RoleName="eventbus-web", PolicyName="kinesis", PolicyDocument=KINESIS_ALL)
    # From here on moto verifies: a made-up key must be refused, the real one taken.
    try:
        client(args, "kinesis", "AKIAMADEUP0000000000", "nope").list_streams()
        raise SystemExit("moto took a made-up key: it does not verify signatures")
    except ClientError as e:
        if e.response["ResponseMetadata"]["HTTPStatusCode"] != 403:
            raise
    client(args, "kinesis", key["AccessKeyId"], key["SecretAccessKey"]).list_streams()
    return {
        "access_key_id": key["AccessKeyId"],
        "secret_access_key": key["SecretAccessKey"],
        "role_arn": role["Role"]["Arn"],
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--access-key-id")
    p.add_argument("--secret-access-key")
    p.add_argument("command")
    p.add_argument("args", nargs="*")
    args = p.parse_args()
    c, a = args.command, args.args
    if c == "streams":
        k = client(args, "kinesis")
        names, more = [], True
        kw = {}
        while more:
            r = k.list_streams(**kw)
            names += r["StreamNames"]
            more = r.get("HasMoreStreams", False) and r["StreamNames"]
            if more:
                kw = {"ExclusiveStartStreamName": r["StreamNames"][-1]}
        out = sorted(names)
    elif c == "stream":
        out = stream(args, a[0])
    elif c == "consumers":
        out = consumers(args, a[0])
    elif c == "create-stream":
        client(args, "kinesis").create_stream(StreamName=a[0], ShardCount=int(a[1]))
        out = {"created": a[0]}
    elif c == "bootstrap":
        out = bootstrap(args)
    elif c == "allow-unsigned":
        reset_auth(args, int(a[0]))
        out = {"allowed": int(a[0])}
    else:
        raise SystemExit(f"unknown command {c}")
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    try:
        main()
    except ClientError as e:
        print(f"{e}", file=sys.stderr)
        sys.exit(1)
