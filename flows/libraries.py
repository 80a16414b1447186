"""How the libraries behave in this process: set once, at an edge (the CLI, a flow, a bench script).

- MLflow's HTTP client retries 7 times with exponential backoff and a 120 s timeout by default: a tracking
  server that dies mid-training hung a run for 12.6 minutes. Here a call gives up after about 15 s of
  retries (a user's own MLFLOW_HTTP_REQUEST_* values win).
- No artifact-download progress bars, no run URLs printed to stdout (a tracking URI can carry a password),
  MLflow's INFO lines only with -v.
- Known third-party warnings that tell a user nothing they can act on are filtered by their exact text.
"""

from __future__ import annotations

import logging
import os
import warnings

MLFLOW_ENVIRONMENT = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",  # waits of 1, 2, 4 s
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",  # per request; artifacts of ~45 MB go to a local server well within it
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}

# (message regex, category): each a library's, each one a user can do nothing about
IGNORED_WARNINGS = [
    # pytorch_lightning 2.6 on torch 2.14: its own use of a deprecated torch API
    (r".*isinstance\(treespec, LeafSpec\)` is deprecated.*", Warning),
    # animeface 2.0.3 (the optional second face detector) on Pillow 13
    (r"Image.Image.getdata is deprecated", DeprecationWarning),
]


class _DropPickleAdvice(logging.Filter):
    """mlflow.pytorch warns on every pickle-format save; the format is chosen on purpose (models/training.py)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Pickle or CloudPickle" not in record.getMessage()


def configure_libraries(verbose: int = 0) -> None:
    """Idempotent. Call before MLflow is imported where possible (its log level is read at import)."""
    for key, value in MLFLOW_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    if verbose == 0:
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
            logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger("mlflow").setLevel(logging.WARNING)
    for message, category in IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    pytorch_logger = logging.getLogger("mlflow.pytorch")
    if not any(isinstance(f, _DropPickleAdvice) for f in pytorch_logger.filters):
        pytorch_logger.addFilter(_DropPickleAdvice())
