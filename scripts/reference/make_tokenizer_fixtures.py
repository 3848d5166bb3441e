"""Golden fixtures for zebra's tokenizers (tests/fixtures/tokenizer/). Run from the repo root:

    .venv/bin/python scripts/reference/make_tokenizer_fixtures.py
    .venv/bin/python scripts/reference/make_tokenizer_fixtures.py --check-export DIR   # zebra-written HF dir

Oracles (all independent of zebra):
- smollm2_ids.json: the committed corpus (tokenizer_corpus.py) encoded by HF `tokenizers` with
  SmolLM2's real pipeline built from the GGUF vocabulary (models/SmolLM2-135M-Instruct.Q4_1.gguf):
  BPE + Sequence[Digits(individual_digits), ByteLevel] + the 17 special tokens, which is what
  SmolLM2's tokenizer.json holds and what llama.cpp's pre = "smollm" means. transformers'
  AutoTokenizer(gguf_file=...) is run too: its GGUF converter drops the Digits step (plain ByteLevel),
  so it differs on some digit strings; the script checks that those are the only differences (it
  rebuilds that exact pipeline with `tokenizers`) and lists them in the file as "transformers_gguf_diff".
- llama3_tiny/: a tiny Llama-3-style tokenizer.json trained here with `tokenizers` (Split(Llama-3 regex)
  + ByteLevel, ignore_merges, TemplateProcessing BOS) + tokenizer_config.json, and llama3_tiny_ids.json
  with `tokenizers`' ids for the corpus (with and without BOS).
- chat.json: transformers' apply_chat_template(tokenize=False) for a few conversations, with SmolLM2's
  template (from the GGUF) and the Llama-3 Instruct template, plus SmolLM2 ids of the rendered text.
- tok512_ids.json: llama2.c's encode() (re-implemented literally in llama2c_tokenizer.py) on
  ../shared/assets/models/stories260K/tok512.bin for ~60 strings, with BOS.
"""
import argparse
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from tokenizer_corpus import corpus  # noqa: E402
import llama2c_tokenizer  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer")
GGUF_DIR = os.path.join(ROOT, "models")
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
TOK512 = os.path.join(ROOT, "..", "shared", "assets", "models", "stories260K", "tok512.bin")

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def dump(name, obj):
    path = os.path.join(OUT, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=True, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def gguf_vocab():
    import gguf
    r = gguf.GGUFReader(os.path.join(GGUF_DIR, GGUF_NAME))
    f = r.fields
    strs = lambda k: [bytes(f[k].parts[i]).decode("utf-8") for i in f[k].data]
    tokens, merges = strs("tokenizer.ggml.tokens"), strs("tokenizer.ggml.merges")
    types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
    template = bytes(f["tokenizer.chat_template"].parts[-1]).decode("utf-8")
    return tokens, merges, types, template


def smollm_tokenizer(tokens, merges, types, digits=True):
    from tokenizers import Tokenizer, AddedToken, decoders, models, pre_tokenizers
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m.split(" ", 1)) for m in merges]))
    bl = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), bl]) if digits else bl
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3])
    return tok


def make_smollm(texts):
    from transformers import AutoTokenizer
    tokens, merges, types, template = gguf_vocab()
    hf = smollm_tokenizer(tokens, merges, types)
    nodigits = smollm_tokenizer(tokens, merges, types, digits=False)
    tf = AutoTokenizer.from_pretrained(GGUF_DIR, gguf_file=GGUF_NAME)
    ids, diff = [], []
    for i, t in enumerate(texts):
        a = hf.encode(t, add_special_tokens=False).ids
        b = tf(t, add_special_tokens=False)["input_ids"]
        assert b == nodigits.encode(t, add_special_tokens=False).ids, f"transformers differs beyond Digits on {t!r}"
        assert hf.decode(a, skip_special_tokens=False) == t, f"HF round trip fails on {t!r}"
        if a != b:
            diff.append(i)
        ids.append(a)
    # Without special-token parsing (zebra's parse_special=false): the text is all plain BPE.
    plain = smollm_tokenizer(tokens, merges, [1] * len(types))
    sample = [i for i, t in enumerate(texts) if "<" in t]
    ids_plain = {str(i): plain.encode(texts[i], add_special_tokens=False).ids for i in sample}
    dump("smollm2_ids.json", {"source": GGUF_NAME, "texts": texts, "ids": ids, "ids_no_special": ids_plain,
                              "transformers_gguf_diff": diff})
    return tf, template, hf


def make_llama3_tiny(texts):
    from tokenizers import Tokenizer, AddedToken, Regex, decoders, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=900, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    train = texts * 3 + ["the quick brown fox jumps over the lazy dog " * 5, "I'm sure it's fine. We'll see."]
    tok.train_from_iterator(train, trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in LLAMA3_SPECIALS])
    tok.add_tokens([AddedToken("<custom_word>", special=False, normalized=False)])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    j = json.loads(tok.to_str())
    j["model"]["ignore_merges"] = True  # as Llama-3's tokenizer.json
    d = os.path.join(OUT, "llama3_tiny")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, indent=None, separators=(",", ":"))
    cfg = {"add_bos_token": True, "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
           "chat_template": LLAMA3_TEMPLATE, "tokenizer_class": "PreTrainedTokenizerFast",
           "clean_up_tokenization_spaces": False, "model_max_length": 8192}
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=1)
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))  # reload: the file is the oracle's input
    texts2 = texts + ["<|begin_of_text|>hi<|eot_id|>", "a <custom_word> b", "<custom_word><|eot_id|>"]
    ids = [tok.encode(t, add_special_tokens=False).ids for t in texts2]
    ids_bos = [tok.encode(t, add_special_tokens=True).ids for t in texts2[:40]]
    for t, i in zip(texts2, ids):
        assert tok.decode(i, skip_special_tokens=False) == t, t
    dump("llama3_tiny_ids.json", {"texts": texts2, "ids": ids, "ids_bos": ids_bos, "vocab_size": tok.get_vocab_size()})
    return d


