"""Makes a randomly initialised Llama-architecture decoder of a realistic width for speed measurements (its outputs
are meaningless): ONNX (Optimum naming, external KV I/O), TorchScript and config.json with a 256-character vocabulary.
Default shape: 16 layers, hidden 1024, 16 query / 4 KV heads of 64, MLP 2816 (about 180M parameters).

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
    ap.add_argument("--intermediate", type=int, default=2816)
    ap.add_argument("--torchscript", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    chars = [chr(0x100 + i) for i in range(256)]
    c = lx.Config(len(chars), args.hidden, args.intermediate, args.layers, args.heads, args.kv_heads, 64,
                  max_position_embeddings=8192)
    model = lx.Llama(c).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                p.normal_(0, 0.02)
    lx.export_onnx(model, c, os.path.join(args.out, "model.onnx"))
    if args.torchscript:
        lx.export_torchscript(model, os.path.join(args.out, "model.torchscript.pt"))
    lx.write_json(os.path.join(args.out, "config.json"), c.hf_json({"kvq_vocab": {"type": "char", "chars": chars}}))
    params = sum(p.numel() for p in model.parameters())
    print(f"bench model: {params / 1e6:.1f}M parameters -> {args.out}")
    layers = "\n".join(f"  {i}: {{nbits_key: {8 if i < 2 else 4}, nbits_value: {4 if i < 2 else 2}}}"
                       for i in range(args.layers))
    with open(os.path.join(args.out, "mixed.yaml"), "w") as f:
        f.write("# per-token scheme; the first two layers K8V4, the rest K4V2\n"
                "axis_key: 0\naxis_value: 0\nq_group_size: -1\nresidual_length: 0\nasym: true\n"
                "per_layer_quant: true\nper_layer_config:\n" + layers + "\n")


if __name__ == "__main__":
    main()
