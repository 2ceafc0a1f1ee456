"""The deployment files in deploy/ agree with the code they deploy.

No Docker engine or cluster is needed: every YAML document is parsed and its structure
checked — selectors, probes, resources, one verification worker per department of the
catalog — and every `RELIEF_*` name and every `relief` command the files use is checked
against the settings classes and the typer app they would reach.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer.main
from pydantic import AliasChoices, ValidationError
from pydantic_settings import BaseSettings

from services import cli
from services.intake.settings import IntakeSettings
from services.notify.settings import NotifySettings
from services.verification.settings import VerificationSettings
from shared.catalog import catalog
from shared.settings import Environment, ServiceSettings

# PyYAML ships no type hints; the project does not add stubs for one test module.
yaml: Any = importlib.import_module("yaml")

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
SECRET_TEMPLATE = K8S / "secret.example.yaml"
SCALING_DOC = ROOT / "docs" / "scaling.md"
IMAGE = "relief-platform"

SETTINGS: dict[str, type[ServiceSettings]] = {
    "intake": IntakeSettings,
    "verification": VerificationSettings,
    "notify": NotifySettings,
}
API_PORTS = {"intake": 8001, "verification": 8002, "notify": 8003}
RELIEF_NAME = re.compile(r"\bRELIEF_[A-Z0-9_]*[A-Z0-9]\b")
ENVIRON_READ = re.compile(r"environ(?:\.get\(\s*|\[)\"(RELIEF_[A-Z0-9_]+)\"")
STRONG_SECRETS = {
    "RELIEF_JWT_SECRET": "j" * 48,
    "RELIEF_PII_HASH_KEY": "h" * 48,
    "RELIEF_PII_KEYS": '{"k1": "' + "a" * 43 + '="}',
    "RELIEF_PII_ACTIVE_KEY_ID": "k1",
}


# --- loading ---------------------------------------------------------------------------


def _mapping_without_duplicates(loader: Any, node: Any, deep: bool = False) -> Any:
    """Compose and kubectl refuse a mapping with a key twice; PyYAML keeps the last one."""
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep)


StrictLoader: Any = type("StrictLoader", (yaml.SafeLoader,), {})
StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)


@cache
def documents(path: Path) -> tuple[Any, ...]:
    return tuple(d for d in yaml.load_all(path.read_text(), Loader=StrictLoader) if d is not None)


def yaml_files() -> list[Path]:
    return sorted([*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")])


def k8s_files() -> list[Path]:
    return sorted(K8S.glob("*.yaml"))


@cache
def k8s_objects() -> tuple[dict[str, Any], ...]:
    """Every object `kubectl apply -k deploy/k8s` creates, and the Secret template."""
    objects = [doc for path in k8s_files() for doc in documents(path)]
    return tuple(o for o in objects if o.get("kind") != "Kustomization")


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [o for o in k8s_objects() if o["kind"] == kind]


def deployments() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in of_kind("Deployment")}


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def only_container(workload: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod_spec(workload)["containers"]
    assert len(containers) == 1, workload["metadata"]["name"]
    return containers[0]


def env_values(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@cache
def compose() -> dict[str, Any]:
    (doc,) = documents(COMPOSE_FILE)
    assert isinstance(doc, dict)
    return doc


def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose()["services"]
    return services


def relief_compose_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose_services().items()
        if str(service.get("image", "")).startswith(f"{IMAGE}:")
    }


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """A compose service's volumes: source (named volume or ./path) -> path inside."""
    return {v.split(":")[0]: v.split(":")[1] for v in service.get("volumes", [])}


def env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env.example: not NAME=value: {line!r}"
            values[name.strip()] = value.strip()
    return values


# --- what the code accepts ---------------------------------------------------------------


