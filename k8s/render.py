#!/usr/bin/env python3
"""Render a kustomization directory to a multi-document YAML stream, offline.

    python3 k8s/render.py k8s/overlays/prod > prod.yaml

A small stand-in for `kustomize build` (PyYAML only) covering the subset the
manifests in k8s/ use, so they can be checked on a machine with no kubectl:

  resources          files (multi-document) and directories with their own
                     kustomization.yaml, rendered first with their own settings
  namespace          set on every namespaced object
  labels             pairs (+ includeSelectors / includeTemplates); commonLabels
  commonAnnotations
  images             name -> newName / newTag / digest on pod-spec containers
  configMapGenerator / secretGenerator   files (key=path or path) and literals,
                     options.labels / annotations, behavior create|merge|replace
  generatorOptions   disableNameSuffixHash must be true (names are not hashed,
                     so no reference rewriting is needed)
  patches            strategic-merge patches by path or inline, matched by
                     kind + name (+ namespace if given), merging lists by the
                     Kubernetes merge keys of the fields used here; a
                     `$patch: delete` document removes the object

Anything else in a kustomization is an error rather than silently ignored,
and like kustomize's default load restrictor, files (not kustomization
directories) must lie inside the kustomization's directory.
"""

from __future__ import annotations

import base64
import copy
import os
import sys

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")

SUPPORTED = {
    "apiVersion", "kind", "resources", "namespace", "labels", "commonLabels",
    "commonAnnotations", "images", "configMapGenerator", "secretGenerator",
    "generatorOptions", "patches",
}

CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "PersistentVolume", "StorageClass", "PriorityClass", "IngressClass",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
    "APIService", "RuntimeClass", "CSIDriver", "VolumeSnapshotClass",
}

# kustomize's legacy output order (kinds not listed come after, then webhooks).
ORDER_FIRST = [
    "Namespace", "ResourceQuota", "StorageClass", "CustomResourceDefinition",
    "ServiceAccount", "PodSecurityPolicy", "Role", "ClusterRole", "RoleBinding",
    "ClusterRoleBinding", "ConfigMap", "Secret", "Endpoints", "Service",
    "LimitRange", "PriorityClass", "PersistentVolume", "PersistentVolumeClaim",
    "Deployment", "StatefulSet", "CronJob", "PodDisruptionBudget",
]
ORDER_LAST = ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]

# Strategic-merge keys of the list fields these manifests patch; any other
# list in a patch replaces the original, as for atomic lists.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "volumeClaimTemplates": None,  # replaced
}


class RenderError(Exception):
    pass


def load_kustomization(directory: str) -> dict:
    for name in KUSTOMIZATION_FILES:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f) or {}
            unknown = set(data) - SUPPORTED
            if unknown:
                raise RenderError(f"{path}: unsupported fields {sorted(unknown)}")
            return data
    raise RenderError(f"{directory}: no kustomization.yaml")


def inside(root: str, relative: str) -> str:
    """The path of `relative` under `root`, refusing to leave the root."""
    path = os.path.realpath(os.path.join(root, relative))
    base = os.path.realpath(root)
    if os.path.commonpath([path, base]) != base:
        raise RenderError(f"{root}: {relative} is outside the kustomization root")
    return path


