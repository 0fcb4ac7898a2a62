#!/usr/bin/python3
"""Checks deploy/'s rendered manifests for what kubectl apply and docker compose would only find
out at install time: the fields each kind requires and the references between objects, and that
the service's replicas (README, "Replicas on Kubernetes") are named alike everywhere: --peers,
--advertise, the agents' --service, the StatefulSet's pods under its headless Service, and the
scrape targets (each replica exactly once).

  validate_manifests.py kubernetes RENDERED.yaml --source SRC [--deploy DEPLOY]
  validate_manifests.py compose CONFIG.yaml --source SRC [--deploy DEPLOY]

RENDERED.yaml is `kubectl kustomize deploy/kubernetes`; CONFIG.yaml is `docker-compose config`.
SRC is the repository (the agent's capabilities are read from agent/capabilities.cc); DEPLOY is
the deploy/ folder whose dashboards, provisioning and alert rules were used (default SRC/deploy).
Prints every problem found and exits 1 if there was one. Python's standard library and PyYAML.
"""
import argparse
import json
import pathlib
import re
import sys
import urllib.parse

import yaml

NAMESPACE = "tcpscope"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_KEY = re.compile(r"^([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass",
                  "CustomResourceDefinition"}
EXPECTED_KINDS = {"Namespace", "ConfigMap", "StatefulSet", "Service", "DaemonSet", "PodDisruptionBudget",
                  "PodMonitor", "PrometheusRule"}
# The service's replicas: a StatefulSet of this name (pods NAME-0..N-1).
SERVICE = "tcpscope-service"
# Target labels a monitor of the service must drop: the workload series carry their own.
WORKLOAD_LABELS = ("namespace", "pod", "container")
# What client-side `kubectl apply` can keep in its last-applied annotation, and a ConfigMap's limit.
APPLY_ANNOTATION_LIMIT = 256 * 1024
CONFIGMAP_LIMIT = 1024 * 1024
# CAP_SYS_ADMIN grants what these do; Docker before 23 cannot add them by name (compose.yaml).
COVERED_BY_SYS_ADMIN = {"BPF", "PERFMON"}

# Agent flags naming host files for workload identity, and what each must be on the host.
WORKLOAD_FLAGS = {
    "cgroup_root": "/sys/fs/cgroup",
    "containerd_socket": "/run/containerd/containerd.sock",
    "crio_socket": "/run/crio/crio.sock",
    "docker_socket": "/run/docker.sock",
}

problems = []


def host_path(path):
    """/var/run is /run on every current distribution."""
    return re.sub(r"^/var/run(?=/|$)", "/run", str(path))


def check_workload_flags(where, flags, mounts, required):
    """Each workload flag (cgroup tree, runtime sockets) names a path inside a read-only mount of
    the host's file of WORKLOAD_FLAGS. `flags`: {name: value}; `mounts`: (source on the host,
    target in the container, read-only) triples; `required`: the flags that must be given."""
    for name, expected in WORKLOAD_FLAGS.items():
        value = flags.get(name)
        if value is None:
            if name in required:
                problem(where, f"no --{name} (workload identity, README's Deploy section)")
            continue
        for source, target, read_only in sorted(mounts, key=lambda m: -len(m[1])):
            target = target.rstrip("/")
            if value == target or value.startswith(target + "/"):
                on_host = host_path(source.rstrip("/") + value[len(target):])
                if on_host != expected:
                    problem(where, f"--{name}={value} is {on_host} on the host, not {expected}")
                if not read_only:
                    problem(where, f"--{name}={value}: its mount of {source} is not read-only")
                break
        else:
            problem(where, f"--{name}={value}: no host path is mounted there")


def problem(where, message):
    problems.append(f"{where}: {message}")


def agent_capabilities(source):
    """The capabilities tcpscope-agent keeps, as Kubernetes and Docker name them (no CAP_)."""
    text = (source / "agent" / "capabilities.cc").read_text()
    names = re.findall(r'\{CAP_([A-Z_]+), "CAP_\1"', text)
    if not names:
        sys.exit("no capabilities found in agent/capabilities.cc")
    return set(names)


# ---------------------------------------------------------------------------------- Kubernetes


def check_metadata(where, obj):
    for field in ("apiVersion", "kind"):
        if not isinstance(obj.get(field), str) or not obj[field]:
            problem(where, f"no {field}")
    metadata = obj.get("metadata") or {}
    name = metadata.get("name")
    if not isinstance(name, str) or len(name) > 253 or not DNS_SUBDOMAIN.match(name):
        problem(where, f"metadata.name {name!r} is not a DNS subdomain")
    if obj.get("kind") in CLUSTER_SCOPED:
        if "namespace" in metadata:
            problem(where, "a cluster-scoped object has a namespace")
    elif metadata.get("namespace") != NAMESPACE:
        problem(where, f"namespace {metadata.get('namespace')!r}, not {NAMESPACE}")
    check_labels(f"{where} metadata.labels", metadata.get("labels"))


