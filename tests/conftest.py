"""Shared setup for the plugin's own tests."""

from __future__ import annotations

# pytester's in-process runs restore sys.modules afterwards, so a module first imported inside one
# (torch, when `--moetune` probes the GPU for the report header) is dropped and imported again by the
# next run; torch does not survive a second import in one process (it segfaults). Importing it here
# keeps it in the snapshot that pytester restores.
import torch  # noqa: F401