def load_documents(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d or "metadata" not in d:
            raise RenderError(f"{path}: a document without kind/metadata")
    return docs


def ident(obj: dict) -> tuple:
    meta = obj.get("metadata") or {}
    return (obj.get("kind"), meta.get("namespace"), meta.get("name"))


def pod_spec(obj: dict) -> dict | None:
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        return (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec")
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController"}:
        return (spec.get("template") or {}).get("spec")
    return None


def pod_template_meta(obj: dict) -> dict | None:
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind == "CronJob":
        tmpl = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template")
    elif kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController"}:
        tmpl = spec.get("template")
    else:
        return None
    if tmpl is None:
        return None
    return tmpl.setdefault("metadata", {})


# ---------------------------------------------------------------- generators

def split_key(entry: str) -> tuple[str, str]:
    if "=" in entry:
        key, value = entry.split("=", 1)
        return key, value
    return os.path.basename(entry), entry


def generate(directory: str, spec: dict, kind: str, options: dict) -> dict:
    name = spec["name"]
    data: dict[str, str] = {}
    for entry in spec.get("files") or []:
        key, rel = split_key(entry)
        with open(inside(directory, rel), encoding="utf-8") as f:
            data[key] = f.read()
    for entry in spec.get("literals") or []:
        key, value = entry.split("=", 1)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        data[key] = value
    for field in spec:
        if field not in {"name", "namespace", "files", "literals", "options", "type", "behavior"}:
            raise RenderError(f"{directory}: {kind} generator {name}: unsupported field {field}")
    meta: dict = {"name": name}
    if spec.get("namespace"):
        meta["namespace"] = spec["namespace"]
    labels = {**(options.get("labels") or {}), **((spec.get("options") or {}).get("labels") or {})}
    annotations = {**(options.get("annotations") or {}), **((spec.get("options") or {}).get("annotations") or {})}
    if labels:
        meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    obj: dict = {"apiVersion": "v1", "kind": kind, "metadata": meta}
    if kind == "Secret":
        obj["type"] = spec.get("type", "Opaque")
        obj["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    else:
        obj["data"] = data
    return obj


# ------------------------------------------------------------------- patches

def merge(base, patch, field: str | None = None):
    """Strategic-merge-ish: maps merge, keyed lists merge, null deletes."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            if key.startswith("$"):
                continue
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = merge(out[key], value, key)
            else:
                out[key] = copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(patch, list):
        key = MERGE_KEYS.get(field or "")
        if field == "ports" and all(isinstance(i, dict) for i in base + patch):
            key = "containerPort" if any("containerPort" in i for i in base + patch) else "port"
        if key and all(isinstance(i, dict) and key in i for i in base + patch):
            out = [copy.deepcopy(i) for i in base]
            for item in patch:
                for n, existing in enumerate(out):
                    if existing[key] == item[key]:
                        if item.get("$patch") == "delete":
                            del out[n]
                        else:
                            out[n] = merge(existing, item, None)
                        break
                else:
                    if item.get("$patch") != "delete":
                        out.append(copy.deepcopy(item))
            return out
    return copy.deepcopy(patch)


def apply_patches(directory: str, patches: list, objects: list[dict]) -> list[dict]:
    for entry in patches:
        if set(entry) - {"path", "patch", "target", "options"}:
            raise RenderError(f"{directory}: unsupported patch fields {sorted(entry)}")
        if "target" in entry:
            raise RenderError(f"{directory}: patches with target (JSON6902) are not supported")
        if "path" in entry:
            with open(inside(directory, entry["path"]), encoding="utf-8") as f:
                docs = [d for d in yaml.safe_load_all(f) if d is not None]
            where = entry["path"]
        else:
            docs = [d for d in yaml.safe_load_all(entry["patch"]) if d is not None]
            where = "inline patch"
        for doc in docs:
            if not isinstance(doc, dict) or "kind" not in doc or not (doc.get("metadata") or {}).get("name"):
                raise RenderError(f"{directory}: {where}: a strategic-merge patch needs kind and metadata.name")
            kind, ns, name = ident(doc)
            matches = [
                i for i, obj in enumerate(objects)
                if ident(obj)[0] == kind and ident(obj)[2] == name and (ns is None or ident(obj)[1] == ns)
            ]
            if len(matches) != 1:
                raise RenderError(f"{directory}: {where}: {kind}/{name} matches {len(matches)} objects")
            i = matches[0]
            if doc.get("$patch") == "delete":
                del objects[i]
                continue
            if doc.get("apiVersion") and doc["apiVersion"] != objects[i].get("apiVersion"):
                raise RenderError(f"{directory}: {where}: apiVersion {doc['apiVersion']} != {objects[i].get('apiVersion')}")
            objects[i] = merge(objects[i], doc)
    return objects


# -------------------------------------------------------------- transformers

def set_labels(objects: list[dict], pairs: dict, selectors: bool, templates: bool) -> None:
    for obj in objects:
        obj.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
        if templates or selectors:
            meta = pod_template_meta(obj)
            if meta is not None:
                meta.setdefault("labels", {}).update(pairs)
            if obj.get("kind") == "StatefulSet":
                for claim in (obj.get("spec") or {}).get("volumeClaimTemplates") or []:
                    claim.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
        if selectors:
            spec = obj.get("spec") or {}
            if obj.get("kind") in {"Service", "ReplicationController"}:
                spec.setdefault("selector", {}).update(pairs)
            elif isinstance(spec.get("selector"), dict):
                spec["selector"].setdefault("matchLabels", {}).update(pairs)


def set_images(objects: list[dict], images: list[dict]) -> None:
    for obj in objects:
        spec = pod_spec(obj)
        if not spec:
            continue
        for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            image = container.get("image", "")
            name, _, digest = image.partition("@")
            last = name.rsplit("/", 1)[-1]
            tag = None
            if ":" in last:
                name, tag = name.rsplit(":", 1)
            for rule in images:
                if rule["name"] != name:
                    continue
                new_name = rule.get("newName", name)
                if rule.get("digest"):
                    container["image"] = f"{new_name}@{rule['digest']}"
                elif rule.get("newTag"):
                    container["image"] = f"{new_name}:{rule['newTag']}"
                elif digest:
                    container["image"] = f"{new_name}@{digest}"
                else:
                    container["image"] = f"{new_name}:{tag}" if tag else new_name


def render(directory: str) -> list[dict]:
    k = load_kustomization(directory)
    objects: list[dict] = []
    for entry in k.get("resources") or []:
        # Another kustomization may sit anywhere (bases); a plain file must be
        # inside this one's root.
        path = os.path.realpath(os.path.join(directory, entry))
        if os.path.isdir(path):
            objects.extend(render(path))
        else:
            objects.extend(load_documents(inside(directory, entry)))

    options = k.get("generatorOptions") or {}
    if (k.get("configMapGenerator") or k.get("secretGenerator")) and not options.get("disableNameSuffixHash"):
        raise RenderError(f"{directory}: set generatorOptions.disableNameSuffixHash: true (hash suffixes are not rendered)")
    for kind, field in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
        for spec in k.get(field) or []:
            generated = generate(directory, spec, kind, options)
            behavior = spec.get("behavior", "create")
            found = [i for i, o in enumerate(objects) if o["kind"] == kind and o["metadata"]["name"] == spec["name"]]
            if behavior == "create":
                if found:
                    raise RenderError(f"{directory}: {kind} {spec['name']} generated twice")
                objects.append(generated)
            elif behavior in {"merge", "replace"} and len(found) == 1:
                i = found[0]
                objects[i] = merge(objects[i], generated) if behavior == "merge" else generated
            else:
                raise RenderError(f"{directory}: {kind} {spec['name']}: behavior {behavior} has no single base")

    # Order as in kustomize: labels/annotations, patches, namespace, images.
    for entry in k.get("labels") or []:
        set_labels(objects, entry.get("pairs") or {}, bool(entry.get("includeSelectors")), bool(entry.get("includeTemplates")))
    if k.get("commonLabels"):
        set_labels(objects, k["commonLabels"], True, True)
    if k.get("commonAnnotations"):
        for obj in objects:
            obj["metadata"].setdefault("annotations", {}).update(k["commonAnnotations"])
    objects = apply_patches(directory, k.get("patches") or [], objects)
    if k.get("namespace"):
        for obj in objects:
            if obj["kind"] == "Namespace":
                continue
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = k["namespace"]
    if k.get("images"):
        set_images(objects, k["images"])

    seen = set()
    for obj in objects:
        if ident(obj) in seen:
            raise RenderError(f"{directory}: duplicate object {ident(obj)}")
        seen.add(ident(obj))
    return objects


def order(obj: dict) -> tuple:
    kind = obj["kind"]
    if kind in ORDER_FIRST:
        rank = ORDER_FIRST.index(kind)
    elif kind in ORDER_LAST:
        rank = 1000 + ORDER_LAST.index(kind)
    else:
        rank = len(ORDER_FIRST)
    meta = obj["metadata"]
    return (rank, kind, meta.get("namespace") or "", meta.get("name") or "")


class Dumper(yaml.SafeDumper):
    pass


def _str(dumper, value):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


Dumper.add_representer(str, _str)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} KUSTOMIZATION_DIR", file=sys.stderr)
        return 2
    try:
        objects = sorted(render(argv[1]), key=order)
    except (RenderError, OSError, yaml.YAMLError, KeyError) as error:
        print(f"render.py: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(yaml.dump_all(objects, Dumper=Dumper, sort_keys=False, default_flow_style=False, width=1000))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