def check_labels(where, labels):
    if labels is None:
        return
    if not isinstance(labels, dict):
        problem(where, "not a map")
        return
    for key, value in labels.items():
        if not isinstance(key, str) or not LABEL_KEY.match(key):
            problem(where, f"invalid key {key!r}")
        if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
            problem(where, f"{key}: invalid value {value!r} (labels are strings)")


def selects(selector, labels):
    return bool(selector) and all((labels or {}).get(k) == v for k, v in selector.items())


def flagfile_lines(where, text):
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#") and not re.match(r"^--[a-z_]+(=.*)?$", line):
            problem(where, f"line {number} is no --flag=value: {line!r}")


def container_flags(container, volumes, configmaps):
    """{flag: value} as the container's program sees them: its --flagfile (a mounted ConfigMap's
    key), then its other args, later ones winning; $(VAR) is left as written."""
    mounts = {m.get("mountPath"): volumes.get(m.get("name"), {})
              for m in container.get("volumeMounts") or []}
    flags = {}
    for arg in container.get("args") or []:
        match = re.match(r"^--flagfile=(.*)$", str(arg))
        text = ""
        if match:
            path = pathlib.PurePosixPath(match.group(1))
            volume = mounts.get(str(path.parent), {})
            data = (configmaps.get((volume.get("configMap") or {}).get("name")) or {}).get(
                "data") or {}
            text = data.get(path.name, "")
        for line in text.splitlines() + [str(arg)]:
            flag = re.match(r"^--([a-z_]+)=(.*)$", line.strip())
            if flag:
                flags[flag.group(1)] = flag.group(2)
    return flags


def check_pod_template(where, spec, configmaps):
    selector = (spec.get("selector") or {}).get("matchLabels")
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    check_labels(f"{where} template labels", labels)
    if not selector:
        problem(where, "no spec.selector.matchLabels")
    elif not selects(selector, labels):
        problem(where, f"selector {selector} does not match the template's labels {labels}")
    pod = template.get("spec") or {}
    containers = pod.get("containers") or []
    if not containers:
        problem(where, "no containers")
    volumes = {}
    for volume in pod.get("volumes") or []:
        volumes[volume.get("name")] = volume
        if "configMap" in volume and volume["configMap"].get("name") not in configmaps:
            problem(where, f"volume {volume.get('name')}: no ConfigMap "
                           f"{volume['configMap'].get('name')!r} in the output")
    names = set()
    for container in containers:
        cwhere = f"{where} container {container.get('name')!r}"
        name = container.get("name")
        if not isinstance(name, str) or not DNS_LABEL.match(name) or name in names:
            problem(cwhere, "name missing, invalid or repeated")
        names.add(name)
        if not container.get("image"):
            problem(cwhere, "no image")
        ports = {}
        for port in container.get("ports") or []:
            number = port.get("containerPort")
            if not isinstance(number, int) or not 0 < number < 65536:
                problem(cwhere, f"port {port}: containerPort must be 1-65535")
            pname = port.get("name")
            if pname is not None:
                if not isinstance(pname, str) or len(pname) > 15 or not DNS_LABEL.match(pname):
                    problem(cwhere, f"port name {pname!r} is invalid (15 characters at most)")
                if pname in ports:
                    problem(cwhere, f"port name {pname!r} repeated")
                ports[pname] = number
            if pod.get("hostNetwork") and port.get("hostPort") not in (None, number):
                problem(cwhere, "with hostNetwork, hostPort must equal containerPort")
        for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
            probe = container.get(probe_name)
            if probe is None:
                continue
            handlers = [h for h in ("httpGet", "tcpSocket", "grpc", "exec") if h in probe]
            if len(handlers) != 1:
                problem(cwhere, f"{probe_name} needs exactly one handler, has {handlers}")
                continue
            port = probe[handlers[0]].get("port") if handlers[0] != "exec" else None
            if isinstance(port, str) and port not in ports:
                problem(cwhere, f"{probe_name} names port {port!r}, which is not declared")
            if handlers[0] == "grpc" and not isinstance(port, int):
                problem(cwhere, f"{probe_name}: a grpc probe's port must be a number")
        env = {e.get("name") for e in container.get("env") or []}
        for e in container.get("env") or []:
            if ("value" in e) == ("valueFrom" in e):
                problem(cwhere, f"env {e.get('name')}: needs value or valueFrom")
        mounts = {}
        for mount in container.get("volumeMounts") or []:
            if mount.get("name") not in volumes:
                problem(cwhere, f"volumeMount {mount.get('name')!r}: no such volume")
            if not str(mount.get("mountPath", "")).startswith("/"):
                problem(cwhere, f"volumeMount {mount.get('name')!r}: mountPath not absolute")
            mounts[mount.get("mountPath")] = volumes.get(mount.get("name"), {})
        for arg in (container.get("command") or []) + (container.get("args") or []):
            for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", str(arg)):
                if var not in env:
                    problem(cwhere, f"{arg!r} uses $({var}), which env does not define")
            match = re.match(r"^--flagfile=(.*)$", str(arg))
            if match:
                path = pathlib.PurePosixPath(match.group(1))
                volume = mounts.get(str(path.parent), {})
                configmap = configmaps.get((volume.get("configMap") or {}).get("name"))
                if configmap is None:
                    problem(cwhere, f"{arg}: no ConfigMap is mounted at {path.parent}")
                elif path.name not in (configmap.get("data") or {}):
                    problem(cwhere, f"{arg}: the ConfigMap has no key {path.name}")
                else:
                    flagfile_lines(f"{cwhere} {path.name}", configmap["data"][path.name])
        flags = container_flags(container, volumes, configmaps)
        host_mounts = [(volumes[m.get("name")]["hostPath"]["path"], m.get("mountPath", ""),
                        m.get("readOnly") is True)
                       for m in container.get("volumeMounts") or []
                       if "hostPath" in volumes.get(m.get("name"), {})]
        if set(WORKLOAD_FLAGS) & set(flags) or pod.get("hostPID"):
            check_workload_flags(cwhere, flags, host_mounts,
                                 set(WORKLOAD_FLAGS) if pod.get("hostPID") else set())
        security = container.get("securityContext") or {}
        added = set((security.get("capabilities") or {}).get("add") or [])
        if security.get("privileged"):
            problem(cwhere, "privileged")
        if security.get("allowPrivilegeEscalation") is False and (
                security.get("privileged") or "SYS_ADMIN" in added):
            problem(cwhere, "allowPrivilegeEscalation: false is refused with SYS_ADMIN")
    return pod, containers


