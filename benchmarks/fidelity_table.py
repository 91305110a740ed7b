"""Markdown table of fidelity points written by ``suites/fidelity`` (``$MOETUNE_FIDELITY_OUT``).

python3 benchmarks/fidelity_table.py DIR    # DIR holds fidelity-<model>-<topology>.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pytest_moetune.fidelity import FidelityPoint, markdown_table


def main(directory: Path) -> None:
    points = []
    for path in sorted(directory.glob("fidelity-*.json")):
        for data in json.loads(path.read_text()):
            data.pop("aware_regret", None)
            data.pop("naive_regret", None)
            points.append(FidelityPoint(**data))
    print(markdown_table(points))
    worst_aware = max(points, key=lambda p: p.aware_regret)
    worst_naive = max(points, key=lambda p: p.naive_regret)
    print(
        f"\nworst aware regret {100 * worst_aware.aware_regret:.1f}% "
        f"({worst_aware.model} {worst_aware.topology} T={worst_aware.bucket} {worst_aware.traffic}); "
        f"worst naive regret {100 * worst_naive.naive_regret:.1f}% "
        f"({worst_naive.model} {worst_naive.topology} T={worst_naive.bucket} {worst_naive.traffic})"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
