"""cache_params of the exact cache types → the tiers after `local`.

redis: host, port, password, username, db, ssl, url → the redis tier;
redis_startup_nodes → startup_nodes (Redis Cluster); max_connections;
socket_timeout → timeout_s. With no host/url/startup_nodes at all, LiteLLM read the
address from its environment: the tier gets `host: ${REDIS_HOST}`,
`port: ${REDIS_PORT}` and a warning (REDIS_PASSWORD / REDIS_URL must be added by hand).
s3: s3_bucket_name → bucket, s3_region_name → region, s3_endpoint_url →
endpoint_url, s3_aws_access_key_id → access_key_id, s3_aws_secret_access_key →
secret_access_key, s3_path → path. gcs: gcs_bucket_name → bucket (else
${GCS_BUCKET_NAME}, LiteLLM's fallback), gcs_path_service_account →
service_account_json, gcs_path → path. azure-blob: azure_account_url →
account_url, azure_blob_container → container. disk: disk_cache_dir → path.
"""

from __future__ import annotations

from typing import Any

from app.config import kind_of
from app.litellm_import.base import ConverterBase
from app.litellm_import.result import LiteLLMImportError
from app.litellm_import.vocabulary import CP, REDIS_PARAMS


class TiersMixin(ConverterBase):
    def redis_tier(self, params: dict[str, Any], used: set[str], *, from_env: bool) -> dict[str, Any]:
        used.update(REDIS_PARAMS)
        tier: dict[str, Any] = {"type": "redis"}
        url = params.get("url") or params.get("redis_url")
        nodes = params.get("redis_startup_nodes")
        if url is not None:
            tier["url"] = str(url)
        elif nodes:
            tier["startup_nodes"] = self.startup_nodes(nodes)
        elif params.get("host") is not None:
            tier["host"] = str(params["host"])
        else:
            tier["host"] = "${REDIS_HOST}"
            tier["port"] = "${REDIS_PORT}"
            origin = "`cache: true` without cache_params" if from_env else f"{CP} without host/url"
            self.warn(
                f"{origin}: LiteLLM read the Redis address from its environment (REDIS_HOST, REDIS_PORT, "
                "REDIS_PASSWORD or REDIS_URL); emitted host: ${REDIS_HOST}, port: ${REDIS_PORT} -- add "
                "password: ${REDIS_PASSWORD}, or use url: ${REDIS_URL}, if that is what was set"
            )
        if url is None and not nodes and params.get("port") is not None:
            port = self.number(params["port"], f"{CP}.port", integer=True)
            if port is not None:
                tier["port"] = port
        if url is not None:
            for key in ("host", "port", "db"):
                if params.get(key) is not None:
                    self.warn(f"{CP}.{key}: ignored because url is set (as in LiteLLM)")
        elif nodes and any(params.get(k) is not None for k in ("host", "port")):
            self.warn(f"{CP}.host/port: ignored because redis_startup_nodes is set (Redis Cluster)")
        if params.get("username") is not None:
            tier["username"] = str(params["username"])
        if params.get("password") is not None:
            tier["password"] = str(params["password"])
        elif url is None and tier.get("host") != "${REDIS_HOST}":
            self.warn(
                f"{CP}.password: not set; LiteLLM would have used REDIS_PASSWORD from its environment "
                "if set -- add password: ${REDIS_PASSWORD} to the redis tier if it was"
            )
        if params.get("db") is not None and url is None:
            db = self.number(params["db"], f"{CP}.db", integer=True, positive=False)
            if db is not None:
                tier["db"] = db
        if params.get("ssl") is not None:
            ssl = self.boolean(params["ssl"], f"{CP}.ssl")
            if ssl is not None:
                tier["ssl"] = ssl
        if params.get("max_connections") is not None:
            value = self.number(params["max_connections"], f"{CP}.max_connections", integer=True)
            if value is not None:
                tier["max_connections"] = value
        if params.get("socket_timeout") is not None:
            value = self.number(params["socket_timeout"], f"{CP}.socket_timeout")
            if value is not None:
                tier["timeout_s"] = value
        return tier

    def startup_nodes(self, nodes: Any) -> list[dict[str, Any]]:
        where = f"{CP}.redis_startup_nodes"
        if isinstance(nodes, str) and nodes.startswith("${"):
            raise LiteLLMImportError(
                f"{where}: a whole node list from the environment cannot be converted; "
                "list the nodes as [{host, port}, ...]"
            )
        if not isinstance(nodes, list):
            raise LiteLLMImportError(f"{where} must be a list of {{host, port}}, not {kind_of(nodes)}")
        result = []
        for i, node in enumerate(nodes):
            if not isinstance(node, dict) or node.get("host") is None:
                raise LiteLLMImportError(f"{where}[{i}] must be a mapping with host (and port)")
            entry: dict[str, Any] = {"host": str(node["host"])}
            if node.get("port") is not None:
                port = self.number(node["port"], f"{where}[{i}].port", integer=True)
                if port is not None:
                    entry["port"] = port
            for key in node:
                if key not in ("host", "port"):
                    self.warn(f"{where}[{i}].{key}: not mapped")
            result.append(entry)
        return result

    def s3_tier(self, params: dict[str, Any], used: set[str]) -> dict[str, Any]:
        return self.object_tier(
            "s3",
            params,
            used,
            {
                "s3_bucket_name": "bucket",
                "s3_region_name": "region",
                "s3_endpoint_url": "endpoint_url",
                "s3_aws_access_key_id": "access_key_id",
                "s3_aws_secret_access_key": "secret_access_key",
                "s3_path": "path",
            },
            required={"s3_bucket_name"},
        )

    def gcs_tier(self, params: dict[str, Any], used: set[str]) -> dict[str, Any]:
        if params.get("gcs_bucket_name") is None:
            params = {**params, "gcs_bucket_name": "${GCS_BUCKET_NAME}"}
            self.warn(
                f"{CP}.gcs_bucket_name: not set, LiteLLM read GCS_BUCKET_NAME from its environment; "
                "emitted bucket: ${GCS_BUCKET_NAME}"
            )
        return self.object_tier(
            "gcs",
            params,
            used,
            {"gcs_bucket_name": "bucket", "gcs_path_service_account": "service_account_json", "gcs_path": "path"},
            required=set(),
        )

    def azure_blob_tier(self, params: dict[str, Any], used: set[str]) -> dict[str, Any]:
        return self.object_tier(
            "azure_blob",
            params,
            used,
            {"azure_account_url": "account_url", "azure_blob_container": "container"},
            required={"azure_account_url", "azure_blob_container"},
        )

    def disk_tier(self, params: dict[str, Any], used: set[str]) -> dict[str, Any]:
        used.add("disk_cache_dir")
        tier: dict[str, Any] = {"type": "disk"}
        if params.get("disk_cache_dir") is not None:
            tier["path"] = str(params["disk_cache_dir"])
        return tier

    def object_tier(
        self, kind: str, params: dict[str, Any], used: set[str], names: dict[str, str], *, required: set[str]
    ) -> dict[str, Any]:
        """A tier whose settings are strings, `names` mapping LiteLLM's keys to ours."""
        used.update(names)
        tier: dict[str, Any] = {"type": kind}
        for theirs, ours in names.items():
            value = params.get(theirs)
            if value is None:
                if theirs in required:
                    raise LiteLLMImportError(
                        f"{CP}.{theirs} is required for type {params.get('type')!r} "
                        "(LiteLLM cannot start without it either)"
                    )
                continue
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise LiteLLMImportError(f"{CP}.{theirs} must be a string, not {kind_of(value)}")
            value = str(value)
            if ours == "path":
                value = value.strip("/")
                if not value:
                    continue
            tier[ours] = value
        return tier