def check_kubernetes(objects, source, deploy):
    needed = agent_capabilities(source)
    by_kind = {}
    seen = set()
    for index, obj in enumerate(objects):
        if not isinstance(obj, dict):
            problem(f"document {index}", "not a map")
            continue
        kind = obj.get("kind")
        name = (obj.get("metadata") or {}).get("name")
        check_metadata(f"{kind}/{name}", obj)
        key = (kind, name)
        if key in seen:
            problem(f"{kind}/{name}", "defined twice")
        seen.add(key)
        by_kind.setdefault(kind, []).append(obj)
    for kind in sorted(EXPECTED_KINDS - set(by_kind)):
        problem("output", f"no {kind}")

    configmaps = {o["metadata"]["name"]: o for o in by_kind.get("ConfigMap", [])}
    for name, configmap in configmaps.items():
        where = f"ConfigMap/{name}"
        data = configmap.get("data") or {}
        if not all(isinstance(v, str) for v in data.values()):
            problem(where, "data values must be strings")
        size = len(json.dumps(configmap))
        if size > CONFIGMAP_LIMIT:
            problem(where, f"{size} bytes, over a ConfigMap's 1 MiB")
        labels = configmap["metadata"].get("labels") or {}
        if labels.get("grafana_dashboard") == "1":
            if size > APPLY_ANNOTATION_LIMIT:
                problem(where, f"{size} bytes: client-side kubectl apply cannot store it")
            for key, value in data.items():
                try:
                    dashboard = json.loads(value)
                except ValueError as error:
                    problem(where, f"{key}: not JSON ({error})")
                    continue
                if not key.endswith(".json") or not isinstance(dashboard, dict) or \
                        not dashboard.get("title"):
                    problem(where, f"{key}: a dashboard is a .json key holding an object with title")

    workloads = []
    for kind in ("Deployment", "StatefulSet", "DaemonSet"):
        for obj in by_kind.get(kind, []):
            where = f"{kind}/{obj['metadata']['name']}"
            pod, containers = check_pod_template(where, obj.get("spec") or {}, configmaps)
            workloads.append((where, obj["spec"].get("template", {}), containers))
            if kind != "DaemonSet" and not isinstance(obj["spec"].get("replicas", 1), int):
                problem(where, "replicas must be a number")
            if kind == "DaemonSet":
                # The agent: the node's PID and network namespaces, its own capabilities.
                if pod.get("hostPID") is not True or pod.get("hostNetwork") is not True:
                    problem(where, "the agent needs hostPID and hostNetwork")
                if pod.get("dnsPolicy") != "ClusterFirstWithHostNet":
                    problem(where, "with hostNetwork, dnsPolicy ClusterFirstWithHostNet resolves "
                                   "the Service")
                for container in containers:
                    caps = (container.get("securityContext") or {}).get("capabilities") or {}
                    added = set(caps.get("add") or [])
                    if added != needed:
                        problem(where, f"capabilities.add {sorted(added)}, agent/capabilities.cc "
                                       f"keeps {sorted(needed)}")
                    if "ALL" not in (caps.get("drop") or []):
                        problem(where, "capabilities.drop should be [ALL]")
            if kind != "DaemonSet":
                security = (pod.get("securityContext") or {})
                if security.get("runAsNonRoot") is not True:
                    problem(where, "the service runs as non-root (runAsNonRoot: true)")

    services = by_kind.get("Service", [])
    for service in services:
        where = f"Service/{service['metadata']['name']}"
        selector = (service.get("spec") or {}).get("selector")
        targets = [t for _, t, _ in workloads
                   if selects(selector, (t.get("metadata") or {}).get("labels"))]
        if not targets:
            problem(where, f"selector {selector} matches no pod template")
            continue
        for port in service["spec"].get("ports") or []:
            if not port.get("name") or not isinstance(port.get("port"), int):
                problem(where, f"port {port}: needs a name and a number")
            target = port.get("targetPort", port.get("port"))
            if isinstance(target, str) and target not in pod_ports_of(targets[0]):
                problem(where, f"targetPort {target!r} is no container port of the pods")

    for monitor in by_kind.get("ServiceMonitor", []):
        where = f"ServiceMonitor/{monitor['metadata']['name']}"
        spec = monitor.get("spec") or {}
        matched = [s for s in services
                   if selects((spec.get("selector") or {}).get("matchLabels"),
                              s["metadata"].get("labels"))]
        if not matched:
            problem(where, "selects no Service")
            continue
        port_names = {p.get("name") for p in matched[0]["spec"].get("ports") or []}
        for endpoint in spec.get("endpoints") or [None]:
            if not endpoint or endpoint.get("port") not in port_names:
                problem(where, f"endpoint {endpoint}: names no port of the Service")
        if spec.get("jobLabel") and spec["jobLabel"] not in matched[0]["metadata"].get("labels", {}):
            problem(where, f"jobLabel {spec['jobLabel']} is no label of the Service")

    for monitor in by_kind.get("PodMonitor", []):
        where = f"PodMonitor/{monitor['metadata']['name']}"
        spec = monitor.get("spec") or {}
        matched = [t for _, t, _ in workloads
                   if selects((spec.get("selector") or {}).get("matchLabels"),
                              (t.get("metadata") or {}).get("labels"))]
        if not matched:
            problem(where, "selects no pod template")
            continue
        for endpoint in spec.get("podMetricsEndpoints") or [None]:
            if not endpoint or endpoint.get("port") not in pod_ports_of(matched[0]):
                problem(where, f"endpoint {endpoint}: names no container port of the pods")

    for rule in by_kind.get("PrometheusRule", []):
        where = f"PrometheusRule/{rule['metadata']['name']}"
        groups = (rule.get("spec") or {}).get("groups")
        if not isinstance(groups, list):
            problem(where, "spec.groups must be a list")
            continue
        for group in groups:
            if not group.get("name") or not isinstance(group.get("rules"), list):
                problem(where, f"group {group.get('name')!r}: needs a name and rules")
                continue
            for r in group["rules"]:
                if ("alert" in r) == ("record" in r) or not str(r.get("expr", "")).strip():
                    problem(where, f"rule {r}: needs alert or record, and expr")
        alerts = deploy / "prometheus" / "alerts.yml"
        if alerts.exists() and yaml.safe_load(alerts.read_text()) != rule.get("spec"):
            problem(where, "differs from deploy/prometheus/alerts.yml: run "
                           "deploy/kubernetes/generate-prometheusrule")

    check_replica_tier(by_kind, configmaps)

    namespaces = by_kind.get("Namespace", [])
    if namespaces and by_kind.get("DaemonSet"):
        labels = namespaces[0]["metadata"].get("labels") or {}
        if labels.get("pod-security.kubernetes.io/enforce") != "privileged":
            problem(f"Namespace/{namespaces[0]['metadata']['name']}",
                    "the agent's pods need pod-security.kubernetes.io/enforce: privileged")

    # Every dashboard file is shipped, and nothing else.
    files = {p.name for p in (deploy / "grafana" / "dashboards").glob("*.json")}
    shipped = {key for cm in configmaps.values()
               if (cm["metadata"].get("labels") or {}).get("grafana_dashboard") == "1"
               for key in (cm.get("data") or {})}
    if files != shipped:
        problem("dashboards", f"deploy/grafana/dashboards has {sorted(files)}, the ConfigMaps "
                              f"ship {sorted(shipped)}: list each in deploy/grafana/kustomization.yaml")