def make_chat(smol_tf, smol_template, smol_hf, llama_dir):
    from transformers import PreTrainedTokenizerFast
    convs = [
        [{"role": "user", "content": "Hello!"}],
        [{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "Hi there"}],
        [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"},
         {"role": "user", "content": "  And 3+3?  \n"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."},
         {"role": "assistant", "content": "Blue."}],
        [{"role": "user", "content": "Unicode: café 日本 😀\nnew line"}],
    ]
    llama = PreTrainedTokenizerFast(tokenizer_file=os.path.join(llama_dir, "tokenizer.json"),
                                    bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")
    llama.chat_template = LLAMA3_TEMPLATE
    out = {"smollm_template": smol_template, "llama3_template": LLAMA3_TEMPLATE, "cases": []}
    for conv in convs:
        for gen in (False, True):
            case = {"messages": conv, "add_generation_prompt": gen}
            if True:
                s = smol_tf.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen,
                                                chat_template=smol_template)
                case["smollm"] = s
                case["smollm_ids"] = smol_hf.encode(s, add_special_tokens=False).ids
                case["llama3"] = llama.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen)
            out["cases"].append(case)
    dump("chat.json", out)


def make_tok512():
    if not os.path.exists(TOK512):
        print("skipping tok512: asset not found")
        return
    vocab, scores = llama2c_tokenizer.load(TOK512, 512)
    texts = [
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she "
        "saw a big, red ball. She wanted to play with it, but it was too high.",
        "Lily's mom said, \"Be careful!\"", "Hello world", "hello", "a", " ", "  ", "the cat sat on the mat",
        "Tom and Sam went to the store.", "The sun was shining.", "I love you.", "What is your name?",
        "He was very happy!", "once", "ONCE UPON A TIME", "12345", "3.14", "x + y = z", "café", "naïve résumé",
        "日本語", "你好", "😀", "emoji 🎉 party", "tab\tchar", "new\nline", "two\n\nlines", "  leading", "trailing  ",
        "The little dog barked loudly at the big cat.", "They played together all day long.",
        "Mommy and Daddy", "She smiled and said thank you.", "zzzzzz", "qwertyuiop", "The end.",
        "<s>", "</s>", "<unk>", "<0x41>", "\n<s>\n", "it's", "don't", "can't stop", "Bob's toy",
        "Ünïcödé", "Привет", "ελληνικά", "a b c d e f g", "aaaaaaaaaaaaaaaa", "upon upon upon",
        "The bird flew over the tree and sang a song.", "\"Wow!\" said Ben.", "Sue had a red hat.",
        "~!@#$%^&*()_+", "\x7f\x01\x02", "end.", "Every day, the boy went to school.",
        "A big, big, big elephant.",
    ]
    ids = [llama2c_tokenizer.encode(vocab, scores, t.encode("utf-8"), bos=True) for t in texts]
    for t, i in zip(texts, ids):
        dec = b"".join(llama2c_tokenizer.decode_piece(vocab, p, c) for p, c in zip(i[:-1], i[1:]))
        assert dec == t.encode("utf-8"), (t, dec)
    dump("tok512_ids.json", {"texts": texts, "ids": ids})


def check_export(d, texts):
    """Loads a zebra-written HF dir with tokenizers and transformers; compares with the SmolLM2 oracle."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer
    with open(os.path.join(OUT, "smollm2_ids.json"), encoding="utf-8") as f:
        ref = json.load(f)
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    tf = AutoTokenizer.from_pretrained(d)
    bad = 0
    for t, want in zip(ref["texts"], ref["ids"]):
        a = tok.encode(t, add_special_tokens=False).ids
        b = tf(t, add_special_tokens=False)["input_ids"]
        if a != want or b != want:
            bad += 1
            print("MISMATCH", repr(t)[:80], a[:10], b[:10], want[:10])
    conv = [{"role": "user", "content": "Hello!"}]
    print("chat:", repr(tf.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)))
    print(f"{len(ref['texts']) - bad}/{len(ref['texts'])} strings match")
    return bad == 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check-export", help="a directory written by zebra's save_hf_tokenizer")
    args = ap.parse_args()
    texts = corpus()
    if args.check_export:
        sys.exit(0 if check_export(args.check_export, texts) else 1)
    smol_tf, template, smol_hf = make_smollm(texts)
    llama_dir = make_llama3_tiny(texts)
    make_chat(smol_tf, template, smol_hf, llama_dir)
    make_tok512()


if __name__ == "__main__":
    main()
