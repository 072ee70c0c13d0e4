"""Service settings from the environment (pydantic-settings).

Our own settings use the `MS3M_` prefix (`MS3M_HTTP_PORT=8081`). As on an O-RAN SC platform,
`DBAAS_SERVICE_HOST` / `DBAAS_SERVICE_PORT` locate Redis and `CONFIG_FILE` names the xApp
descriptor; the `MS3M_` spellings of those win when both are set. Secrets (the Redis password)
come only from the environment and never appear in `public_dict()`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Runtime = Literal["onnxruntime", "torchscript", "torch"]
BufferKind = Literal["auto", "memory", "redis"]


class Settings(BaseSettings):
    """Every knob of the xApp. Construct with keyword overrides in tests: `Settings(http_port=0)`."""

    model_config = SettingsConfigDict(env_prefix="MS3M_", extra="ignore", populate_by_name=True)

    # Network
    http_host: str = "0.0.0.0"
    http_port: int = Field(8080, ge=0, le=65535)
    grpc_host: str = "0.0.0.0"
    grpc_port: int = Field(50051, ge=0, le=65535)
    grpc_max_message_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    http_max_body_bytes: int = Field(1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_reports_per_message: int = Field(20_000, ge=1)
    # cold-start predict (REST /v1/predict, gRPC Forecasting.Predict with samples): cells per call, calls at once
    predict_max_cells: int = Field(64, ge=1, le=100_000)
    predict_max_concurrent: int = Field(2, ge=1, le=64)

    # Authentication and TLS (service/api/auth.py; README, "Security"). Tokens `role:token`, role read | write,
    # from the environment or a mounted secret file only; none configured: authentication off (the local demo)
    auth_tokens: SecretStr | None = None
    auth_tokens_file: Path | None = None
    auth_reads: bool = False  # reads (GET, Subscribe) need a read token too
    auth_metrics: bool = False  # /metrics needs a read token too
    tls_cert_file: Path | None = None  # PEM server certificate (chain) for gRPC and REST; with tls_key_file
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None  # PEM CA bundle: clients must present a certificate it signed (mTLS)

    # Window buffer: Redis when a host is configured (or buffer="redis"), else embedded memory.
    buffer: BufferKind = "auto"
    redis_host: str | None = Field(
        None, validation_alias=AliasChoices("MS3M_REDIS_HOST", "DBAAS_SERVICE_HOST", "redis_host")
    )
    redis_port: int = Field(
        6379, ge=1, le=65535,
        validation_alias=AliasChoices("MS3M_REDIS_PORT", "DBAAS_SERVICE_PORT", "redis_port"),
    )
    redis_password: SecretStr | None = None
    redis_tls: bool = False  # connect to Redis over TLS (verified against redis_tls_ca_file or the system CAs)
    redis_tls_ca_file: Path | None = None
    redis_db: int = Field(0, ge=0)
    namespace: str = Field("ms3m", pattern=r"^[A-Za-z0-9_.-]{1,64}$")  # SDL namespace: keys are {ns},key
    # samples kept per series; 256 keeps buffer + MS³M state ≤ 32 KiB per cell (README, "Memory per cell")
    window_length: int = Field(256, ge=1, le=1_000_000)

    # Models and the step engine
    bundles: list[Path] = Field(default_factory=list)  # MS3M_BUNDLES='["/bundles/ms3m"]'
    runtime: Runtime = "onnxruntime"
    inference_threads: int = Field(1, ge=1, le=64)  # intra-op threads of the inference thread
    # series served at most; a new one beyond is refused (REJECT_REASON_CAPACITY). None: as many as half of
    # the memory available at start holds (see service.sizing.memory_per_cell), at most 1M
    max_cells: int | None = Field(None, ge=1)
    max_batch: int = Field(8192, ge=1)  # samples merged into one engine flush
    flush_ms: float = Field(0.5, gt=0, le=1000)  # wait at most this long to fill a batch (load batches anyway)
    max_queue_samples: int = Field(500_000, ge=1)  # beyond: RESOURCE_EXHAUSTED / HTTP 503
    ignore_unknown_kpis: bool = False  # True: drop unknown measurement names instead of rejecting reports

    # Ingest bounds: what would corrupt a series or a state is refused with a counted reason
    max_future_ms: int = Field(86_400_000, ge=0)  # timestamps at most this far ahead of the clock (0: any)
    max_sample_age_ms: int = Field(7 * 86_400_000, ge=0)  # ... and at most this far behind (0: any age)
    # sequence jump past a series' last one: 2^40 lets a publisher numbering by the µs clock pause 12 days
    max_sequence_gap: int | None = Field(2**40, ge=1)
    value_range_sigmas: float | None = Field(1000.0, gt=0)  # plausible: bundle mean ± this × std (None: float32)

    # Forecasts, router, actions
    interval_coverage: float = Field(0.9, ge=0.5, lt=1.0)
    decision_period_samples: int = Field(60, ge=1)  # MS³M router: samples between expert-set decisions
    action_mode: Literal["recommend", "enforce"] = "recommend"
    action_log_size: int = Field(10_000, ge=1)

    # Durability
    snapshot_interval_s: float = Field(5.0, gt=0)
    # While a Redis buffer is unreachable, accepted samples are fsynced to a journal file before the ack
    # (journal=False: refused as UNAVAILABLE instead). Default dir: $XDG_STATE_HOME/ms3m or ~/.local/state/ms3m
    journal: bool = True
    journal_dir: Path | None = None
    journal_max_samples: int = Field(2_000_000, ge=0)
    buffer_retry_s: float = Field(0.5, gt=0)
    restore_wait_s: float = Field(30.0, ge=0)  # start() waits this long for the restore, then goes on not ready

    # O-RAN SC xApp descriptor (config-file.json), reloaded when it changes
    config_file: Path | None = Field(
        None, validation_alias=AliasChoices("MS3M_CONFIG_FILE", "CONFIG_FILE", "config_file")
    )

    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @model_validator(mode="after")
    def _tls_files_together(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together (MS3M_TLS_CERT_FILE, MS3M_TLS_KEY_FILE)")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file (mTLS) needs the server's tls_cert_file and tls_key_file")
        return self

    @field_validator("redis_host")
    @classmethod
    def _empty_is_none(cls, v: str | None) -> str | None:
        return v or None

    @property
    def journal_path(self) -> Path:
        """This instance's journal file: one per namespace and host (pod), under journal_dir."""
        import os
        import socket

        root = self.journal_dir or Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "ms3m"
        host = "".join(c if c.isalnum() or c in "-_." else "_" for c in socket.gethostname())[:64] or "host"
        return Path(root) / f"{self.namespace}-{host}.journal"

    @property
    def buffer_kind(self) -> Literal["memory", "redis"]:
        """The buffer actually used: `auto` means Redis when a host is configured."""
        if self.buffer == "auto":
            return "redis" if self.redis_host else "memory"
        return self.buffer

    def public_dict(self) -> dict:
        """Settings as JSON-safe values, secrets masked (served at /ric/v1/config)."""
        d = self.model_dump(mode="json")
        for secret in ("redis_password", "auth_tokens"):
            if getattr(self, secret) is not None:
                d[secret] = "***"
        d["buffer_kind"] = self.buffer_kind
        return d
