"""Where data and caches live. Environment variables win; defaults suit a checkout beside ../shared."""

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DATA_ROOT_ENV = "XSTILTS_DATA_ROOT"
CACHE_DIR_ENV = "XSTILTS_CACHE_DIR"


def threads_per_process(processes: int, environ: dict[str, str], cpu_count: int) -> dict[str, str]:
    """OMP_NUM_THREADS for `processes` that train at once on one machine (grid steps, tuning workers): they share the
    cores (each would otherwise start a thread per core, and together they would oversubscribe the machine). A user's
    own setting wins; one process keeps torch's default."""
    if processes == 1 or "OMP_NUM_THREADS" in environ:
        return {}
    return {"OMP_NUM_THREADS": str(max(1, cpu_count // processes))}


def data_root() -> Path:
    """The bundle root holding `xtreme/download/` and `english/` (default: ../shared/data)."""
    configured = os.environ.get(DATA_ROOT_ENV)
    return Path(configured) if configured else PROJECT_ROOT.parent / "shared" / "data"


def cache_dir() -> Path:
    """Where converted models are built; outside git (default: ~/.cache/xstilts)."""
    configured = os.environ.get(CACHE_DIR_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "xstilts"
