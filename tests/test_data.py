"""Tests for ddjax.data: tokenizers, loaders, downloads (never the network), pipelines."""

import functools
import hashlib
import http.server
import json
import pickle
import sys
import tarfile
import threading
import zipfile

import jax
import numpy as np
import pytest

from ddjax import data, testing

# -- tokenizers --------------------------------------------------------------------------------


def test_text8_tokenizer():
    tok = data.CharTokenizer.text8()
    assert tok.vocab_size == 27
    np.testing.assert_array_equal(tok.encode("az "), [0, 25, 26])
    assert tok.normalize("Hello,  World!\n2nd") == "hello world nd"
    text = tok.normalize("To be, or not to be: that is the question.")
    ids = tok.encode(text)
    assert ids.dtype == np.int32 and ids.shape == (len(text),)
    assert tok.decode(ids) == text
    assert tok.decode(np.stack([ids, ids])) == [text, text]
    assert tok.decode([0, 27, 1], mask_char="_") == "a_b"
    with pytest.raises(ValueError, match="normalize"):
        tok.encode("Hello")
    with pytest.raises(ValueError, match="token ids"):
        tok.decode([27])
    assert data.CharTokenizer.from_config(tok.to_config()).chars == tok.chars


def test_raw_tokenizer():
    text = "Wherefore art thou, Roméo?\nDeny thy father."
    tok = data.CharTokenizer.from_text(text)
    assert tok.chars == "".join(sorted(set(text)))
    assert tok.vocab_size == len(set(text))
    ids = tok.encode(text)
    assert ids.dtype == np.int32 and ids.min() >= 0 and ids.max() < tok.vocab_size
    assert tok.decode(ids) == text
    assert tok.normalize(text) == text
    np.testing.assert_array_equal(tok.encode("é"), [tok.chars.index("é")])
    with pytest.raises(ValueError, match="'z'"):
        tok.encode("zoo")
    with pytest.raises(ValueError, match="'ü'"):
        tok.encode("ü")


def test_gpt2_tokenizer_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "tiktoken", None)  # makes `import tiktoken` fail
    with pytest.raises(ImportError, match="pip install"):
        data.gpt2_tokenizer()


def test_gpt2_tokenizer():
    pytest.importorskip("tiktoken")
    try:
        tok = data.gpt2_tokenizer()
    except Exception as err:  # noqa: BLE001 - the BPE files may need a download
        pytest.skip(f"tiktoken could not load the GPT-2 encoding offline: {err}")
    assert tok.vocab_size == 50257 and tok.eot_id == 50256
    ids = tok.encode("Hello world")
    assert ids.dtype == np.int32
    assert tok.decode(ids) == "Hello world"


# -- text corpora ------------------------------------------------------------------------------


def test_shakespeare_splits():
    d = data.load_text("shakespeare")
    tok = d.tokenizer
    assert d.vocab_size == 27 and tok.mode == "text8"
    n = len(d.train) + len(d.valid) + len(d.test)
    assert len(d.train) == round(0.9 * n) and abs(len(d.valid) - len(d.test)) <= 1
    for part in (d.train, d.valid, d.test):
        assert part.dtype == np.int32 and part.ndim == 1
        assert part.min() >= 0 and part.max() < 27
    assert tok.decode(d.train[:13]) == "first citizen"
    raw = data.load_text("shakespeare", mode="raw")
    assert raw.vocab_size == 65
    assert raw.tokenizer.decode(raw.train[:14]) == "First Citizen:"
    whole = np.concatenate([raw.train, raw.valid, raw.test])
    text = raw.tokenizer.decode(whole)
    assert len(text) == len(whole) and text.endswith(raw.tokenizer.decode(raw.test))


