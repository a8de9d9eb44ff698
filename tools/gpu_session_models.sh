#!/usr/bin/env bash
# Runs on the GPU machine from the repository root: trains the demo model and exports the test fixtures, then
# packs them into $OUT/models.tar. The shakespeare text travels in .gpu-data/ (git-ignored).
set -euo pipefail
export PYTHONUNBUFFERED=1
cd tools
python3 -c "import torch, onnx, onnxruntime, tokenizers, safetensors; print('torch', torch.__version__, 'onnx', onnx.__version__, 'ort', onnxruntime.__version__, 'cuda', torch.cuda.is_available())"
python3 train_demo_model.py --data ../.gpu-data/input.txt --out /tmp/models/kvq-demo-char "$@"
python3 export_test_models.py --text ../.gpu-data/input.txt --out /tmp/models/tiny
ls -laR /tmp/models
tar -C /tmp/models -cf "$OUT/models.tar" .