def settings_env_names(settings_class: type[BaseSettings]) -> set[str]:
    """The environment names pydantic-settings reads for a class: the prefixed field name,
    or, for a field with a validation alias, only the alias's choices."""
    prefix = str(settings_class.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for field_name, field in settings_class.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {c.upper() for c in alias.choices if isinstance(c, str)}
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(f"{prefix}{field_name}".upper())
    return names


@cache
def read_directly() -> frozenset[str]:
    """RELIEF_ names the code reads from os.environ itself (e.g. RELIEF_CATALOG_PATH)."""
    names: set[str] = set()
    for package in ("shared", "services"):
        for path in (ROOT / package).rglob("*.py"):
            names |= set(ENVIRON_READ.findall(path.read_text()))
    return frozenset(names)


def accepted_names(service: str | None) -> set[str]:
    """What a process of `service` reads; None: any process (shared config, migrate)."""
    classes: list[type[ServiceSettings]] = (
        [SETTINGS[service]] if service else [ServiceSettings, *SETTINGS.values()]
    )
    names = set(read_directly())
    for settings_class in classes:
        names |= settings_env_names(settings_class)
    return names


def service_of(argv: list[str]) -> str | None:
    """`serve intake …` -> "intake"; `migrate` -> None (it migrates every service)."""
    return argv[1] if len(argv) > 1 and argv[0] in ("serve", "worker", "relay") else None


@cache
def relief_app() -> Any:
    return typer.main.get_command(cli.app)


def resolve_command(argv: list[str]) -> tuple[Any, list[str], list[str]]:
    """Walk the typer app's groups: (command, its path, the arguments left for it)."""
    command, rest = relief_app(), list(argv)
    path: list[str] = []
    while getattr(command, "commands", None) is not None:
        assert rest, f"`relief {' '.join(path)}` needs a subcommand"
        name = rest.pop(0)
        assert name in command.commands, f"`relief {' '.join([*path, name])}` is no command"
        command = command.commands[name]
        path.append(name)
    return command, path, rest


def check_relief_argv(argv: list[str]) -> None:
    """A full command line: it parses as the typer app would parse it, and names a real
    service (with an outbox, for `relay`)."""
    command, path, rest = resolve_command(argv)
    try:
        command.make_context(f"relief {' '.join(path)}", list(rest))
    except Exception as exc:  # typer's vendored click raises its own usage errors
        pytest.fail(f"`relief {' '.join(argv)}`: {exc}")
    service = service_of(argv)
    if service is not None:
        assert service in cli.SERVICES, argv
        if argv[0] == "relay":
            assert cli.RELAYS[service], f"{service} has no outbox relay"


# --- every YAML document -----------------------------------------------------------------


def test_every_yaml_file_under_deploy_parses() -> None:
    files = yaml_files()
    assert COMPOSE_FILE in files
    assert DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml" in files
    assert DEPLOY / "grafana" / "provisioning" / "dashboards" / "relief.yml" in files
    assert len(k8s_files()) >= 8
    for path in files:
        assert documents(path), f"{path} has no YAML document"


# --- Kubernetes --------------------------------------------------------------------------


def test_every_k8s_object_is_named_and_namespaced() -> None:
    for obj in k8s_objects():
        assert obj.get("apiVersion"), obj
        assert obj.get("kind"), obj
        metadata = obj.get("metadata") or {}
        assert metadata.get("name"), obj
        if obj["kind"] != "Namespace":
            assert metadata.get("namespace") == "relief", metadata["name"]


def test_kustomization_lists_every_manifest_but_the_secret_template() -> None:
    (kustomization,) = documents(K8S / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["namespace"] == "relief"
    listed = set(kustomization["resources"])
    present = {p.name for p in k8s_files()} - {"kustomization.yaml", SECRET_TEMPLATE.name}
    assert listed == present
    # The template never goes out with `apply -k`: it would overwrite the real secrets.
    assert SECRET_TEMPLATE.name not in listed
    assert [i["name"] for i in kustomization["images"]] == [IMAGE]


def test_deployment_selectors_match_their_pod_labels() -> None:
    for name, deployment in deployments().items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector, name
        assert selector.items() <= labels.items(), name
    # No Deployment's selector takes another one's pods.
    for name, deployment in deployments().items():
        selector = deployment["spec"]["selector"]["matchLabels"].items()
        for other_name, other in deployments().items():
            if other_name != name:
                other_labels = other["spec"]["template"]["metadata"]["labels"].items()
                assert not selector <= other_labels, (name, other_name)


def test_every_container_has_resources_and_runs_the_image_restricted() -> None:
    workloads = [*of_kind("Deployment"), *of_kind("Job")]
    for workload in workloads:
        name = workload["metadata"]["name"]
        pod = pod_spec(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        volumes = {v["name"] for v in pod.get("volumes", [])}
        for container in pod["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), name
            assert {"cpu", "memory"} <= set(resources["limits"]), name
            assert container["image"].split(":")[0] == IMAGE, name
            # The image's entry point is `relief`: containers give only its arguments.
            assert "command" not in container, name
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, name


def test_api_containers_are_probed_on_readyz_and_healthz() -> None:
    apis = {n: d for n, d in deployments().items() if only_container(d)["args"][0] == "serve"}
    assert sorted(service_of(only_container(d)["args"]) or "" for d in apis.values()) == sorted(
        API_PORTS
    )
    for name, deployment in apis.items():
        container = only_container(deployment)
        port_names = {p["name"] for p in container["ports"]}
        service = service_of(container["args"])
        assert service is not None
        assert [p["containerPort"] for p in container["ports"]] == [API_PORTS[service]]
        readiness = container["readinessProbe"]["httpGet"]
        liveness = container["livenessProbe"]["httpGet"]
        assert readiness["path"] == "/readyz", name
        assert liveness["path"] == "/healthz", name
        assert {readiness["port"], liveness["port"]} <= port_names, name


def test_stateless_apis_run_at_least_two_replicas_with_a_disruption_budget() -> None:
    min_replicas = {
        h["spec"]["scaleTargetRef"]["name"]: h["spec"]["minReplicas"]
        for h in of_kind("HorizontalPodAutoscaler")
    }
    budgets = of_kind("PodDisruptionBudget")
    for name, deployment in deployments().items():
        if only_container(deployment)["args"][0] != "serve":
            continue
        replicas = deployment["spec"].get("replicas") or min_replicas.get(name, 1)
        assert replicas >= 2, name
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [
            b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(covering) == 1, name
        assert covering[0]["spec"]["minAvailable"] < replicas, name


def test_every_service_selects_a_deployment_and_one_of_its_ports() -> None:
    for service in of_kind("Service"):
        selector = service["spec"]["selector"]
        targets = [
            d
            for d in deployments().values()
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(targets) == 1, service["metadata"]["name"]
        ports = only_container(targets[0])["ports"]
        port_refs = {p["name"] for p in ports} | {p["containerPort"] for p in ports}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_refs, service["metadata"]["name"]


def test_every_autoscaler_targets_a_deployment_it_does_not_fight() -> None:
    for hpa in of_kind("HorizontalPodAutoscaler"):
        assert hpa["apiVersion"] == "autoscaling/v2"
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment"
        deployment = deployments().get(target["name"])
        assert deployment is not None, target
        # `replicas` in the manifest would reset the autoscaler's count on every apply.
        assert "replicas" not in deployment["spec"], target["name"]
        # CPU utilization is measured against the request.
        assert "cpu" in only_container(deployment)["resources"]["requests"]
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    targets = {h["spec"]["scaleTargetRef"]["name"] for h in of_kind("HorizontalPodAutoscaler")}
    intake_api = [
        h
        for h in of_kind("HorizontalPodAutoscaler")
        if h["metadata"]["name"] == "relief-intake-api"
    ]
    assert intake_api, "the intake API autoscales"
    (metric,) = intake_api[0]["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["averageUtilization"] == 70
    assert {f"relief-verification-worker-{d}" for d in catalog().department_codes()} <= targets


def test_one_verification_worker_deployment_per_department() -> None:
    served: list[str] = []
    for name, deployment in deployments().items():
        container = only_container(deployment)
        if container["args"] != ["worker", "verification"]:
            continue
        env = env_values(container)
        departments = json.loads(env["RELIEF_VERIFICATION_DEPARTMENTS"])
        assert len(departments) == 1, name
        (department,) = departments
        assert name == f"relief-verification-worker-{department}"
        assert (
            deployment["spec"]["template"]["metadata"]["labels"]["relief/department"] == department
        )
        served.append(department)
    assert sorted(served) == sorted(catalog().department_codes())
    assert len(served) == 7


def test_workers_take_stable_consumer_names_from_the_pod_name() -> None:
    workers = [d for d in deployments().values() if only_container(d)["args"][0] == "worker"]
    assert {only_container(d)["args"][1] for d in workers} == set(cli.SERVICES)
    for deployment in workers:
        worker_id = env_values(only_container(deployment))["RELIEF_WORKER_ID"]
        assert worker_id == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_relays_and_the_migration_job() -> None:
    relays = sorted(
        only_container(d)["args"][1]
        for d in deployments().values()
        if only_container(d)["args"][0] == "relay"
    )
    assert relays == sorted(s for s in cli.SERVICES if cli.RELAYS[s])
    (job,) = of_kind("Job")
    assert only_container(job)["args"] == ["migrate"]
    assert pod_spec(job)["restartPolicy"] in ("Never", "OnFailure")


def test_pods_read_the_configmap_and_the_secret_that_exist() -> None:
    configmaps = {c["metadata"]["name"] for c in of_kind("ConfigMap")}
    (secret,) = of_kind("Secret")
    claims = {c["metadata"]["name"] for c in of_kind("PersistentVolumeClaim")}
    for workload in [*of_kind("Deployment"), *of_kind("Job")]:
        container = only_container(workload)
        refs = container["envFrom"]
        assert {r["configMapRef"]["name"] for r in refs if "configMapRef" in r} <= configmaps
        assert {r["secretRef"]["name"] for r in refs if "secretRef" in r} == {
            secret["metadata"]["name"]
        }
        for volume in pod_spec(workload).get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
                # The attachments volume sits where the settings say the store is.
                (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
                (configmap,) = of_kind("ConfigMap")
                assert mount["mountPath"] == configmap["data"]["RELIEF_OBJECT_STORE_DIR"]
        # Kubernetes takes only strings as environment values.
        for entry in container.get("env", []):
            assert "valueFrom" in entry or isinstance(entry["value"], str), entry
    for configmap in of_kind("ConfigMap"):
        assert all(isinstance(v, str) for v in configmap["data"].values())
    assert all(isinstance(v, str) for v in secret["stringData"].values())


def test_k8s_settings_load_in_production_for_every_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """ConfigMap + Secret (its placeholders refused, real values accepted) + each
    Deployment's own env give a valid configuration of that process's service."""
    (configmap,) = of_kind("ConfigMap")
    (secret,) = of_kind("Secret")
    _clear_relief_environment(monkeypatch)
    for name, value in {**configmap["data"], **secret["stringData"]}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match="RELIEF_JWT_SECRET"):
        ServiceSettings()
    for name, value in STRONG_SECRETS.items():
        monkeypatch.setenv(name, value)
    for workload in [*of_kind("Deployment"), *of_kind("Job")]:
        container = only_container(workload)
        service = service_of(container["args"])
        with monkeypatch.context() as local:
            for entry in container.get("env", []):
                local.setenv(entry["name"], entry.get("value", "pod-name-from-downward-api"))
            settings = SETTINGS[service]() if service else ServiceSettings()
            assert settings.env is Environment.PROD
            assert settings.host == configmap["data"]["RELIEF_HOST"]
            if isinstance(settings, VerificationSettings) and container["args"][0] == "worker":
                department = workload["metadata"]["name"].rsplit("-", 1)[1]
                assert settings.served_departments() == [department]


# --- docker compose ----------------------------------------------------------------------


def test_compose_runs_postgres_16_and_redis_7_with_aof_on_volumes() -> None:
    services = compose_services()
    declared = set(compose()["volumes"])
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    redis_command = [str(part) for part in services["redis"]["command"]]
    assert redis_command[redis_command.index("--appendonly") + 1] == "yes"
    assert redis_command[redis_command.index("--maxmemory-policy") + 1] == "noeviction"
    # The services log in with the passwords the servers are started with.
    relief_env = compose()["x-relief-env"]
    password = redis_command[redis_command.index("--requirepass") + 1]
    assert relief_env["RELIEF_REDIS_URL"].startswith(f"redis://:{password}@redis:6379/")
    postgres_password = services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert f"relief:{postgres_password}@postgres:5432/relief" in relief_env["RELIEF_DATABASE_URL"]
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"]
        volumes = set(mounts(services[name]))
        assert volumes and volumes <= declared


def test_compose_volumes_exist() -> None:
    declared = set(compose()["volumes"])
    for name, service in compose_services().items():
        for source in mounts(service):
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source}"
            else:
                assert source in declared, f"{name}: {source}"


def test_compose_relief_processes() -> None:
    services = relief_compose_services()
    commands = {name: [str(a) for a in s["command"]] for name, s in services.items()}
    assert commands["migrate"] == ["migrate"]
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (DEPLOY / services["migrate"]["build"]["context"] / "deploy" / "Dockerfile").is_file()
    for name, service in services.items():
        assert service["environment"]["RELIEF_ENV"] == "prod", name
        assert service["env_file"] == [".env"], name
        if name != "migrate":
            waits_for = service["depends_on"]["migrate"]["condition"]
            assert waits_for == "service_completed_successfully", name
    apis = {n: c for n, c in commands.items() if c[0] == "serve"}
    assert sorted(c[1] for c in apis.values()) == sorted(API_PORTS)
    for name, command in apis.items():
        assert command[2:] == ["--workers", "2"], name
        assert "/readyz" in services[name]["healthcheck"]["test"], name
        assert services[name]["ports"] == [f"{API_PORTS[command[1]]}:{API_PORTS[command[1]]}"]
    # Intake writes attachments where verification reads them: one volume, one path.
    for name in ("intake-api", "verification-api"):
        store = services[name]["environment"]["RELIEF_OBJECT_STORE_DIR"]
        assert mounts(services[name])["objects"] == store, name
    relays = sorted(c[1] for c in commands.values() if c[0] == "relay")
    assert relays == sorted(s for s in cli.SERVICES if cli.RELAYS[s])
    workers = {n: c[1] for n, c in commands.items() if c[0] == "worker"}
    assert set(workers.values()) == set(cli.SERVICES)
    verification = [n for n, s in workers.items() if s == "verification"]
    assert len(verification) >= 2
    # Distinct, stable consumer names: "<hostname>-verification-<RELIEF_WORKER_ID>".
    names = {
        (services[n]["hostname"], services[n]["environment"]["RELIEF_WORKER_ID"])
        for n in verification
    }
    assert len(names) == len(verification)
    assert len({services[n]["environment"]["RELIEF_WORKER_ID"] for n in verification}) == len(
        verification
    )


def test_compose_prometheus_scrapes_the_apis_with_the_shipped_job_and_alerts() -> None:
    prometheus = compose_services()["prometheus"]
    volumes = mounts(prometheus)
    assert volumes["./prometheus/alerts.yml"] == "/etc/prometheus/alerts.yml"
    config_source = next(s for s, t in volumes.items() if t == "/etc/prometheus/prometheus.yml")
    (config,) = documents(DEPLOY / config_source)
    (shipped,) = documents(DEPLOY / "prometheus" / "prometheus.yml")
    assert config["rule_files"] == shipped["rule_files"] == ["alerts.yml"]
    (job,) = config["scrape_configs"]
    (shipped_job,) = shipped["scrape_configs"]
    for key in ("job_name", "metrics_path", "honor_labels"):
        assert job[key] == shipped_job[key]
    targets = {(sd["names"][0], sd["port"]) for sd in job["dns_sd_configs"]}
    assert targets == {(f"{s}-api", p) for s, p in API_PORTS.items()}
    for name, _ in targets:
        assert name in compose_services()


def test_grafana_is_provisioned_with_the_dashboard_on_the_provisioned_datasource() -> None:
    services = compose_services()
    grafana_mounts = mounts(services["grafana"])
    assert grafana_mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    (datasources,) = documents(
        DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
    )
    (providers,) = documents(DEPLOY / "grafana" / "provisioning" / "dashboards" / "relief.yml")
    (datasource,) = datasources["datasources"]
    (provider,) = providers["providers"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert grafana_mounts["grafana-dashboards"] == provider["options"]["path"]
    # The dashboard export names its data source "${DS_PROMETHEUS}"; the one-shot step
    # rewrites it to the provisioned uid (compose writes "$$" for a literal "$").
    step = services["grafana-dashboards"]
    script = step["command"][-1]
    assert "[$$]{DS_PROMETHEUS}" in script
    assert f"/{datasource['uid']}/g" in script
    assert "./grafana/relief-dashboard.json" in mounts(step)
    dashboard = (DEPLOY / "grafana" / "relief-dashboard.json").read_text()
    rewritten = json.loads(dashboard.replace("${DS_PROMETHEUS}", datasource["uid"]))
    uids = {ref.get("uid") for ref in _datasource_refs(rewritten)}
    assert uids == {datasource["uid"]}


def _datasource_refs(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if isinstance(node.get("datasource"), dict):
            yield node["datasource"]
        for value in node.values():
            yield from _datasource_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _datasource_refs(value)


def test_env_example_placeholders_are_refused_in_production(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = env_example()
    assert {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD"} <= set(values)
    header = (DEPLOY / ".env.example").read_text()
    assert "refuse" in header and "placeholder" in header
    _clear_relief_environment(monkeypatch)
    for name, value in values.items():
        if name.startswith("RELIEF_"):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("RELIEF_ENV", "prod")
    classes: list[type[ServiceSettings]] = [ServiceSettings, *SETTINGS.values()]
    for settings_class in classes:
        with pytest.raises(ValidationError, match="RELIEF_JWT_SECRET"):
            settings_class()


# --- names and commands used anywhere ------------------------------------------------------


def test_every_relief_env_name_in_deploy_is_a_real_setting() -> None:
    accepted = accepted_names(None)
    paths = [p for p in DEPLOY.rglob("*") if p.is_file() and p.suffix != ".json"]
    used: dict[str, set[Path]] = {}
    for path in [*paths, SCALING_DOC]:
        for name in RELIEF_NAME.findall(path.read_text()):
            used.setdefault(name, set()).add(path.relative_to(ROOT))
    assert "RELIEF_VERIFICATION_DEPARTMENTS" in used
    unknown = {
        name: sorted(map(str, where)) for name, where in used.items() if name not in accepted
    }
    assert not unknown, f"not read by any settings class: {unknown}"


def test_each_process_gets_only_settings_its_service_reads() -> None:
    for workload in [*of_kind("Deployment"), *of_kind("Job")]:
        container = only_container(workload)
        accepted = accepted_names(service_of(container["args"]))
        for entry in container.get("env", []):
            assert entry["name"] in accepted, (workload["metadata"]["name"], entry["name"])
    for name, service in relief_compose_services().items():
        accepted = accepted_names(service_of([str(a) for a in service["command"]]))
        assert set(service["environment"]) <= accepted, name


def test_every_relief_command_is_a_real_cli_command() -> None:
    argvs = [[str(a) for a in s["command"]] for s in relief_compose_services().values()]
    argvs += [only_container(w)["args"] for w in [*of_kind("Deployment"), *of_kind("Job")]]
    assert len(argvs) > 20
    for argv in argvs:
        check_relief_argv(argv)
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["relief"]' in dockerfile
    # Commands written for people, in comments and docs: the path and the options exist.
    mentioned = 0
    for path in [*DEPLOY.rglob("*"), SCALING_DOC]:
        if path.is_file() and path.suffix != ".json":
            for argv in _relief_mentions(path.read_text()):
                mentioned += 1
                command, _, rest = resolve_command(argv)
                options = {o for p in command.params for o in p.opts}
                for token in rest:
                    if token.startswith("--"):
                        assert token.split("=")[0] in options, f"{path}: relief {' '.join(argv)}"
    assert mentioned > 5


def _relief_mentions(text: str) -> Iterator[list[str]]:
    """`relief …` in backticks, and lines (comment markers stripped) that start with it."""
    spans = re.findall(r"`relief ([^`]+)`", text)
    lines = [re.sub(r"^[\s#$>]*", "", line) for line in text.splitlines()]
    spans += [line[len("relief ") :] for line in lines if line.startswith("relief ")]
    for span in spans:
        words = shlex.split(span.split("<<")[0].replace("…", ""), comments=False)
        # Stop at the first placeholder or alternative (`serve <service>`, `relay intake|…`).
        argv = []
        for word in words:
            if any(c in word for c in "<>|[]"):
                break
            argv.append(word)
        if argv:
            yield argv


# --- the image ---------------------------------------------------------------------------


def test_dockerfile_builds_a_non_root_relief_image() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    assert re.search(r"^RUN pip install --no-deps \.", text, re.MULTILINE)
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*relief-healthcheck", text, re.MULTILINE)
    # The build context is an allow-list: nothing of .relief/ (embedded data) or .venv/.
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert not {a for a in allowed if a.startswith((".relief", ".venv", ".git"))}
    copies = re.findall(r"^COPY (.+)$", text, re.MULTILINE)
    sources = [
        word
        for copy in copies
        if "--from=" not in copy
        for word in [w for w in copy.split() if not w.startswith("--")][:-1]
    ]
    assert {"pyproject.toml", "shared", "services", "deploy/healthcheck.py"} <= set(sources)
    for source in sources:
        assert source in allowed, source
        assert (ROOT / source).exists(), source


def _clear_relief_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("RELIEF_"):
            monkeypatch.delenv(name)
