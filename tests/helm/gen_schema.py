"""Generates helm/spanscribe/values.schema.json (run: python tests/helm/gen_schema.py).

Kept in Python because the schema repeats a few shapes; the JSON file is what Helm reads and what is
committed. test_chart.py checks the committed file equals this script's output.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[2] / "helm" / "spanscribe" / "values.schema.json"


def obj(props: dict, required: list[str] | None = None, desc: str | None = None) -> dict:
    o: dict = {"type": "object", "additionalProperties": False, "properties": props}
    if required:
        o["required"] = required
    if desc:
        o["description"] = desc
    return o


def s(desc: str, **kw) -> dict:
    return {"type": "string", "description": desc, **kw}


def b(desc: str) -> dict:
    return {"type": "boolean", "description": desc}


def i(desc: str, minimum: int | None = 0, maximum: int | None = None) -> dict:
    o: dict = {"type": "integer", "description": desc}
    if minimum is not None:
        o["minimum"] = minimum
    if maximum is not None:
        o["maximum"] = maximum
    return o


PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
ANY_MAP = {"type": "object"}
LIST_OF_OBJ = {"type": "array", "items": {"type": "object"}}
QUANTITY = {"anyOf": [{"type": "string", "pattern": r"^[0-9.]+([eE][0-9]+|[numkMGTPE]|[KMGTPE]i)?$"}, {"type": "number", "minimum": 0}]}
RESOURCES = {
    "type": "object",
    "additionalProperties": False,
    "description": "Container resources (requests/limits).",
    "properties": {
        "requests": {"type": "object", "additionalProperties": QUANTITY},
        "limits": {"type": "object", "additionalProperties": QUANTITY},
        "claims": LIST_OF_OBJ,
    },
}
PROBE = obj(
    {
        "initialDelaySeconds": i("seconds"),
        "periodSeconds": i("seconds", 1),
        "timeoutSeconds": i("seconds", 1),
        "failureThreshold": i("count", 1),
        "successThreshold": i("count", 1),
    }
)
IMAGE = obj(
    {
        "repository": s("image repository", minLength=1),
        "tag": s("image tag"),
        "digest": s("image digest", pattern=r"^$|^sha256:[0-9a-f]{64}$"),
        "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
    },
    ["repository"],
)
ARGS = {"type": "array", "items": {"type": "string"}}
ENV = {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "minLength": 1}}}}
INT_OR_PERCENT = {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": r"^[0-9]+%$"}]}
WS_URL = r"^wss?://[A-Za-z0-9._\-\[\]:]+(:[0-9]{1,5})?(/\S*)?$"
BOOTSTRAP = r"^[A-Za-z0-9._\-\[\]:]+:[0-9]{1,5}(,[A-Za-z0-9._\-\[\]:]+:[0-9]{1,5})*$"
CIDR = r"^([0-9]{1,3}\.){3}[0-9]{1,3}/[0-9]{1,2}$|^[0-9A-Fa-f:]+/[0-9]{1,3}$"
SITE = r"^[A-Za-z0-9._-]*$"
TIME = r"^$|^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)?(Z|[+-][0-9]{2}:?[0-9]{2})?$|^[0-9]+(\.[0-9]+)?$"

schema = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "spanscribe chart values",
    "type": "object",
    "additionalProperties": False,
    "required": ["kafka", "workers", "stt", "edge", "topics"],
    "properties": {
        "global": {"type": "object", "description": "Helm's global values (from a parent chart)."},
        "nameOverride": s("replaces the chart name in resource names", maxLength=40),
        "fullnameOverride": s("replaces the resource name prefix", maxLength=50),
        "commonLabels": STR_MAP,
        "logLevel": {"enum": ["debug", "info", "warning", "error"], "description": "log level"},
        "image": IMAGE,
        "imagePullSecrets": {"type": "array", "items": obj({"name": s("secret name", minLength=1)}, ["name"])},
        "kafka": obj(
            {
                "bootstrapServers": s(
                    "Comma separated host:port list of Kafka bootstrap brokers (required)",
                    minLength=1,
                    pattern=BOOTSTRAP,
                ),
                "topicPrefix": s("topic name prefix", minLength=1, maxLength=200, pattern=r"^[A-Za-z0-9._-]+$"),
                "partitions": i("partitions of the topics", 1, 10000),
                "config": {
                    "type": "object",
                    "description": "extra librdkafka settings (dotted keys)",
                    "propertyNames": {"pattern": r"^[a-z][a-z0-9._]*$"},
                    "additionalProperties": {"type": ["string", "number", "boolean"]},
                },
                "tls": obj(
                    {
                        "enabled": b("TLS to Kafka"),
                        "ca": obj(
                            {
                                "existingSecret": s("existing Secret with the CA"),
                                "key": s("key of the CA in that Secret", minLength=1),
                                "pem": s("CA PEM", pattern=r"^$|-----BEGIN CERTIFICATE-----"),
                            }
                        ),
                        "clientCert": obj(
                            {
                                "enabled": b("mutual TLS"),
                                "existingSecret": s("existing Secret with certificate and key"),
                                "certKey": s("key of the certificate", minLength=1),
                                "keyKey": s("key of the private key", minLength=1),
                                "cert": s("certificate PEM", pattern=r"^$|-----BEGIN CERTIFICATE-----"),
                                "key": s("private key PEM", pattern=r"^$|-----BEGIN [A-Z ]*PRIVATE KEY-----"),
                            }
                        ),
                    },
                    ["enabled"],
                ),
                "sasl": obj(
                    {
                        "enabled": b("SASL to Kafka"),
                        "mechanism": {"enum": ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"], "description": "SASL mechanism"},
                        "existingSecret": s("existing Secret with the password"),
                        "usernameKey": s("key of the username", minLength=1),
                        "passwordKey": s("key of the password", minLength=1),
                        "username": s("username"),
                        "password": s("password"),
                    },
                    ["enabled"],
                ),
            },
            ["bootstrapServers", "topicPrefix", "partitions"],
        ),
        "topics": obj(
            {
                "create": b("run the topic creation hook Job"),
                "replicationFactor": i("replication factor", 1, 32),
                "retentionHours": i("retention in hours", 1),
                "ttlSecondsAfterFinished": i("seconds"),
                "backoffLimit": i("retries"),
                "activeDeadlineSeconds": i("seconds", 1),
                "resources": RESOURCES,
            }
        ),
        "workers": obj(
            {
                "enabled": b("deploy the workers"),
                "replicas": i("number of workers (at most kafka.partitions)", 0),
                "webPort": PORT,
                "natFallback": b("join RTP whose destination no SDP names by its source tuple (symmetric RTP, NAT)"),
                "stt": obj(
                    {
                        "urls": {
                            "type": "array",
                            "description": "STT websocket URLs (ws:// or wss://)",
                            "items": {"type": "string", "pattern": WS_URL},
                            "uniqueItems": True,
                        },
                        "maxSessions": i("STT sessions per worker", 1),
                        "protocol": {"enum": ["vosk", "whisperlive"], "description": "STT protocol"},
                    }
                ),
                "speakers": obj(
                    {
                        "agentNetworks": {"type": "array", "items": {"type": "string", "pattern": CIDR}},
                        "agentExtensions": {"type": "array", "items": {"type": "string", "minLength": 1}},
                    }
                ),
                "extraConfig": ANY_MAP,
                "extraArgs": ARGS,
                "extraEnv": ENV,
                "resources": RESOURCES,
                "persistence": obj(
                    {
                        "enabled": b("PVC per worker"),
                        "storageClass": s("StorageClass"),
                        "size": s("claim size", pattern=r"^[0-9]+(\.[0-9]+)?([KMGTPE]i?)?$"),
                        "accessModes": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"enum": ["ReadWriteOnce", "ReadWriteOncePod", "ReadWriteMany", "ReadOnlyMany"]},
                        },
                        "retentionPolicy": obj(
                            {"whenDeleted": {"enum": ["Retain", "Delete"]}, "whenScaled": {"enum": ["Retain", "Delete"]}}
                        ),
                    }
                ),
                "probes": obj({"startup": PROBE, "liveness": PROBE, "readiness": PROBE}),
                "terminationGracePeriodSeconds": i("seconds"),
                "pdb": obj(
                    {
                        "enabled": b("create the PodDisruptionBudget"),
                        "maxUnavailable": {"anyOf": [INT_OR_PERCENT, {"type": "null"}]},
                        "minAvailable": {"anyOf": [INT_OR_PERCENT, {"type": "null"}]},
                    }
                ),
                "autoscaling": obj(
                    {
                        "enabled": b("create the HPA"),
                        "minReplicas": i("least workers", 1),
                        "maxReplicas": i("most workers (at most kafka.partitions)", 1),
                        "targetCPUUtilizationPercentage": i("percent", 1, 100),
                        "scaleDownStabilizationSeconds": i("seconds", 0, 3600),
                    }
                ),
                "podAnnotations": STR_MAP,
                "podLabels": STR_MAP,
                "nodeSelector": STR_MAP,
                "tolerations": LIST_OF_OBJ,
                "affinity": ANY_MAP,
                "topologySpreadConstraints": LIST_OF_OBJ,
                "priorityClassName": s("priority class"),
            }
        ),
        "stt": obj(
            {
                "enabled": b("deploy the reference STT server"),
                "replicas": i("replicas", 0),
                "port": PORT,
                "maxSessions": i("sessions per pod", 1),
                "threads": i("inference threads", 1, 64),
                "model": obj(
                    {
                        "path": s("model directory in the container", pattern=r"^/"),
                        "volume": ANY_MAP,
                        "mountPath": s("mount path of the model volume", pattern=r"^/"),
                    }
                ),
                "resources": RESOURCES,
                "extraArgs": ARGS,
                "extraEnv": ENV,
                "podAnnotations": STR_MAP,
                "nodeSelector": STR_MAP,
                "tolerations": LIST_OF_OBJ,
                "affinity": ANY_MAP,
            }
        ),
        "edge": obj(
            {
                "enabled": b("deploy the edge DaemonSet"),
                "image": IMAGE,
                "interface": s("capture interface on the node", pattern=r"^[A-Za-z0-9._@:-]{0,15}$"),
                "site": s("site name in every Kafka key", maxLength=64, pattern=SITE),
                "metricsPort": PORT,
                "dropToUser": s("user to drop to after opening the socket", pattern=r"^[a-z_][a-z0-9_-]*$|^$"),
                "nodeSelector": STR_MAP,
                "tolerations": LIST_OF_OBJ,
                "affinity": ANY_MAP,
                "extraArgs": ARGS,
                "extraEnv": ENV,
                "resources": RESOURCES,
                "podAnnotations": STR_MAP,
                "priorityClassName": s("priority class"),
                "maxUnavailable": INT_OR_PERCENT,
            }
        ),
        "replay": obj(
            {
                "enabled": b("create the replay Job"),
                "from": s("start time (ISO 8601 or epoch seconds)", pattern=TIME),
                "to": s("end time (ISO 8601 or epoch seconds)", pattern=TIME),
                "site": s("only this site", maxLength=64, pattern=SITE),
                "callId": s("only this Call-ID"),
                "outputPrefix": s("output topic prefix", pattern=r"^[A-Za-z0-9._-]*$"),
                "extraArgs": ARGS,
                "ttlSecondsAfterFinished": i("seconds"),
                "backoffLimit": i("retries"),
                "resources": RESOURCES,
            }
        ),
        "serviceAccount": obj(
            {
                "create": b("create the ServiceAccount"),
                "name": s("ServiceAccount name"),
                "annotations": STR_MAP,
                "automountServiceAccountToken": b("mount the API token"),
            }
        ),
        "podSecurityContext": ANY_MAP,
        "securityContext": ANY_MAP,
        "networkPolicy": obj(
            {
                "enabled": b("create NetworkPolicies"),
                "kafkaPorts": {"type": "array", "minItems": 1, "items": PORT},
                "kafkaPeers": LIST_OF_OBJ,
                "sttPorts": {"type": "array", "minItems": 1, "items": PORT},
                "metricsFrom": LIST_OF_OBJ,
            }
        ),
        "serviceMonitor": obj(
            {
                "enabled": b("create ServiceMonitors"),
                "labels": STR_MAP,
                "interval": s("scrape interval", pattern=r"^[0-9]+(ms|s|m|h)$"),
                "scrapeTimeout": s("scrape timeout", pattern=r"^[0-9]+(ms|s|m|h)$"),
            }
        ),
        "grafanaDashboard": obj(
            {"enabled": b("create the dashboard ConfigMap"), "labels": STR_MAP, "annotations": STR_MAP}
        ),
    },
}


def render() -> str:
    return json.dumps(schema, indent=2) + "\n"


if __name__ == "__main__":
    if "--check" in sys.argv:
        sys.exit(0 if OUT.read_text() == render() else 1)
    OUT.write_text(render())
    print(f"wrote {OUT}")
