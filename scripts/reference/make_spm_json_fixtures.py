"""Oracle for zebra's HF export of SentencePiece-style (llama2.c / Llama-2) tokenizers. Run from the repo root:
    .venv/bin/python scripts/reference/make_spm_json_fixtures.py [--export DIR]

DIR (default tests/fixtures/tokenizer/tok512_hf) is what zebra's save_hf_tokenizer wrote for
../shared/assets/models/stories260K/tok512.bin (e.g. `build/zebra compose --teacher stories260K.bin -o X`
then copy X/tokenizer*.json). The script
1. builds the same tokenizer independently the way transformers' LlamaConverter does (legacy layout):
   BPE(vocab, merges = transformers' generate_merges(vocab), unk "<unk>", fuse_unk, byte_fallback),
   normalizer Sequence[Prepend("▁"), Replace(" ", "▁")], no pre-tokenizer, decoder
   Sequence[Replace("▁", " "), ByteFallback, Fuse, Strip(" ", 1, 0)], <unk>/<s>/</s> special added tokens,
   BOS TemplateProcessing, and checks that zebra's tokenizer.json serialises to the same JSON;
2. loads zebra's tokenizer.json with HF `tokenizers` (Tokenizer.from_file) and writes
   tests/fixtures/tokenizer/tok512_hf_ids.json: for every string of tok512_ids.json, HF's ids
   (add_special_tokens=True, so with <s>; special tokens in the text are parsed, as HF always does),
   whether the string holds a special token's text, and HF's decode of the ids without BOS;
3. checks those ids against tok512_ids.json (llama2.c's encode()) for the strings without special text.
"""
import argparse
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer")
TOK512 = os.path.join(ROOT, "..", "shared", "assets", "models", "stories260K", "tok512.bin")
SPACE = "\u2581"


def load_tok512(path, n=512):
    data = open(path, "rb").read()
    pos, pieces = 4, []
    for _ in range(n):
        score, length = struct.unpack_from("<fi", data, pos)
        pieces.append((data[pos + 8:pos + 8 + length].decode("utf-8"), score))
        pos += 8 + length
    return pieces


def reference_tokenizer(pieces):
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, processors
    from tokenizers.models import BPE
    from transformers.tokenization_utils_base import generate_merges

    # SentencePiece names: llama2.c writes "\n<s>\n"/"\n</s>\n" for ids 1/2 and " " for "▁".
    names = ["<unk>", "<s>", "</s>"] + [p.replace(" ", SPACE) if not p.startswith("<0x") else p
                                        for p, _ in pieces[3:]]
    vocab = {name: i for i, name in enumerate(names)}
    assert len(vocab) == len(names)
    merges = generate_merges(vocab)  # SentencePieceExtractor's rule: by merged piece id, then left length
    tok = Tokenizer(BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True, dropout=None))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend(SPACE), normalizers.Replace(" ", SPACE)])
    tok.decoder = decoders.Sequence([decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(content=" ", left=1)])
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in ["<unk>", "<s>", "</s>"]])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s>:1 $B:1",
                                                       special_tokens=[("<s>", 1)])
    return tok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--export", default=os.path.join(OUT, "tok512_hf"))
    args = ap.parse_args()
    from tokenizers import Tokenizer

    ref = json.loads(reference_tokenizer(load_tok512(TOK512)).to_str())
    path = os.path.join(args.export, "tokenizer.json")
    zebra = json.load(open(path, encoding="utf-8"))
    # Compare what HF itself serialises for zebra's file (fills defaults the same way).
    zebra_hf = json.loads(Tokenizer.from_file(path).to_str())
    for key in ["added_tokens", "normalizer", "pre_tokenizer", "post_processor", "decoder", "model"]:
        if zebra_hf[key] != ref[key]:
            sys.exit(f"{path}: '{key}' differs from the LlamaConverter-style reference")
        if zebra[key] != ref[key]:
            print(f"note: {key} as written differs textually but deserialises identically")
    assert list(zebra["model"]["vocab"].values()) == list(range(512)), "vocab must be in id order"
    cfg = json.load(open(os.path.join(args.export, "tokenizer_config.json"), encoding="utf-8"))
    assert cfg["add_bos_token"] is True and cfg["bos_token"] == "<s>" and cfg["eos_token"] == "</s>"
    assert cfg["unk_token"] == "<unk>"

    hf = Tokenizer.from_file(path)
    golden = json.load(open(os.path.join(OUT, "tok512_ids.json"), encoding="utf-8"))
    out = {"texts": [], "ids": [], "has_special": [], "decoded": []}
    mismatches = 0
    for text, want in zip(golden["texts"], golden["ids"]):
        ids = hf.encode(text, add_special_tokens=True).ids
        special = any(s in text for s in ["<unk>", "<s>", "</s>"])
        out["texts"].append(text)
        out["ids"].append(ids)
        out["has_special"].append(special)
        out["decoded"].append(hf.decode(ids[1:], skip_special_tokens=False))
        if not special and ids != want:
            mismatches += 1
            print(f"HF differs from llama2.c on {text!r}: {ids} vs {want}")
    if mismatches:
        sys.exit(f"{mismatches} strings differ between HF tokenizers and llama2.c")
    dst = os.path.join(OUT, "tok512_hf_ids.json")
    with open(dst, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=True, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {dst} ({os.path.getsize(dst)} bytes); HF == llama2.c on all "
          f"{sum(not s for s in out['has_special'])} strings without special-token text")


if __name__ == "__main__":
    main()