def test_file_corpus_and_split(tmp_path):
    f = tmp_path / "corpus.txt"
    f.write_text("abcdefghij" * 100)
    d = data.load_text("file", str(f), mode="raw")
    assert (len(d.train), len(d.valid), len(d.test)) == (900, 50, 50)
    assert d.tokenizer.decode(np.concatenate([d.train, d.valid, d.test])) == "abcdefghij" * 100
    train, valid, test = data.split_tokens(np.arange(100_000_000 // 1000), (0.9, 0.05, 0.05))
    assert (len(train), len(valid), len(test)) == (90_000, 5_000, 5_000)


def test_missing_files_name_path_and_remedy(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match="nope.txt") as err:
        data.load_text("file", str(missing))
    assert "existing" in str(err.value)
    with pytest.raises(FileNotFoundError, match="nope.txt") as err:
        data.load_text("shakespeare", str(missing))
    assert "bundled" in str(err.value) and "http" in str(err.value)
    with pytest.raises(FileNotFoundError, match="nope.txt") as err:
        data.load_text("text8", str(missing))
    assert data.TEXT8_URL in str(err.value)
    with pytest.raises(FileNotFoundError, match="disabled") as err:
        data.load_text("text8", download=False, cache=str(tmp_path / "cache"))
    assert str(tmp_path / "cache" / "text8.zip") in str(err.value)
    with pytest.raises(FileNotFoundError, match="train.bin"):
        data.load_text("tokens", str(tmp_path))
    with pytest.raises(ValueError, match="shakespeare, text8, file"):
        data.load_text("wikipedia")
    with pytest.raises(ValueError, match="text8, raw, gpt2"):
        data.load_text("shakespeare", mode="bytes")


def _fake_text8(tmp_path, n=2000):
    rng = np.random.default_rng(0)
    text = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz      "), n))
    zpath = tmp_path / "src" / "text8.zip"
    zpath.parent.mkdir()
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("text8", text)
    return text, zpath, hashlib.sha256(zpath.read_bytes()).hexdigest()


def _check_text8(d, text):
    assert d.vocab_size == 27
    assert (len(d.train), len(d.valid), len(d.test)) == (1800, 100, 100)  # 90 / 5 / 5
    assert d.tokenizer.decode(np.concatenate([d.train, d.valid, d.test])) == text


def test_text8_download_file_url(tmp_path):
    text, zpath, digest = _fake_text8(tmp_path)
    cache = tmp_path / "cache"
    d = data.load_text("text8", url=zpath.as_uri(), sha256=digest, cache=str(cache))
    _check_text8(d, text)
    assert (cache / "text8.zip").read_bytes() == zpath.read_bytes()
    assert [p.name for p in cache.iterdir()] == ["text8.zip"]  # no partial files left
    zpath.unlink()  # the cached copy is used from now on
    _check_text8(data.load_text("text8", url=zpath.as_uri(), sha256=digest, cache=str(cache)), text)
    _check_text8(data.load_text("text8", download=False, cache=str(cache)), text)
    # a local copy: the zip or the unzipped file
    _check_text8(data.load_text("text8", str(cache / "text8.zip")), text)
    raw = tmp_path / "text8"
    raw.write_text(text)
    _check_text8(data.load_text("text8", str(raw)), text)


def test_text8_download_checksum_mismatch(tmp_path):
    _, zpath, digest = _fake_text8(tmp_path)
    cache = tmp_path / "cache"
    with pytest.raises(data.ChecksumError, match="expected 0+"):
        data.load_text("text8", url=zpath.as_uri(), sha256="0" * 64, cache=str(cache))
    assert not (cache / "text8.zip").exists() and list(cache.iterdir()) == []
    # an existing file with the wrong digest is reported, not silently used
    (cache / "text8.zip").write_bytes(b"garbage")
    with pytest.raises(data.ChecksumError, match="delete it"):
        data.load_text("text8", url=zpath.as_uri(), sha256=digest, cache=str(cache))


def test_text8_download_failure_is_file_not_found(tmp_path):
    url = (tmp_path / "absent.zip").as_uri()
    with pytest.raises(FileNotFoundError, match="download") as err:
        data.load_text("text8", url=url, cache=str(tmp_path / "cache"))
    assert data.TEXT8_URL in str(err.value)


def test_text8_download_http(tmp_path):
    text, zpath, digest = _fake_text8(tmp_path)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(zpath.parent))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/text8.zip"
        d = data.load_text("text8", url=url, sha256=digest, cache=str(tmp_path / "cache"))
        _check_text8(d, text)
    finally:
        server.shutdown()
        server.server_close()


def test_text8_constants():
    assert data.TEXT8_URL == "http://mattmahoney.net/dc/text8.zip"
    assert len(data.TEXT8_ZIP_SHA256) == 64 and len(data.TEXT8_SHA256) == 64


def test_tokens_corpus(tmp_path):
    np.arange(1000, dtype=np.uint16).tofile(tmp_path / "train.bin")
    np.arange(100, dtype=np.uint16).tofile(tmp_path / "val.bin")
    d = data.load_text("tokens", str(tmp_path))
    assert len(d.train) == 1000 and len(d.valid) == 100 and d.vocab_size == 50257
    batch = next(data.sequence_batches(d.train, 16, 4, seed=0))
    assert batch.dtype == np.int32 and batch.shape == (4, 16)
    assert np.all(np.diff(batch, axis=1) == 1)


# -- images ------------------------------------------------------------------------------------


def test_digits():
    pytest.importorskip("sklearn")
    images, labels = data.digits()
    assert images.shape == (1797, 8, 8) and images.dtype == np.int32
    assert labels.shape == (1797,) and labels.dtype == np.int32
    assert set(np.unique(images)) == set(range(data.DIGITS_LEVELS))
    assert set(np.unique(labels)) == set(range(10))
    (xtr, ytr), (xte, yte) = data.train_test_split(images, labels, test_fraction=0.2, seed=0)
    assert len(xtr) + len(xte) == 1797 and len(xte) == round(0.2 * 1797)
    assert len(ytr) == len(xtr) and len(yte) == len(xte)
    (xtr2, _), (xte2, _) = data.train_test_split(images, labels, test_fraction=0.2, seed=0)
    np.testing.assert_array_equal(xtr, xtr2)
    np.testing.assert_array_equal(xte, xte2)
    (_, _), (xte3, _) = data.train_test_split(images, labels, test_fraction=0.2, seed=1)
    assert not np.array_equal(xte, xte3)
    # the split is a partition of the rows
    idx = {tuple(r) for r in np.concatenate([xtr, xte]).reshape(1797, -1)}
    assert idx == {tuple(r) for r in images.reshape(1797, -1)}


def _write_cifar_batch(path, n, seed):
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, n).tolist()
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"fake", b"data": raw, b"labels": labels}, f)
    return raw, labels


