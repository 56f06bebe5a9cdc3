#!/usr/bin/env bash
# GPU check: 300 steps of the medium preset on CUDA in fp32, bf16 and fp16, printing chars/s and
# the final validation loss of each as JSON lines. Needs a CUDA GPU and the tiny_shakespeare corpus
# (TEXTGEN_DATA or --data-dir). Usage: bash scripts/gpu_check.sh [extra textgen train flags]
set -euo pipefail
python=${PYTHON:-python}
out=$(mktemp -d)
for precision in fp32 bf16 fp16; do
    "$python" -m textgen train --corpus tiny_shakespeare --preset medium --device cuda \
        --precision "$precision" --max-steps 300 --eval-interval 300 --checkpoint-interval 300 \
        --out "$out/$precision" "$@" >&2
    "$python" - "$out/$precision" "$precision" <<'PY'
import json, sys
records = [json.loads(line) for line in open(f"{sys.argv[1]}/metrics.jsonl")]
speeds = [r["tokens_per_s"] for r in records if "tokens_per_s" in r][1:]
final = [r for r in records if r.get("split") == "validation"][-1]
print(json.dumps({"precision": sys.argv[2], "steps": final["step"],
                  "tokens_per_s_median": sorted(speeds)[len(speeds) // 2],
                  "final_val_loss": round(final["val_loss"], 4),
                  "bits_per_char": round(final["bits_per_char"], 4)}))
PY
done
