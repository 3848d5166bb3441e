#!/usr/bin/env python3
"""Small valid GGUF files written by ggml's own gguf-py writer (GGUFWriter), an implementation independent
of zebra's reader. They serve twice: as the seed corpus of fuzz/fuzz_gguf.cpp (fuzz/corpus/gguf/) and as
oracle files in tests/test_gguf.cpp (test GgufPython.*), which checks the values written here.

  small_v3.gguf      every scalar metadata type, string/int/float/bool/nested arrays, and tensors of types
                     F32 [2,3], F16 [4], BF16 [2,2], Q8_0 [2,32], Q4_0 [1,32], Q4_K [1,256] (zebra shape order)
  align64_v3.gguf    general.alignment = 64, two F32 tensors
  empty_v3.gguf      metadata only, no tensors
  quants_v3.gguf     one block each of Q4_1, Q5_0, Q5_1, Q5_K, Q6_K (random bytes, finite scales)

Usage: .venv/bin/python scripts/reference/make_gguf_seeds.py
"""
import os

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFValueType as V
from gguf import GGUFWriter
from gguf import quants

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "fuzz", "corpus", "gguf")


def finish(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def small():
    w = GGUFWriter(os.path.join(OUT, "small_v3.gguf"), "llama")
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4000000000)
    w.add_int32("t.i32", -2000000000)
    w.add_float32("t.f32", 0.5)
    w.add_uint64("t.u64", 2 ** 63 + 5)
    w.add_int64("t.i64", -(2 ** 62))
    w.add_float64("t.f64", -1.25)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "h\u00e9llo")
    w.add_array("t.strs", ["a", "bc", ""])
    w.add_key_value("t.ints", [1, -2, 3], V.ARRAY, sub_type=V.INT32)
    w.add_key_value("t.floats", [0.25, -4.0], V.ARRAY, sub_type=V.FLOAT32)
    w.add_array("t.bools", [True, False])
    w.add_array("t.nested", [[1, 2], [3]])
    w.add_tensor("f32", np.arange(6, dtype=np.float32).reshape(2, 3))
    w.add_tensor("f16", np.array([1.0, -2.0, 0.5, 65504.0], dtype=np.float16))
    bf16 = quants.quantize(np.array([[1.0, -1.5], [3.0, 0.125]], dtype=np.float32), T.BF16)
    w.add_tensor("bf16", bf16, raw_dtype=T.BF16)
    rng = np.random.default_rng(7)
    q8 = quants.quantize(rng.standard_normal((2, 32)).astype(np.float32), T.Q8_0)
    w.add_tensor("q8_0", q8, raw_dtype=T.Q8_0)
    q4 = quants.quantize(np.linspace(-1, 1, 32, dtype=np.float32).reshape(1, 32), T.Q4_0)
    w.add_tensor("q4_0", q4, raw_dtype=T.Q4_0)
    q4k = rng.integers(0, 256, size=(1, 144), dtype=np.uint8)
    q4k[0, 0:4] = np.array([0.01, 0.002], dtype=np.float16).view(np.uint8)
    w.add_tensor("q4_k", q4k, raw_dtype=T.Q4_K)
    finish(w)


def aligned():
    w = GGUFWriter(os.path.join(OUT, "align64_v3.gguf"), "llama")
    w.add_custom_alignment(64)
    w.add_tensor("a", np.array([1.0, 2.0, 3.0], dtype=np.float32))
    w.add_tensor("b", np.array([[4.0], [5.0]], dtype=np.float32))
    finish(w)


def empty():
    w = GGUFWriter(os.path.join(OUT, "empty_v3.gguf"), "llama")
    w.add_uint32("llama.block_count", 2)
    finish(w)


def quant_blocks():
    w = GGUFWriter(os.path.join(OUT, "quants_v3.gguf"), "llama")
    rng = np.random.default_rng(11)
    for qtype, size in [(T.Q4_1, 20), (T.Q5_0, 22), (T.Q5_1, 24), (T.Q5_K, 176), (T.Q6_K, 210)]:
        raw = rng.integers(0, 256, size=(1, size), dtype=np.uint8)
        scale_at = size - 2 if qtype == T.Q6_K else 0
        raw[0, scale_at:scale_at + 2] = np.array([0.01], dtype=np.float16).view(np.uint8)
        w.add_tensor(qtype.name.lower(), raw, raw_dtype=qtype)
    finish(w)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    small()
    aligned()
    empty()
    quant_blocks()