def test_cifar10_fake_batches(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    raw1, lab1 = _write_cifar_batch(root / "data_batch_1", 5, 1)
    raw2, lab2 = _write_cifar_batch(root / "data_batch_2", 3, 2)
    rawt, labt = _write_cifar_batch(root / "test_batch", 4, 3)
    for path in (root, tmp_path):  # the batches directory or its parent
        xtr, ytr, xte, yte = data.cifar10(path)
        assert xtr.shape == (8, 32, 32, 3) and xtr.dtype == np.uint8
        assert xte.shape == (4, 32, 32, 3)
        np.testing.assert_array_equal(ytr, lab1 + lab2)
        np.testing.assert_array_equal(yte, labt)
        # channel-major rows: pixel (r, c) of channel ch is data[ch * 1024 + r * 32 + c]
        assert xtr[6, 2, 5, 1] == raw2[1, 1 * 1024 + 2 * 32 + 5]
        assert xte[0, 31, 0, 2] == rawt[0, 2 * 1024 + 31 * 32]
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="cifar-10-batches-py")
    xtr2, ytr2, xte2, yte2 = data.cifar10(archive)
    np.testing.assert_array_equal(xtr2, xtr)
    np.testing.assert_array_equal(yte2, yte)
    with pytest.raises(FileNotFoundError, match="cifar-10-python.tar.gz"):
        data.cifar10(tmp_path / "missing")


# -- synthetic ---------------------------------------------------------------------------------


def test_synthetic():
    target = testing.random_target(jax.random.key(0), vocab_size=3, length=4)
    x = data.synthetic(target, 500, seed=1)
    assert x.shape == (500, 4) and x.dtype == np.int32
    assert x.min() >= 0 and x.max() < 3
    np.testing.assert_array_equal(x, data.synthetic(target, 500, seed=1))
    assert not np.array_equal(x, data.synthetic(target, 500, seed=2))


# -- pipelines ---------------------------------------------------------------------------------


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_sequence_batches_deterministic_and_epochs():
    tokens = np.arange(1003, dtype=np.int32)  # 100 windows of 10, slack 3
    a = _take(data.sequence_batches(tokens, 10, 8, seed=5), 30)
    b = _take(data.sequence_batches(tokens, 10, 8, seed=5), 30)
    c = _take(data.sequence_batches(tokens, 10, 8, seed=6), 30)
    for x, y in zip(a, b, strict=True):
        assert x.shape == (8, 10) and x.dtype == np.int32
        np.testing.assert_array_equal(x, y)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    for x in a:  # contiguous crops of the stream
        assert np.all(np.diff(x, axis=1) == 1)
    # drop_remainder: 12 batches per epoch, no window twice within an epoch
    it = data.sequence_batches(tokens, 10, 8, seed=5)
    assert it.batches_per_epoch == 12
    starts = np.concatenate([x[:, 0] for x in _take(it, 12)])
    assert len(set(starts.tolist())) == 96 and len({s % 10 for s in starts}) == 1
    # epochs are reshuffled, with a fresh offset in [0, 3]
    offsets = {int(x[0, 0]) % 10 for x in a}
    assert offsets <= {0, 1, 2, 3}
    assert not np.array_equal(a[0], a[12])


