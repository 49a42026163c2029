"""deploy/k8s-pair: two hubs on an etcd lease, valid and consistent with hulytrio."""

from __future__ import annotations

import re

import kubernetes_validate
import pytest

from hulytrio.config import load_config
from hulytrio.lease import parse_lease_url

from .conftest import DEPLOY, load_yaml_documents, parse_cli
from .test_kubernetes import KUBERNETES_VERSION, container, env_of

PAIR = DEPLOY / "k8s-pair"


@pytest.fixture(scope="module")
def objects():
    found = {}
    for path in sorted(PAIR.glob("*.yaml")):
        for doc in load_yaml_documents(path):
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def test_the_pair_manifests_are_valid_for_the_pinned_kubernetes(objects):
    assert objects
    for document in objects.values():
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_two_hubs_on_one_lease_each_advertising_its_stable_name(objects):
    hubs = objects[("StatefulSet", "huly-hub")]
    assert hubs["spec"]["replicas"] == 2
    service = objects[("Service", "huly-hub")]
    assert service["spec"]["clusterIP"] == "None"
    assert hubs["spec"]["serviceName"] == service["metadata"]["name"]
    hub = container(hubs, "network")
    env = env_of(hub)
    assert parse_lease_url(env["LEASE_URL"]).kind == "etcd"
    # $(POD_NAME) as Kubernetes expands it for the first pod
    pod_env = {k: v for k, v in env.items() if isinstance(v, str)}
    pod_env["ADVERTISE_URL"] = re.sub(r"\$\(POD_NAME\)", "huly-hub-0", pod_env["ADVERTISE_URL"])
    config = load_config(env=pod_env)
    assert config.network.advertise_url == "ws://huly-hub-0.huly-hub:3737"
    assert config.network.lease_ttl == 5
    parse_cli(hub["args"])
    # the standby must stay Ready (a rolling update waits for Ready pods)
    assert hub["readinessProbe"]["httpGet"]["path"] == "/health"
    assert hub["livenessProbe"]["httpGet"]["path"] == "/health"
