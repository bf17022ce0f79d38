"""Service settings: command-line flags override ``ADASERVE_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the service can be told, with its defaults (the embedded single-node setup)."""

    model_config = SettingsConfigDict(env_prefix="ADASERVE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    data_dir: Path = Path("./adaserve-data")
    max_body_bytes: int = Field(
        64 << 20,
        ge=1,
        description="largest request body: a JSON one, or a compressed one (a stream's too) "
        "once decompressed",
    )
    max_rows_per_batch: int = Field(100_000, ge=1)
    max_nnz_per_row: int = Field(100_000, ge=1)
    max_stream_line_bytes: int = Field(1 << 20, ge=16)
    memory_budget_bytes: int = Field(
        4 << 30, ge=1, description="state bytes allowed across all models"
    )
    max_models: int = Field(1_000, ge=1)
    stream_batch_rows: int = Field(10_000, ge=1, description="rows learned per stream batch")
    stream_progress_rows: int = Field(100_000, ge=1, description="rows between progress lines")
    max_watches: int = Field(16, ge=0, description="watched coordinates per model at most")
    watch_every_rows: int = Field(
        1_000, ge=1, description="a new model's rows between samples of its watched coordinates"
    )
    watch_samples: int = Field(
        2_000, ge=2, description="samples of the watched coordinates kept per model (a ring)"
    )
    warm_kernels: bool = Field(True, description="compile every optimizer's kernels at start-up")
    tokens: str = Field("", description="comma-separated role:token pairs (read, write, admin)")
    tokens_file: Path | None = Field(None, description="one 'role token' per line")
    insecure: bool = Field(False, description="allow a non-loopback bind without tokens")
    allowed_origins: str = Field(
        "",
        description="comma-separated scheme://host[:port] origins whose web pages may call the "
        "API besides the service's own (service/websafety.py)",
    )
    ray_address: str | None = Field(
        None,
        description="serve on this Ray cluster (an address, or 'auto' as in ray.init) instead "
        "of in this process: each model owned by an actor (service/cluster); data_dir must be "
        "reachable by every node",
    )
    replica_refresh_seconds: float = Field(
        1.0, gt=0, description="on a cluster: a read replica catches up from the files this often"
    )
    replica_max_rows_behind: int = Field(
        10_000,
        ge=2,
        description="on a cluster: a read replica answers predictions only while it misses at "
        "most this many acknowledged rows; it catches up at once when half as many arrive",
    )
    fsync: Literal["always", "interval", "off"] = Field(
        "always",
        description="always: fsync the log before each acknowledgement; interval: every "
        "fsync_interval_ms (a crash may lose that window); off: for benchmarks",
    )
    fsync_interval_ms: int = Field(100, ge=1)
    snapshot_every_rows: int = Field(1_000_000, ge=1, description="snapshot after this many rows")
    snapshot_every_seconds: float = Field(
        300.0, gt=0, description="snapshot a changed model this often"
    )
    # The model engine (service/engine): its thread pools and how its writers group work.
    writer_threads: int = Field(
        64, ge=1, description="threads draining models' mailboxes (models writing at once)"
    )
    log_writer_threads: int = Field(
        8, ge=1, description="threads writing large groups' log records while they are learned"
    )
    # Scoring costs 3-150 ns per non-zero (exact Adam catch-up the most): at most ~150 µs.
    inline_read_size: int = Field(
        1_024, ge=0, description="predictions of at most this many rows + non-zeros run on the loop"
    )
    overlap_log_nnz: int = Field(
        16_384, ge=0, description="groups of this many non-zeros are logged while learned"
    )
    group_max_nnz: int = Field(
        1 << 21, ge=1, description="non-zeros at most in a group of batches logged together"
    )
    max_in_flight: int = Field(
        4, ge=1, description="groups learned ahead of their log write at most"
    )