def test_sequence_batches_no_drop_covers_every_window():
    tokens = np.arange(70, dtype=np.int32)  # 7 windows, fewer than a batch
    it = data.sequence_batches(tokens, 10, 4, seed=0, drop_remainder=False)
    starts = np.concatenate([x[:, 0] for x in _take(it, 7)])  # 28 windows = 4 epochs
    for epoch in range(4):
        assert sorted(starts[7 * epoch : 7 * (epoch + 1)].tolist()) == list(range(0, 70, 10))
    with pytest.raises(ValueError, match="drop_remainder"):
        data.sequence_batches(tokens, 10, 8, seed=0)


@pytest.mark.parametrize("drop_remainder", [True, False])
def test_sequence_batches_process_sharding(drop_remainder):
    tokens = np.arange(5000, dtype=np.int32)
    count, per_process = 4, 3
    shards = [
        data.sequence_batches(
            tokens,
            16,
            per_process,
            seed=1,
            process_index=p,
            process_count=count,
            drop_remainder=drop_remainder,
        )
        for p in range(count)
    ]
    whole = data.sequence_batches(
        tokens, 16, per_process * count, seed=1, drop_remainder=drop_remainder
    )
    for _ in range(40):  # crosses epoch boundaries (312 windows, 12 per global batch)
        parts = [next(s) for s in shards]
        starts = [set(p[:, 0].tolist()) for p in parts]
        for i in range(count):
            assert len(starts[i]) == per_process
            for j in range(i):
                assert not starts[i] & starts[j]  # disjoint
        np.testing.assert_array_equal(np.concatenate(parts), next(whole))
    assert shards[0].get_state() == shards[3].get_state()


def test_sequence_batches_state_round_trip():
    tokens = np.arange(2001, dtype=np.int32)
    it = data.sequence_batches(tokens, 20, 6, seed=3)
    _take(it, 37)  # a few epochs in (16 batches per epoch)
    state = json.loads(json.dumps(it.get_state()))
    assert state["position"] == 37
    expected = _take(it, 25)
    resumed = data.sequence_batches(tokens, 20, 6, seed=3)
    resumed.set_state(state)
    for x, y in zip(expected, _take(resumed, 25), strict=True):
        np.testing.assert_array_equal(x, y)
    # another process of the same run resumes from the same state
    other = data.sequence_batches(tokens, 10, 3, seed=3, process_index=1, process_count=2)
    with pytest.raises(ValueError, match="seq_len"):
        other.set_state(state)
    with pytest.raises(ValueError, match="seed"):
        data.sequence_batches(tokens, 20, 6, seed=4).set_state(state)
    shard = data.sequence_batches(tokens, 20, 3, seed=3, process_index=1, process_count=2)
    shard.set_state(state)
    np.testing.assert_array_equal(next(shard), expected[0][3:])


def test_array_batches():
    images = np.arange(50 * 4, dtype=np.int32).reshape(50, 2, 2)
    labels = np.arange(50, dtype=np.int32) % 10
    it = data.array_batches(images, 8, seed=0, labels=labels)
    batches = _take(it, 13)  # 6 per epoch
    for b in batches:
        assert set(b) == {"x", "label"}
        assert b["x"].shape == (8, 2, 2) and b["x"].dtype == np.int32
        np.testing.assert_array_equal(b["label"], (b["x"][:, 0, 0] // 4) % 10)
    rows = np.concatenate([b["x"][:, 0, 0] // 4 for b in batches[:6]])
    assert len(set(rows.tolist())) == 48
    state = it.get_state()
    nxt = next(it)
    again = data.array_batches(images, 8, seed=0, labels=labels)
    again.set_state(state)
    np.testing.assert_array_equal(next(again)["x"], nxt["x"])
    assert set(next(data.array_batches(images, 4, seed=0))) == {"x"}
    halves = [
        next(data.array_batches(images, 4, seed=0, process_index=p, process_count=2))["x"]
        for p in range(2)
    ]
    np.testing.assert_array_equal(np.concatenate(halves), batches[0]["x"])


def test_chunk():
    x = data.chunk(np.arange(105), 10)
    assert x.shape == (10, 10) and x.dtype == np.int32
    np.testing.assert_array_equal(x[3], np.arange(30, 40))
    assert data.chunk(np.arange(105), 10, max_sequences=4).shape == (4, 10)
