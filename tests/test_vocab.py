from captionlab.text import BOS_ID, EOS_ID, SPECIALS, UNK_ID, Vocabulary, tokenize


def test_tokenize_lowercases_and_strips_punctuation():
    assert tokenize("A Dog, running!  on the 'beach'.") == ["a", "dog", "running", "on", "the", "beach"]
    assert tokenize("the dog's ball") == ["the", "dog's", "ball"]


def test_build_respects_min_count_and_specials():
    vocab = Vocabulary.build(["a red circle", "a blue circle", "a red square"], min_count=2)
    assert vocab.words[:4] == list(SPECIALS)
    assert set(vocab.words[4:]) == {"a", "red", "circle"}


def test_encode_decode_round_trip(tmp_path):
    vocab = Vocabulary.build(["a small red circle left of a blue square"])
    ids = vocab.encode("A small red circle, left of a blue square.")
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID
    assert vocab.decode(ids[1:]) == "a small red circle left of a blue square"
    assert vocab.encode("a green circle")[2] == UNK_ID
    path = tmp_path / "vocab.json"
    vocab.save(path)
    assert Vocabulary.load(path).words == vocab.words


def test_encode_truncates_and_decode_stops_at_eos():
    vocab = Vocabulary.build(["one two three four"])
    assert len(vocab.encode("one two three four", max_len=2)) == 4
    ids = vocab.encode("one two") + vocab.encode("three")[1:]
    assert vocab.decode(ids[1:]) == "one two"
