"""Chapter 10's UTF-8 table (eq. 10.3) as tinyllm's byte-level BPE sees it: with no merges, a code
point costs exactly the bytes of its range, in the bit patterns of the table.
"""

import pytest

from tinyllm.tokenizers import BPETokenizer

pytestmark = pytest.mark.ch10

# (first code point, last code point, bytes, the fixed leading bits of the first byte)
RANGES = [(0x00, 0x7F, 1, (0b0, 1)), (0x80, 0x7FF, 2, (0b110, 3)),
          (0x800, 0xFFFF, 3, (0b1110, 4)), (0x10000, 0x10FFFF, 4, (0b11110, 5))]


@pytest.mark.parametrize("low, high, length, lead", RANGES)
def test_each_code_point_costs_the_bytes_of_its_range(low, high, length, lead):
    """Eq. 10.3: u < 2^7, 2^11, 2^16, 2^21 take 1, 2, 3, 4 byte tokens; the first byte starts with
    0, 110, 1110, 11110, every continuation byte with 10, and the x bits, read back in order, are
    u. Surrogates (0xD800-0xDFFF) are not characters and are left out."""
    tokenizer = BPETokenizer([])
    prefix, prefix_bits = lead
    for u in sorted({low, low + 1, (low + high) // 2, high - 1, high}):
        if 0xD800 <= u <= 0xDFFF:
            continue
        ids = tokenizer.encode(chr(u))
        assert len(ids) == length and all(0 <= i < 256 for i in ids)
        assert ids[0] >> (8 - prefix_bits) == prefix
        assert all(i >> 6 == 0b10 for i in ids[1:])
        payload = ids[0] & ((1 << (8 - prefix_bits)) - 1)
        for i in ids[1:]:
            payload = (payload << 6) | (i & 0b111111)
        assert payload == u
        assert tokenizer.decode(ids) == chr(u)


def test_bits_per_character_do_not_depend_on_the_cut():
    """Eq. 10.10: a text of N_c characters cut into N_t tokens gets N_t l nats in all, so
    l / (rho ln 2), rho = N_c / N_t, is the same for any tokenizer. Here a character model q gives
    each BPE token the product of its characters' probabilities; its bits per character through
    the BPE cut equal the character model's own."""
    import math
    from collections import Counter

    text = "the cat sat on the mat; the rat sat on the cat. " * 20
    tokenizer = BPETokenizer.train(text, vocab_size=256 + 30)
    counts = Counter(text)
    q = {c: n / len(text) for c, n in counts.items()}
    ids = tokenizer.encode(text)
    token_nats = [-sum(math.log(q[c]) for c in tokenizer.decode([i])) for i in ids]
    N_t, N_c = len(ids), len(text)
    assert N_t < N_c / 2                                          # the merges shortened the text
    loss_per_token = sum(token_nats) / N_t                        # l
    rho = N_c / N_t
    by_char = -sum(math.log(q[c]) for c in text) / (N_c * math.log(2))
    assert loss_per_token / (rho * math.log(2)) == pytest.approx(by_char, rel=1e-12)
    assert loss_per_token / math.log(2) > 2 * by_char             # per token it looks far worse


def test_the_replacements_of_all_merges_are_bounded_by_the_distinct_bytes():
    """Eq. 10.8's accounting: merge k replaces o_k occurrences in the W distinct words (L bytes in
    all), each replacement shortening a word by one, so sum_k o_k = L - (final length) <= L - W,
    however many merges; recounting instead reads sum_k L_k, about M L."""
    from collections import Counter

    import numpy as np

    from tinyllm.tokenizers import PRETOKENIZE

    letters = np.array(list("etaoinshrdlu"))
    rng = np.random.default_rng(0)
    text = " ".join("".join(rng.choice(letters, rng.integers(2, 9))) for _ in range(400))
    tokenizer = BPETokenizer.train(text, vocab_size=256 + 30)
    merges = len(tokenizer.merges)
    words = sorted(Counter(PRETOKENIZE.findall(text)))                # the W distinct words
    L = sum(len(w.encode("utf-8")) for w in words)
    lengths = [sum(len(BPETokenizer(tokenizer.merges[:k]).encode(w)) for w in words)
               for k in range(merges + 1)]                            # L_k, after k merges
    replaced = [lengths[k] - lengths[k + 1] for k in range(merges)]   # o_k
    assert lengths[0] == L and all(o >= 1 for o in replaced)
    assert sum(replaced) == L - lengths[-1] <= L - len(words)
    assert sum(lengths[:merges]) > 5 * sum(replaced)                  # recounting reads far more
