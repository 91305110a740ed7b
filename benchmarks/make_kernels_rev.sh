#!/usr/bin/env bash
# Copy kernels/ at git revision REV into .ab/kernels_old (imports renamed), for same-session A/B runs
# of two kernel revisions: bash benchmarks/make_kernels_rev.sh HEAD~2, then run
# benchmarks/ab_fused_moe.py on the device with carry [".ab"].
set -euo pipefail
rev=${1:?usage: make_kernels_rev.sh REV}
cd "$(git rev-parse --show-toplevel)"
grep -qx "/.ab/" .git/info/exclude || echo "/.ab/" >> .git/info/exclude
rm -rf .ab/kernels_old && mkdir -p .ab/kernels_old
for f in $(git ls-tree --name-only "$rev" kernels/ | grep '\.py$'); do
  git show "$rev:$f" | sed 's/from kernels\./from kernels_old./g' > ".ab/kernels_old/$(basename "$f")"
done
