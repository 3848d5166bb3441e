"""The committed test corpus for the tokenizer golden tests (>= 220 varied strings).

Deterministic: the same list every run. make_tokenizer_fixtures.py writes it, with the oracle ids,
to tests/fixtures/tokenizer/.
"""


def corpus():
    s = [
        "", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "a", "A", "I", "Hello", "Hello world",
        "Hello, world!", "hello   world", " leading space", "trailing space ", "  two leading", "trailing two  ",
        "The quick brown fox jumps over the lazy dog.",
        "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.",
        "I'm sure they'll say it's fine, don't you think? We've seen it, I'd guess.",
        "I'M SURE THEY'LL SAY IT'S FINE, DON'T YOU THINK? WE'VE SEEN IT.",
        "rock 'n' roll", "'s 't 're 've 'm 'll 'd", "''quoted''", "\"double quotes\"", "`backticks`",
        "it’s a curly apostrophe", "“smart quotes”", "en–dash and em—dash", "ellipsis… here",
        # digits and numbers
        "0", "7", "42", "123", "1234", "12345", "1234567890", "3.14159", "1,000,000", "-273.15", "+1 (555) 012-3456",
        "2024-01-15T12:34:56Z", "v1.2.3", "0x1F600", "1e-10", "99 bottles", "abc123def", "123abc", "a1b2c3",
        "   123", "x 1", "  1", "1  ", "100%", "$19.99", "€5", "3rd 2nd 1st 4th", "π≈3.14", "٣٤٥ Arabic-Indic digits",
        "१२३ Devanagari digits", "Ⅻ roman numeral", "½ ¾ ⅓", "²³ superscripts", "12345678901234567890123456789",
        # whitespace
        "a\tb", "a\t\tb", "\t\tindented", "line1\nline2", "line1\n\nline2", "line1\r\nline2", "a \n b", "a  \n  b",
        "word     word", "     ", "\n\n\n", " \t \n", "end\n", "end \n", "\u00a0nbsp", "a\u00a0b", "thin\u2009space",
        "ideographic\u3000space", "zero\u200bwidth", "nel\u0085char", "form\ffeed", "vertical\vtab",
        "x \u0085y", "x\u0085 y", "a\u00a0 b", "a \u2028b", "a \x1cb", "a \u200bb", "a \u180eb", "a \u3000b",
        "a \u2003 b", "a\u202f\u205fb ", "a \x0bb", "a \x0cb", "a \x85\x85 b",
        # accents and Latin
        "Café naïve résumé façade Ångström", "é", "e\u0301 combining acute", "Ñandú", "Straße", "ÀÉÎÕÜ",
        "Zürich Köln München", "Œuvre", "ﬁ ligature", "Dvořák", "Łódź", "İstanbul ıi",
        # other scripts
        "你好，世界！", "这是一个测试。", "日本語のテキストとカタカナ", "ひらがな", "한국어 텍스트입니다", "Россия и Україна",
        "Привет, мир!", "Ελληνικά γράμματα", "مرحبا بالعالم", "שלום עולם", "हिन्दी भाषा", "ภาษาไทย", "ქართული",
        "Հայերեն", "ትግርኛ", "mixed English 和中文 text", "Tokyo東京Osaka大阪", "ASCII→Unicode→ASCII",
        # emoji and symbols
        "😀", "😀😁😂", "👍🏽", "🇺🇸🇫🇷", "👨‍👩‍👧‍👦", "❤️", "I ❤️ NY", "emoji at end 🎉", "🎉 at start",
        "★☆✓✗", "∀x∈ℝ: x²≥0", "→ ← ↑ ↓", "©®™", "•bullet", "§ ¶ † ‡", "¿Qué? ¡Sí!", "«guillemets»",
        "\U0001F600\U0001F601 two", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math", "\U00010348 gothic",
        # punctuation runs
        "!!!", "???", "...", "---", "***", "!?!?", "a!b?c.", "(parens) [brackets] {braces}", "<tag attr=\"v\">",
        "foo@bar.com", "https://example.com/path?q=1&r=2#frag", "C:\\Users\\name\\file.txt", "/usr/local/bin",
        "#hashtag @mention", "__init__", "snake_case_name", "camelCaseName", "PascalCase", "kebab-case-name",
        "SCREAMING_SNAKE", "a.b.c.d", "a,b;c:d", "100 / 3 = 33.33", "x += 1", "i++", "a->b", "a::b", "a && b || c",
        # code
        "def foo(x):\n    return x ** 2\n", "int main() {\n\treturn 0;\n}", "for (int i = 0; i < n; ++i) {}",
        "#include <stdio.h>", "console.log('hi');", "SELECT * FROM t WHERE id = 1;", "<div class=\"x\">hi</div>",
        "{\"key\": [1, 2, 3], \"b\": null}", "if x == 1:\n        pass", "    four spaces", "        eight spaces",
        "\tif (a) {\n\t\tb();\n\t}", "#!/usr/bin/env python3", "lambda x: x+1", "fn main() -> i32 { 0 }",
        "std::vector<int> v{1,2,3};", "$ ls -la | grep foo", "// comment", "/* block */", "# Markdown header",
        "- item one\n- item two", "| a | b |\n|---|---|", "**bold** _italic_", "> quote",
        # special tokens
        "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>user\nHi<|im_end|>\n",
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>assistant\n", "text<|im_end|>more",
        "<|im_start|><|im_end|>", "<|im_start", "im_start|>", "< |im_start| >", "<repo_name>zebra<file_sep>",
        "<filename>a.py", "<|endoftext|><|endoftext|>", "x <|endoftext|> y", "<gh_stars>100",
        # casing and words
        "antidisestablishmentarianism", "Supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis",
        "tokenization", "Tokenization", "TOKENIZATION", "un-tokenizable", "state-of-the-art", "e.g. i.e. etc.",
        "Mr. Smith went to Washington.", "U.S.A.", "A.I.", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "abababababababab",
        "the the the the", "The The", "ThE tHe", "hello\u200dworld",
        # mixed
        "She said, \"Hi!\" and left.", "Numbers: 1, 2, and 3.", "Temp: 20°C (68°F)", "Price: ¥1000 / £8 / ₹700",
        "key=value; other=42", "a\nb\tc d", "  \t mixed \t whitespace \n\t", "tab\tseparated\tvalues\t",
        "trailing newline\n\n", "\n leading newline", "multi\n\n\nblank\n\n\nlines",
    ]
    # Long and generated strings.
    s.append("pneumonoultramicroscopicsilicovolcanoconiosis" * 20)  # a very long word
    s.append("x" * 2000)
    s.append(" " * 300)
    s.append("\n" * 50)
    s.append("9" * 100)
    s.append("ab" * 500)
    s.append("😀" * 40)
    s.append("日本" * 60)
    s.append(" ".join(str(i) for i in range(0, 300, 7)))
    s.append("".join(chr(c) for c in range(0x20, 0x7F)))
    s.append("".join(chr(c) for c in range(0xA0, 0x180)))
    s.append("".join(chr(c) for c in range(0x370, 0x3D0)))
    s.append("".join(chr(c) for c in range(0x400, 0x460)))
    s.append("".join(chr(c) for c in range(0x3040, 0x30A0)))
    s.append("".join(chr(c) for c in range(0x1F300, 0x1F340)))
    for w in ["it", "the", "hello", "Zebra", "Llama"]:
        s.append(f"{w}'s {w}'S {w}'LL {w}'re")
    for n in [1, 12, 123, 1234, 12345, 123456]:
        s.append(f"value {n}.")
        s.append(f"({n})")
    for k in range(1, 6):
        s.append(" " * k + "x" + " " * k + "y")
        s.append("\t" * k + "x")
        s.append("\n" * k + "x" + "\n" * k)
    return s


if __name__ == "__main__":
    c = corpus()
    print(len(c))
