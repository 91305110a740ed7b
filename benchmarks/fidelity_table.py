"""Markdown table of fidelity points written by ``suites/fidelity`` (``$MOETUNE_FIDELITY_OUT``).

python3 benchmarks/fidelity_table.py DIR    # DIR holds fidelity-<model>-<topology>.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pytest_moetune.fidelity import FidelityPoint, markdown_table, tuning_names


def main(directory: Path) -> None:
    points = [
        FidelityPoint.from_dict(data)
        for path in sorted(directory.glob("fidelity-*.json"))
        for data in json.loads(path.read_text())
    ]
    print(markdown_table(points))
    print()
    for name in [*tuning_names(points), "matched"]:
        tuned = [p for p in points if name == "matched" or name in p.choices]

        def regret(p: FidelityPoint, name: str = name) -> float:
            return p.regret(p.matched_tuning if name == "matched" else name)

        worst = max(tuned, key=regret)
        within = sum(regret(p) <= 0.02 for p in tuned)
        print(
            f"- {name}: within 2% of the oracle at {within}/{len(tuned)} points; worst "
            f"{100 * regret(worst):.1f}% ({worst.model} {worst.topology} T={worst.bucket} {worst.traffic})"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
