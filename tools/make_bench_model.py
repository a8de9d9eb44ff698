"""Makes a randomly initialised Llama-architecture decoder of a realistic shape for speed and memory measurements (its
outputs are meaningless): ONNX (Optimum naming, external KV I/O; external data beside it above 2 GB), optionally
TorchScript, and config.json with a character vocabulary. Also writes mixed.yaml, a 3.5-bit per-layer file.

Default shape: 16 layers, hidden 1024, 16 query / 4 KV heads of 64, MLP 2816 (about 180M parameters).
Llama-3.2-1B shape: --hidden 2048 --heads 32 --kv-heads 8 --intermediate 8192 --dtype float16
Llama-3.1-8B shape: --layers 32 --hidden 4096 --heads 32 --kv-heads 8 --head-dim 128 --intermediate 14336 --dtype float16

Run on the GPU machine:  python3 tools/make_bench_model.py --out /root/bench-model
"""
import argparse
import json
import os

import torch

import llama_export as lx


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--intermediate", type=int, default=2816)
    ap.add_argument("--max-positions", type=int, default=8192)
    ap.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    ap.add_argument("--torchscript", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    chars = [chr(0x100 + i) for i in range(256)]
    c = lx.Config(len(chars), args.hidden, args.intermediate, args.layers, args.heads, args.kv_heads, args.head_dim,
                  max_position_embeddings=args.max_positions)
    with torch.device(dev):
        model = lx.Llama(c).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                p.normal_(0, 0.02)
    if args.dtype == "float16":
        model = model.half()
    path = os.path.join(args.out, "model.onnx")
    lx.export_onnx(model, c, path)
    params = sum(p.numel() for p in model.parameters())
    if params * (2 if args.dtype == "float16" else 4) > (1 << 31) - (1 << 26):
        # gather the exporter's per-tensor files into one external data file beside model.onnx
        import onnx
        m = onnx.load(path)
        for f in os.listdir(args.out):
            if f not in ("model.onnx", "config.json"):
                os.remove(os.path.join(args.out, f))
        onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=True, location="model.onnx.data")
    if args.torchscript:
        lx.export_torchscript(model, os.path.join(args.out, "model.torchscript.pt"))
    hf = c.hf_json({"kvq_vocab": {"type": "char", "chars": chars}})
    hf["torch_dtype"] = args.dtype
    lx.write_json(os.path.join(args.out, "config.json"), hf)
    print(f"bench model: {params / 1e6:.1f}M parameters, {args.dtype} -> {args.out}")
    half = args.layers // 2
    layers = "\n".join(f"  {i}: {{nbits_key: {4 if i < half else 4}, nbits_value: {4 if i < half else 2}}}"
                       for i in range(args.layers))
    with open(os.path.join(args.out, "mixed.yaml"), "w") as f:
        f.write("# per-token scheme, 3.5 bits: K4V4 on the first half of the layers, K4V2 on the rest\n"
                "axis_key: 0\naxis_value: 0\nq_group_size: -1\nresidual_length: 0\nasym: true\n"
                "per_layer_quant: true\nper_layer_config:\n" + layers + "\n")


if __name__ == "__main__":
    main()
