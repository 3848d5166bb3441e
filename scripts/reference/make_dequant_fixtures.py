#!/usr/bin/env python3
"""Golden values for zebra's storage-dtype conversions (tests/test_dtype.cpp, tests/test_gguf.cpp).

The oracle is independent of zebra: the `gguf` Python package (ggml's own gguf-py: quants.quantize /
quants.dequantize, numpy) for the llama.cpp block formats, numpy for fp32->fp16 and torch for fp32->bf16.

Writes into tests/fixtures/dequant/:
  manifest.json           what every file holds (see "files" below), plus the SmolLM2 checksums
  <TYPE>.blocks.bin       raw stored bytes of a few blocks of TYPE (exactly as in a GGUF file)
  <TYPE>.f32.bin          gguf-py's dequantisation of those bytes, little-endian fp32
  conv_f32.bin            fp32 inputs (specials, ties, subnormals, random) for the f16/bf16 rounding checks
  conv_f16.bin            numpy's float16 of each input (u16 bits)
  conv_bf16.bin           torch's bfloat16 of each input (u16 bits)
  smollm_<name>.f32.bin   first 256 dequantised values of a few tensors of the real SmolLM2 GGUF

Block contents: for Q4_0..Q8_0 the first blocks are gguf-py's quantisation of random normal data and the
rest are random bytes with a finite random fp16 scale (every bit pattern of qs/qh appears). gguf-py cannot
quantise K-quants, so Q4_K/Q5_K/Q6_K blocks are random bytes with finite random fp16 d/dmin; the 6-bit
packed scales then take all values.

Usage: .venv/bin/python scripts/reference/make_dequant_fixtures.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
"""
import json
import os
import sys

import numpy as np
import torch
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader
from gguf import quants
from gguf.constants import GGML_QUANT_SIZES

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "dequant")
rng = np.random.default_rng(20240611)


def random_f16(n, scale):
    # Finite, non-zero fp16 values of either sign around `scale`.
    v = (rng.standard_normal(n) * scale).astype(np.float16)
    v[v == 0] = np.float16(scale)
    return v


def random_blocks(qtype, n_blocks):
    """Random bytes for n_blocks of qtype, with the fp16 scale fields overwritten by finite values."""
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    # Byte offsets of the fp16 fields in ggml's block structs.
    f16_fields = {
        T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
        T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [type_size - 2],
    }[qtype]
    for off in f16_fields:
        raw[:, off:off + 2] = random_f16(n_blocks, 0.02).view(np.uint8).reshape(n_blocks, 2)
    return raw


def write(name, array):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(np.ascontiguousarray(array).tobytes())


def block_types(manifest):
    for qtype in [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q4_K, T.Q5_K, T.Q6_K]:
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        parts = []
        if qtype in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0):
            data = rng.standard_normal((2, 2 * block_size)).astype(np.float32)
            data[1, :block_size] = 0.0  # an all-zero block (d == 0)
            parts.append(quants.quantize(data, qtype).reshape(-1, type_size))
            parts.append(random_blocks(qtype, 4))
        else:
            parts.append(random_blocks(qtype, 4))
        blocks = np.concatenate(parts, axis=0)
        n = blocks.shape[0] * block_size
        expected = quants.dequantize(blocks.reshape(-1), qtype).astype(np.float32).reshape(-1)
        assert expected.size == n
        write(f"{qtype.name}.blocks.bin", blocks)
        write(f"{qtype.name}.f32.bin", expected)
        manifest["blocks"].append({"type": qtype.name, "ggml_type": int(qtype), "n": n,
                                   "blocks": f"{qtype.name}.blocks.bin", "expected": f"{qtype.name}.f32.bin"})
    # Plain 16-bit floats through the same path (every bit pattern class: random u16 minus nothing).
    for qtype in [T.F16, T.BF16]:
        raw = rng.integers(0, 65536, size=512, dtype=np.uint16)
        expected = quants.dequantize(raw.view(np.uint8), qtype).astype(np.float32).reshape(-1)
        write(f"{qtype.name}.blocks.bin", raw)
        write(f"{qtype.name}.f32.bin", expected)
        manifest["blocks"].append({"type": qtype.name, "ggml_type": int(qtype), "n": int(raw.size),
                                   "blocks": f"{qtype.name}.blocks.bin", "expected": f"{qtype.name}.f32.bin"})


def conversions(manifest):
    specials = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, 65504.0, 65519.99, 65520.0, 1e10, -1e10,
                         2.0 ** -14, 2.0 ** -24, 2.0 ** -25, 2.0 ** -25 * 1.0000001, 2.0 ** -26, 3 * 2.0 ** -25,
                         1e-45, -1e-45, 1.17549435e-38, 3.4028235e38, -3.4028235e38, 1.0 + 2.0 ** -11,
                         1.0 + 3 * 2.0 ** -11, 1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8, 0.1, -0.3333333],
                        dtype=np.float32)
    nans = np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FBFFFFF], dtype=np.uint32).view(np.float32)
    randoms = np.concatenate([
        rng.standard_normal(256).astype(np.float32),
        (rng.standard_normal(128) * 1e-5).astype(np.float32),   # half subnormals
        (rng.standard_normal(128) * 3e4).astype(np.float32),    # near the half range
        rng.integers(0, 2 ** 32, size=256, dtype=np.uint64).astype(np.uint32).view(np.float32),  # any bits
    ])
    x = np.concatenate([specials, nans, randoms]).astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        f16 = x.astype(np.float16).view(np.uint16)
    bf16 = torch.from_numpy(x.copy()).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    write("conv_f32.bin", x)
    write("conv_f16.bin", f16)
    write("conv_bf16.bin", bf16)
    manifest["conversions"] = {"n": int(x.size), "f32": "conv_f32.bin", "f16": "conv_f16.bin",
                               "bf16": "conv_bf16.bin",
                               "note": "NaN inputs: only NaN-ness is specified (payload bits may differ)"}


def smollm(manifest, path):
    if not path or not os.path.exists(path):
        print(f"SmolLM2 GGUF not found at {path!r}; skipping its checksums", file=sys.stderr)
        return
    reader = GGUFReader(path)
    by_name = {t.name: t for t in reader.tensors}
    out = []
    for name in ["token_embd.weight", "blk.0.ffn_down.weight", "blk.0.attn_norm.weight"]:
        t = by_name[name]
        values = quants.dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32).reshape(-1)
        v64 = values.astype(np.float64)
        fname = f"smollm_{name}.f32.bin"
        write(fname, values[:256])
        out.append({"name": name, "type": t.tensor_type.name, "numel": int(values.size),
                    "shape": [int(d) for d in reversed(t.shape.tolist())], "first256": fname,
                    "sum": float(v64.sum()), "sum_sq": float((v64 * v64).sum())})
    manifest["smollm"] = out


def main():
    os.makedirs(OUT, exist_ok=True)
    manifest = {"generator": "scripts/reference/make_dequant_fixtures.py", "blocks": []}
    block_types(manifest)
    conversions(manifest)
    default = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
    smollm(manifest, sys.argv[1] if len(sys.argv) > 1 else default)
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
