"""Independent oracle for llama2.c's tokenizer (run.c: build_tokenizer/encode/decode), written from the
published C code's semantics, kept deliberately literal (quadratic rescans, no priority queue).

    vocab, scores = load("tok512.bin", 512)
    ids = encode(vocab, scores, "hello", bos=True, eos=False)
"""
import struct


def load(path, vocab_size):
    with open(path, "rb") as f:
        data = f.read()
    (max_len,) = struct.unpack_from("<i", data, 0)
    pos = 4
    vocab, scores = [], []
    for _ in range(vocab_size):
        (score,) = struct.unpack_from("<f", data, pos)
        (n,) = struct.unpack_from("<i", data, pos + 4)
        pos += 8
        vocab.append(data[pos:pos + n])
        pos += n
        scores.append(score)
    return vocab, scores


def str_lookup(vocab, s):
    # run.c uses bsearch over the sorted vocabulary; with no duplicate pieces that is "the id of s".
    try:
        return vocab.index(s)
    except ValueError:
        return -1


def encode(vocab, scores, text: bytes, bos=True, eos=False):
    tokens = []
    if bos:
        tokens.append(1)
    if len(text) > 0:  # add_dummy_prefix
        tokens.append(str_lookup(vocab, b" "))
    buf = b""
    for i, c in enumerate(text):
        if (c & 0xC0) != 0x80:
            buf = b""
        buf += bytes([c])
        nxt = text[i + 1] if i + 1 < len(text) else 0
        if (nxt & 0xC0) == 0x80 and len(buf) < 4:
            continue
        tid = str_lookup(vocab, buf)
        if tid != -1:
            tokens.append(tid)
        else:
            for b in buf:  # byte fallback: <0x00> is token 3
                tokens.append(b + 3)
        buf = b""
    while True:
        best_score, best_id, best_idx = -1e10, -1, -1
        for i in range(len(tokens) - 1):
            tid = str_lookup(vocab, vocab[tokens[i]] + vocab[tokens[i + 1]])
            # float32 scores compared as C floats; Python floats hold them exactly.
            if tid != -1 and scores[tid] > best_score:
                best_score, best_id, best_idx = scores[tid], tid, i
        if best_idx == -1:
            break
        tokens[best_idx] = best_id
        del tokens[best_idx + 1]
    if eos:
        tokens.append(2)
    return tokens


def decode_piece(vocab, prev_token, token):
    piece = vocab[token]
    if prev_token == 1 and piece[:1] == b" ":
        piece = piece[1:]
    if len(piece) == 6 and piece.startswith(b"<0x") and piece.endswith(b">"):
        try:
            return bytes([int(piece[3:5], 16)])
        except ValueError:
            pass
    return piece
