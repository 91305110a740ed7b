"""Names of the dummy routing distributions, parsed and validated without torch.

Spec strings (what ``--moetune-distribution`` and ``MOETUNE_DUMMY_DISTRIBUTION`` take):

- ``balanced``: deterministic round robin, every target expert loaded equally (+-1).
- ``random``: top-k of uniform random scores, reproducible from the seed.
- ``zipf:<alpha>``: expert popularity ``p_i ~ (i + 1) ** -alpha`` with ``alpha > 0``, the hottest
  experts in the measured rank's shard.
- ``replay:<path>``: recorded top-k ids from a ``.pt`` or ``.npy`` file.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "MOETUNE_DUMMY_DISTRIBUTION"
DEFAULT = "balanced"
VALID_FORMS = ("balanced", "random", "zipf:<alpha>", "replay:<path.pt|path.npy>")
REPLAY_SUFFIXES = (".pt", ".npy")
KINDS = ("balanced", "random", "zipf", "replay")


@dataclass(frozen=True)
class Distribution:
    """A parsed distribution spec. ``alpha`` is set for ``zipf``, ``path`` for ``replay``."""

    kind: str
    alpha: float | None = None
    path: Path | None = None

    def __post_init__(self) -> None:
        """Refuse a kind that is not one of the four, or a spec string passed as a kind
        (``Distribution("zipf:1.2")``: use :func:`parse_distribution` for spec strings)."""
        if self.kind not in KINDS:
            raise _unknown(self.kind, "not a distribution kind; parse spec strings with parse_distribution")
        if (self.kind == "zipf") != (self.alpha is not None):
            raise ValueError(
                f"distribution kind {self.kind!r} with alpha={self.alpha!r}: zipf, and only zipf, has one"
            )
        if (self.kind == "replay") != (self.path is not None):
            raise ValueError(
                f"distribution kind {self.kind!r} with path={self.path!r}: replay, and only replay, has one"
            )

    @property
    def name(self) -> str:
        """The canonical spec string (round-trips through :func:`parse_distribution`)."""
        if self.kind == "zipf":
            return f"zipf:{self.alpha:g}"
        if self.kind == "replay":
            return f"replay:{self.path}"
        return self.kind

    def __str__(self) -> str:
        return self.name


def _unknown(spec: object, why: str = "") -> ValueError:
    detail = f" ({why})" if why else ""
    return ValueError(f"unknown dummy routing distribution {spec!r}{detail}; valid: {', '.join(VALID_FORMS)}")


def parse_distribution(spec: str | Distribution) -> Distribution:
    """Parse a distribution spec string; raise ``ValueError`` naming it and listing the valid forms.

    ``replay:<path>`` must name an existing ``.pt`` or ``.npy`` file; its contents are checked when
    the routing is generated (:mod:`pytest_moetune.replay`).
    """
    if isinstance(spec, Distribution):
        return spec
    if not isinstance(spec, str):
        raise _unknown(spec, "not a string")
    text = spec.strip()
    kind, sep, arg = text.partition(":")
    if kind in ("balanced", "random") and not sep:
        return Distribution(kind)
    if kind == "zipf" and sep:
        try:
            alpha = float(arg)
        except ValueError:
            raise ValueError(
                f"bad zipf alpha {arg!r} in distribution {spec!r}: expected a number > 0, e.g. 'zipf:1.2'"
            ) from None
        if not (math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"bad zipf alpha {arg!r} in distribution {spec!r}: must be finite and > 0")
        return Distribution("zipf", alpha=alpha)
    if kind == "replay" and sep:
        path = Path(arg).expanduser()
        if path.suffix not in REPLAY_SUFFIXES:
            raise ValueError(
                f"replay file {str(path)!r} in distribution {spec!r} is refused: only "
                f"{' and '.join(REPLAY_SUFFIXES)} traces are read (they load without executing code)"
            )
        if not path.is_file():
            raise ValueError(f"replay file {str(path)!r} in distribution {spec!r} does not exist")
        return Distribution("replay", path=path)
    raise _unknown(spec)


def default_distribution() -> Distribution:
    """The distribution named by ``$MOETUNE_DUMMY_DISTRIBUTION``, else ``balanced``."""
    raw = os.environ.get(ENV_VAR)
    if raw is None or not raw.strip():
        return Distribution(DEFAULT)
    try:
        return parse_distribution(raw)
    except ValueError as err:
        raise ValueError(f"${ENV_VAR}: {err}") from None