def replica_list(value):
    """A --peers or --service value: ("dns", "NAME:PORT") or ("list", [HOST:PORT, ...])."""
    if value.startswith("dns:///"):
        return "dns", value[len("dns:///"):]
    return "list", value.split(",")


def split_address(address):
    host, _, port = address.rpartition(":")
    return host, int(port) if port.isdigit() else None


def pod_ports_of(template):
    return {p.get("name"): p.get("containerPort")
            for c in (template.get("spec") or {}).get("containers") or []
            for p in c.get("ports") or []}


def drops_workload_labels(relabelings):
    """Whether `relabelings` (a monitor endpoint's) drop every WORKLOAD_LABELS target label."""
    return all(any(r.get("action", "").lower() == "labeldrop" and
                   re.fullmatch(r.get("regex", ""), label) for r in relabelings or [])
               for label in WORKLOAD_LABELS)


def check_replica_tier(by_kind, configmaps):
    """The service's replicas: a StatefulSet whose serviceName is a headless Service publishing
    not-ready pods; --peers naming every replica (each pod's DNS name under that Service, or
    dns:/// of the Service) on the gRPC port and --advertise naming each pod's own entry; the
    agents' --service naming the same replicas; a PodDisruptionBudget over the pods; and every
    pod's metrics port scraped exactly once."""
    where = f"StatefulSet/{SERVICE}"
    found = [s for s in by_kind.get("StatefulSet", []) if s["metadata"]["name"] == SERVICE]
    if not found:
        problem(where, "missing: the service's replicas")
        return
    statefulset = found[0]
    spec = statefulset.get("spec") or {}
    namespace = statefulset["metadata"].get("namespace")
    replicas = spec.get("replicas", 1)
    template = spec.get("template") or {}
    pod_labels = (template.get("metadata") or {}).get("labels") or {}
    pod = template.get("spec") or {}
    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    ports = pod_ports_of(template)
    grpc_port, metrics_port = ports.get("grpc"), ports.get("metrics")
    if not isinstance(replicas, int) or replicas < 1:
        problem(where, f"replicas {replicas!r}")
        return
    if grpc_port is None or metrics_port is None:
        problem(where, "the service's container needs ports named grpc and metrics")
        return
    services = by_kind.get("Service", [])

    # The headless Service that names the pods.
    headless_name = spec.get("serviceName")
    headless = next((s for s in services if s["metadata"]["name"] == headless_name), None)
    if headless is None:
        problem(where, f"serviceName {headless_name!r}: no such Service")
        return
    hwhere = f"Service/{headless_name}"
    hspec = headless.get("spec") or {}
    if hspec.get("clusterIP") != "None":
        problem(hwhere, "the StatefulSet's serviceName must be headless (clusterIP: None)")
    if hspec.get("publishNotReadyAddresses") is not True:
        problem(hwhere, "publishNotReadyAddresses: true, so that starting replicas find each other")
    if not selects(hspec.get("selector"), pod_labels):
        problem(hwhere, "does not select the StatefulSet's pods")
    # The Service for the CLI: load-balanced over the replicas, any of which answers.
    if not any(s is not headless and (s.get("spec") or {}).get("clusterIP") != "None" and
               selects((s.get("spec") or {}).get("selector"), pod_labels)
               for s in services):
        problem(where, "no ClusterIP Service selects the replicas (the CLI's address)")

    # --peers and --advertise, in every replica; the agents' --service.
    container = next(c for c in pod.get("containers") or []
                     if any(p.get("name") == "grpc" for p in c.get("ports") or []))
    cwhere = f"{where} container {container.get('name')!r}"
    flags = container_flags(container, volumes, configmaps)
    env = {e.get("name"): ((e.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
           for e in container.get("env") or []}
    for name, port in (("grpc_listen", grpc_port), ("metrics_listen", metrics_port)):
        if split_address(flags.get(name, ":"))[1] != port:
            problem(cwhere, f"--{name}={flags.get(name)} is not on the declared port {port}")
    pods = [f"{SERVICE}-{i}" for i in range(replicas)]
    suffixes = [f".{headless_name}{d}" for d in
                ("", f".{namespace}", f".{namespace}.svc", f".{namespace}.svc.cluster.local")]
    peers, advertise = flags.get("peers"), flags.get("advertise")
    if peers is None:
        if replicas > 1:
            problem(cwhere, f"{replicas} replicas and no --peers: each would be alone")
        return
    kind, value = replica_list(peers)
    if kind == "list":
        named = []
        for address in value:
            host, port = split_address(address)
            name, dot, domain = host.partition(".")
            if port != grpc_port or dot + domain not in suffixes:
                problem(cwhere, f"--peers: {address} is not POD{suffixes[0]}:{grpc_port} (a "
                        f"pod's name under the headless Service, or with .{namespace}[.svc])")
            named.append(name)
        if sorted(named) != pods:
            problem(cwhere, f"--peers names {sorted(named)}, the StatefulSet's {replicas} "
                    f"replicas are {pods}")
        match = re.fullmatch(r"\$\(([A-Za-z_]\w*)\)(\..*)", advertise or "")
        if not match or env.get(match.group(1)) != "metadata.name":
            problem(cwhere, f"--advertise={advertise}: not $(VAR).{headless_name}...:PORT with "
                    f"VAR the pod's name (fieldRef metadata.name)")
        else:
            for name in pods:
                if name + match.group(2) not in value:
                    problem(cwhere, f"--advertise={advertise} is {name + match.group(2)} in pod "
                            f"{name}, which is not one of --peers")
    else:
        host, port = split_address(value)
        name, dot, domain = host.partition(".")
        if name != headless_name or port != grpc_port or \
                (domain and "." + domain not in [s[len(headless_name) + 1:] for s in suffixes]):
            problem(cwhere, f"--peers={peers}: not dns:///{headless_name}[.{namespace}.svc..]:"
                    f"{grpc_port} (the headless Service)")
        # The DNS form resolves to pod IPs: a replica must advertise its own.
        match = re.fullmatch(r"\$\(([A-Za-z_]\w*)\):(\d+)", advertise or "")
        if not match or env.get(match.group(1)) != "status.podIP" or \
                int(match.group(2)) != grpc_port:
            problem(cwhere, f"--advertise={advertise}: with --peers=dns:///, $(POD_IP):{grpc_port} "
                    "(fieldRef status.podIP)")
    for daemonset in by_kind.get("DaemonSet", []):
        dwhere = f"DaemonSet/{daemonset['metadata']['name']}"
        dpod = (daemonset.get("spec") or {}).get("template", {}).get("spec") or {}
        dvolumes = {v.get("name"): v for v in dpod.get("volumes") or []}
        for agent in dpod.get("containers") or []:
            service = container_flags(agent, dvolumes, configmaps).get("service")
            if service is None or replica_list(service)[0] != kind or \
                    (sorted(replica_list(service)[1]) if kind == "list" else service) != \
                    (sorted(value) if kind == "list" else peers):
                problem(dwhere, f"--service={service} does not name the replicas of --peers "
                        f"({peers}): an agent homes only on the replicas it is given")

    # Voluntary disruptions take one replica at a time.
    budgets = [b for b in by_kind.get("PodDisruptionBudget", [])
               if selects(((b.get("spec") or {}).get("selector") or {}).get("matchLabels"),
                          pod_labels)]
    if len(budgets) != 1:
        problem(where, f"{len(budgets)} PodDisruptionBudgets select the replicas, expected 1")
    for budget in budgets:
        unavailable = (budget.get("spec") or {}).get("maxUnavailable")
        if not isinstance(unavailable, int) or not 1 <= unavailable < max(replicas, 2):
            problem(f"PodDisruptionBudget/{budget['metadata']['name']}",
                    f"maxUnavailable {unavailable!r}: a number from 1 to replicas - 1")

    # Each replica exports only its hosts' series: every pod scraped, each exactly once.
    scrapes = []
    for monitor in by_kind.get("PodMonitor", []):
        mspec = monitor.get("spec") or {}
        if selects((mspec.get("selector") or {}).get("matchLabels"), pod_labels):
            scrapes += [(f"PodMonitor/{monitor['metadata']['name']}", e)
                        for e in mspec.get("podMetricsEndpoints") or []
                        if e.get("port") == "metrics"]
    for monitor in by_kind.get("ServiceMonitor", []):
        mspec = monitor.get("spec") or {}
        for service in services:
            if not selects((mspec.get("selector") or {}).get("matchLabels"),
                           service["metadata"].get("labels")) or \
                    not selects((service.get("spec") or {}).get("selector"), pod_labels):
                continue
            metrics = {p.get("name") for p in service["spec"].get("ports") or []
                       if p.get("targetPort") in ("metrics", metrics_port)}
            scrapes += [(f"ServiceMonitor/{monitor['metadata']['name']} via "
                         f"Service/{service['metadata']['name']}", e)
                        for e in mspec.get("endpoints") or [] if e.get("port") in metrics]
    if len(scrapes) != 1:
        problem(where, f"each replica's metrics port is scraped {len(scrapes)} times "
                f"({', '.join(w for w, _ in scrapes) or 'by no monitor'}), expected once")
    for mwhere, endpoint in scrapes:
        if not drops_workload_labels(endpoint.get("relabelings")):
            problem(mwhere, f"no labeldrop of the target labels {', '.join(WORKLOAD_LABELS)}: "
                    "the workload series' own would become exported_*")


# ------------------------------------------------------------------------------------- Compose


def compose_mounts(service, read_only=False):
    """(source, target) of each bind mount, from short ('a:b:ro') or long syntax; with
    `read_only`, (source, target, whether it is read-only)."""
    mounts = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            parts = volume.split(":")
            if len(parts) >= 2 and parts[0].startswith("/"):
                ro = len(parts) > 2 and "ro" in parts[2].split(",")
                mounts.append((parts[0], parts[1], ro) if read_only else (parts[0], parts[1]))
        elif volume.get("type") == "bind":
            mount = (volume.get("source"), volume.get("target"))
            mounts.append(mount + (volume.get("read_only") is True,) if read_only else mount)
    return mounts


def flag(service, name):
    for arg in service.get("command") or []:
        if str(arg).startswith(f"--{name}="):
            return str(arg).split("=", 1)[1]
    return None


def container_path(mounts, path):
    """The host path behind a path inside the container, or None."""
    for source, target in sorted(mounts, key=lambda m: -len(m[1])):
        if path == target or path.startswith(target.rstrip("/") + "/"):
            return pathlib.Path(source + path[len(target):])
    return None


def expand(value, environment):
    return re.sub(r"\$(?:__env)?\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)",
                  lambda m: str(environment.get(m.group(1) or m.group(2), m.group(0))), value)


def resolve(service, address):
    """HOST:PORT as the container of `service` (on the host's network) reaches it: IP:PORT through
    its extra_hosts, or None for a name it cannot resolve."""
    host, _, port = address.rpartition(":")
    names = {"localhost": "127.0.0.1"}
    for entry in service.get("extra_hosts") or []:
        name, _, ip = entry.partition(":")
        names[name] = ip
    ip = names.get(host, host if re.fullmatch(r"[0-9.]+", host) else None)
    return f"{ip}:{port}" if ip else None


def reaches(address, listen):
    """Whether IP:PORT reaches a program that listens on `listen` (IP:PORT, 0.0.0.0 for all)."""
    if address is None or listen is None:
        return False
    host, _, port = listen.rpartition(":")
    return address == listen or (host == "0.0.0.0" and address.rpartition(":")[2] == port)


def check_compose_replicas(services, replicas):
    """The replicas of the service: each lists all of them in --peers (the same list), advertises
    its own entry, which reaches its --grpc_listen from every replica; none shares an address
    with another (all are on the host's network); the agent's --service names the same list."""
    if len(replicas) < 2:
        problem("compose", f"{len(replicas)} tcpscope-service replica(s) {replicas}: the stack "
                "runs two, as a tier (README, \"Replicas\")")
    peers = {name: sorted((flag(services[name], "peers") or "").split(",")) for name in replicas}
    expected = peers[replicas[0]]
    listens = {}
    for name in replicas:
        where = f"compose {name}"
        service = services[name]
        for listen_flag in ("grpc_listen", "metrics_listen"):
            listen = flag(service, listen_flag)
            if listen in listens:
                problem(where, f"--{listen_flag}={listen} is also {listens[listen]}'s")
            listens[listen] = name
        if peers[name] != expected:
            problem(where, f"--peers {peers[name]} differs from {replicas[0]}'s {expected}")
        advertise = flag(service, "advertise")
        if advertise not in expected:
            problem(where, f"--advertise={advertise} is not one of --peers {expected}")
        for other in replicas:
            if not reaches(resolve(services[other], advertise or ""), flag(service, "grpc_listen")):
                problem(where, f"--advertise={advertise}, from {other}, is "
                        f"{resolve(services[other], advertise or '')}: not this replica's "
                        f"--grpc_listen={flag(service, 'grpc_listen')} (extra_hosts)")
    advertised = sorted(flag(services[name], "advertise") or "" for name in replicas)
    if advertised != expected:
        problem("compose", f"the replicas advertise {advertised}, --peers lists {expected}: "
                "one entry per replica")
    agent = services["tcpscope-agent"]
    homes = sorted((flag(agent, "service") or "").split(","))
    if homes != expected:
        problem("compose agent", f"--service {homes} is not the replicas' --peers {expected}")
    for address in homes:
        if resolve(agent, address) is None:
            problem("compose agent", f"--service: {address} does not resolve (extra_hosts)")


def check_compose(config, source, deploy):
    services = config.get("services") or {}
    for name in ("tcpscope-agent", "prometheus", "grafana"):
        if name not in services:
            problem("compose", f"no service {name}")
    replicas = sorted(name for name, service in services.items()
                      if str(service.get("image", "")).startswith("tcpscope-service:"))
    if not replicas:
        problem("compose", "no service runs the tcpscope-service image")
    if problems:
        return
    dockerfile_stages = {}
    for name, service in services.items():
        where = f"compose {name}"
        if not service.get("image"):
            problem(where, "no image")
        if service.get("privileged"):
            problem(where, "privileged (refused on these machines, and not needed)")
        if service.get("network_mode") != "host":
            problem(where, "every container is on the host's network (compose.yaml's header)")
        for host_path, _ in compose_mounts(service):
            if not pathlib.Path(host_path).exists() and not host_path.startswith("/run/"):
                problem(where, f"bind mount source {host_path} does not exist")
        build = service.get("build")
        if build:
            dockerfile = pathlib.Path(build["context"]) / build.get("dockerfile", "Dockerfile")
            if not dockerfile.exists():
                problem(where, f"{dockerfile} does not exist")
                continue
            stages = dockerfile_stages.setdefault(dockerfile, set(re.findall(
                r"^FROM\s+\S+\s+AS\s+(\S+)", dockerfile.read_text(), re.M | re.I)))
            if build.get("target") not in stages:
                problem(where, f"build target {build.get('target')!r} is no stage of {dockerfile}")

    agent = services["tcpscope-agent"]
    kept = agent_capabilities(source)
    needed = kept - COVERED_BY_SYS_ADMIN
    added = set(agent.get("cap_add") or [])
    if not needed <= added or "SYS_ADMIN" not in added:
        problem("compose agent", f"cap_add {sorted(added)} lacks {sorted(needed - added)}")
    if added - kept:
        problem("compose agent", f"cap_add {sorted(added - kept)} is more than the agent keeps")
    if "ALL" not in (agent.get("cap_drop") or []):
        problem("compose agent", "cap_drop should be [ALL]")
    if agent.get("pid") != "host":
        problem("compose agent", "needs pid: host")
    # A Docker host: its cgroup tree, Docker's and containerd's sockets (no CRI-O).
    agent_flags = {name: flag(agent, name) for name in WORKLOAD_FLAGS if flag(agent, name)}
    check_workload_flags("compose agent", agent_flags, compose_mounts(agent, read_only=True),
                         {"cgroup_root", "docker_socket", "containerd_socket"})

    check_compose_replicas(services, replicas)

    # Prometheus (deploy/prometheus/prometheus.yml) scrapes what every replica and the agent listen
    # on, under the job names the Kubernetes monitors give, and loads deploy/prometheus/alerts.yml.
    prometheus = services["prometheus"]
    mounts = compose_mounts(prometheus)
    config_flag = next((a.split("=", 1)[1] for a in prometheus.get("command") or []
                        if str(a).startswith("--config.file=")), "/etc/prometheus/prometheus.yml")
    config_path = container_path(mounts, config_flag)
    if not config_path or not config_path.exists():
        problem("compose prometheus", f"{config_flag} is not mounted from an existing file")
        return
    if config_path.resolve() != (deploy / "prometheus" / "prometheus.yml").resolve():
        problem("compose prometheus", f"{config_flag} is not deploy/prometheus/prometheus.yml")
    prometheus_config = yaml.safe_load(config_path.read_text()) or {}
    jobs = {}
    for job in prometheus_config.get("scrape_configs") or []:
        for static in job.get("static_configs") or []:
            for target in static.get("targets") or []:
                jobs.setdefault(job.get("job_name"), []).append(resolve(prometheus, target))
    scraped = [("tcpscope-service", name, True) for name in replicas] + \
        [("tcpscope-agent", "tcpscope-agent", False)]
    for job, name, required in scraped:
        listen = flag(services[name], "metrics_listen")
        if job not in jobs and not required:
            continue
        hits = sum(reaches(target, listen) for target in jobs.get(job, []))
        if hits != 1:
            problem("compose prometheus", f"job {job} scrapes {name}'s --metrics_listen {listen} "
                    f"{hits} times, expected once (targets by job as Prometheus resolves them: "
                    f"{jobs}; extra_hosts {prometheus.get('extra_hosts')})")
    for rule_file in prometheus_config.get("rule_files") or []:
        inside = str(pathlib.PurePosixPath(config_flag).parent / rule_file)
        host_path = container_path(mounts, inside)
        if not host_path or host_path.resolve() != (deploy / "prometheus" / "alerts.yml").resolve():
            problem("compose prometheus", f"rule file {rule_file} is not deploy/prometheus/alerts.yml")
    listen = next((a.split("=", 1)[1] for a in prometheus.get("command") or []
                   if str(a).startswith("--web.listen-address=")), "0.0.0.0:9090")

    # Grafana's provisioning: the dashboards' folder is mounted, the data source reaches Prometheus.
    grafana = services["grafana"]
    mounts = compose_mounts(grafana)
    environment = grafana.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    provisioning = container_path(mounts, "/etc/grafana/provisioning")
    if not provisioning or provisioning.resolve() != (deploy / "grafana" / "provisioning").resolve():
        problem("compose grafana", "/etc/grafana/provisioning is not deploy/grafana/provisioning")
        return
    for path in sorted(provisioning.glob("datasources/*.y*ml")):
        for source_ in (yaml.safe_load(path.read_text()) or {}).get("datasources") or []:
            if source_.get("type") != "prometheus":
                continue
            url = urllib.parse.urlsplit(expand(str(source_.get("url", "")), environment))
            if not reaches(resolve(grafana, f"{url.hostname}:{url.port or 80}"), listen):
                problem(f"compose grafana {path.name}", f"data source URL {source_.get('url')} "
                        f"does not reach Prometheus ({listen}) from the Grafana container")
    providers = 0
    for path in sorted(provisioning.glob("dashboards/*.y*ml")):
        for provider in (yaml.safe_load(path.read_text()) or {}).get("providers") or []:
            folder = expand(str((provider.get("options") or {}).get("path", "")), environment)
            host_folder = container_path(mounts, folder)
            if not host_folder or host_folder.resolve() != (deploy / "grafana" / "dashboards").resolve():
                problem(f"compose grafana {path.name}", f"provider path {folder} is not where "
                        "compose.yaml mounts deploy/grafana/dashboards")
            providers += 1
    if not providers:
        problem("compose grafana", "deploy/grafana/provisioning/dashboards provides no dashboards")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["kubernetes", "compose"])
    parser.add_argument("file")
    parser.add_argument("--source", required=True, type=pathlib.Path)
    parser.add_argument("--deploy", type=pathlib.Path)
    args = parser.parse_args()
    deploy = args.deploy or args.source / "deploy"
    with open(args.file) as stream:
        documents = [d for d in yaml.safe_load_all(stream) if d is not None]
    if args.what == "kubernetes":
        check_kubernetes(documents, args.source, deploy)
        summary = f"{len(documents)} objects"
    else:
        check_compose(documents[0], args.source, deploy)
        summary = f"{len(documents[0].get('services') or {})} services"
    for line in problems:
        print(f"validate_manifests: {line}", file=sys.stderr)
    if problems:
        return 1
    print(f"validate_manifests: {args.what}: {summary}, no problems")
    return 0


if __name__ == "__main__":
    sys.exit(main())
