"""deploy/k8s: valid for a pinned Kubernetes (strict schema), and consistent with hulytrio.

kubernetes-validate checks every object against the OpenAPI schema of
``KUBERNETES_VERSION`` in strict mode (unknown fields are errors); the rest
checks what a schema cannot: one hub, the probes' paths and ports, the
security context, and that the objects name each other correctly.
"""

from __future__ import annotations

import json

import kubernetes_validate
import pytest

from .conftest import (
    IMAGE_UID,
    K8S,
    hulytrio_argv,
    load_yaml_documents,
    parse_cli,
    pyproject_version,
)

#: the Kubernetes release the manifests are checked against
KUBERNETES_VERSION = "1.31.0"


def container(deployment, name):
    (found,) = [c for c in deployment["spec"]["template"]["spec"]["containers"]
                if c["name"] == name]
    return found


def env_of(container_spec):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container_spec["env"]}


def named_port(container_spec, name):
    (port,) = [p["containerPort"] for p in container_spec["ports"] if p["name"] == name]
    return port


@pytest.mark.parametrize("path", sorted(K8S.glob("*.yaml")), ids=lambda p: p.name)
def test_manifests_are_valid_for_the_pinned_kubernetes(path):
    documents = load_yaml_documents(path)
    assert documents
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_strict_validation_rejects_an_unknown_field(k8s_objects):
    hub = json.loads(json.dumps(k8s_objects[("Deployment", "huly-network")]))
    hub["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="livenesProbe"):
        kubernetes_validate.validate(hub, KUBERNETES_VERSION, strict=True)


def test_one_hub_replaced_not_rolled(k8s_objects):
    spec = k8s_objects[("Deployment", "huly-network")]["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    # nothing may scale the hub
    assert not [o for (kind, _), o in k8s_objects.items()
                if kind == "HorizontalPodAutoscaler"
                and o["spec"]["scaleTargetRef"]["name"] == "huly-network"]


def test_hub_probes_serve_and_ports(k8s_objects, config_file):
    hub = container(k8s_objects[("Deployment", "huly-network")], "network")
    network_port = config_file["network"]["port"]
    assert named_port(hub, "network") == network_port
    assert named_port(hub, "metrics") == config_file["monitoring"]["metricsPort"]
    assert hub["livenessProbe"]["httpGet"] == {"path": "/health", "port": "network"}
    assert hub["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "network"}
    env = env_of(hub)
    assert env["NETWORK_PORT"] == str(network_port)
    assert env["NETWORK_BIND_ADDRESS"] == "0.0.0.0"
    assert hub["image"] == f"hulytrio-hub:{pyproject_version()}"
    args = parse_cli(hub["args"])
    assert args.command == "serve"
    mounts = {m["name"]: m["mountPath"] for m in hub["volumeMounts"]}
    assert args.config == f"{mounts['config']}/production.json"
    assert hub["resources"]["requests"] == {"memory": "512Mi", "cpu": "500m"}
    assert hub["resources"]["limits"] == {"memory": "2Gi", "cpu": "2000m"}


def test_the_configmap_is_the_shipped_config_file(k8s_objects, config_file):
    config_map = k8s_objects[("ConfigMap", "huly-network-config")]
    assert json.loads(config_map["data"]["production.json"]) == config_file
    volumes = k8s_objects[("Deployment", "huly-network")]["spec"]["template"]["spec"]["volumes"]
    (config_volume,) = [v for v in volumes if v["name"] == "config"]
    assert config_volume["configMap"]["name"] == "huly-network-config"


@pytest.mark.parametrize(("deployment", "name"), [("huly-network", "network"),
                                                  ("huly-agents", "agent")])
def test_pods_run_locked_down(k8s_objects, deployment, name):
    pod = k8s_objects[("Deployment", deployment)]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == IMAGE_UID
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    security = container(k8s_objects[("Deployment", deployment)], name)["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security.get("privileged", False) is False
    assert "limits" in container(k8s_objects[("Deployment", deployment)], name)["resources"]


def test_the_service_reaches_the_hub_pod(k8s_objects):
    deployment = k8s_objects[("Deployment", "huly-network")]
    service = k8s_objects[("Service", "huly-network-service")]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hub = container(deployment, "network")
    for port in service["spec"]["ports"]:
        assert port["port"] == named_port(hub, port["targetPort"])


def test_agents_dial_the_hub_service(k8s_objects, config_file):
    deployment = k8s_objects[("Deployment", "huly-agents")]
    agent = container(deployment, "agent")
    env = env_of(agent)
    service = k8s_objects[("Service", "huly-network-service")]
    (network,) = [p for p in service["spec"]["ports"] if p["name"] == "network"]
    assert env["NETWORK_HOST"] == "huly-network-service"
    assert env["NETWORK_PORT"] == str(network["port"])
    assert env["AGENT_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["AGENT_HOST"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert named_port(agent, "agent") == int(env["AGENT_PORT"])
    assert agent["image"] == f"hulytrio-agent:{pyproject_version()}"
    args = parse_cli(agent["args"])
    assert args.command == "agent"
    health = parse_cli(hulytrio_argv(agent["readinessProbe"]["exec"]["command"]))
    assert health.command == "health"
    assert health.url == f"http://huly-network-service:{network['port']}/health"
    # no liveness probe on the hub: agents reconnect on their own
    assert "livenessProbe" not in agent
    assert agent["resources"]["requests"] == {"memory": "256Mi", "cpu": "250m"}


def test_the_agent_autoscaler_is_the_seeds(k8s_objects):
    hpa = k8s_objects[("HorizontalPodAutoscaler", "huly-agent-hpa")]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": "huly-agents"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (4, 20)
    targets = {m["resource"]["name"]: m["resource"]["target"]["averageUtilization"]
               for m in hpa["metrics"]}
    assert targets == {"cpu": 70, "memory": 80}


def test_prometheus_annotations_point_at_the_metrics_port(k8s_objects, config_file):
    template = k8s_objects[("Deployment", "huly-network")]["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(config_file["monitoring"]["metricsPort"])
    assert annotations["prometheus.io/path"] == "/metrics"
