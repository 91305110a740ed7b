"""Markdown table of fidelity points written by ``suites/fidelity`` (``$MOETUNE_FIDELITY_OUT``).

python3 benchmarks/fidelity_table.py DIR    # DIR holds fidelity-<model>-<topology>.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pytest_moetune.fidelity import FidelityPoint, markdown_table


def main(directory: Path) -> None:
    points = [
        FidelityPoint.from_dict(data)
        for path in sorted(directory.glob("fidelity-*.json"))
        for data in json.loads(path.read_text())
    ]
    print(markdown_table(points))
    print()
    for name in points[0].choices:
        worst = max(points, key=lambda p: p.regret(name))
        within = sum(p.regret(name) <= 0.02 for p in points)
        print(
            f"- {name}: within 2% of the oracle at {within}/{len(points)} points; worst "
            f"{100 * worst.regret(name):.1f}% "
            f"({worst.model} {worst.topology} T={worst.bucket} {worst.traffic})"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
