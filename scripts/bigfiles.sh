#!/usr/bin/env bash
# Fails when git tracks a file over MAX_BYTES (default 1 MiB) outside a
# testdata/ directory: binaries, logs and dumps belong in .gitignore, not in
# history. Called by `make lint`.
set -euo pipefail
MAX_BYTES=${MAX_BYTES:-1048576}
cd "$(git rev-parse --show-toplevel)"
bad=0
while IFS= read -r -d '' f; do
  case "/$f" in */testdata/*) continue ;; esac
  [[ -f $f ]] || continue # deleted in the work tree, not yet committed
  size=$(stat -c %s -- "$f")
  if ((size > MAX_BYTES)); then
    echo "bigfiles: $f is $size bytes (limit $MAX_BYTES outside testdata/): remove it from git or move it under testdata/" >&2
    bad=1
  fi
done < <(git ls-files -z)
exit $bad
