"""model_path.file_sha256 hashes a model once per version of the file, and a new version
(even one with the old size and mtime) is hashed again."""
import hashlib
import os

from selfextend_gguf.models.model_path import file_sha256


def test_a_file_rewritten_with_its_old_size_and_mtime_is_hashed_again(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"a" * 4096)
    first = file_sha256(path)
    assert first == hashlib.sha256(b"a" * 4096).hexdigest()
    assert file_sha256(path) == first                      # the same version: the same digest

    old = os.stat(path)
    path.write_bytes(b"b" * 4096)                          # same size
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns))  # and the old mtime
    assert os.stat(path).st_mtime_ns == old.st_mtime_ns
    assert file_sha256(path) == hashlib.sha256(b"b" * 4096).hexdigest()


def test_a_link_and_its_target_share_one_digest(tmp_path):
    target = tmp_path / "model.gguf"
    target.write_bytes(b"weights")
    link = tmp_path / "link.gguf"
    link.symlink_to(target)
    assert file_sha256(link) == file_sha256(target) == hashlib.sha256(b"weights").hexdigest()


def test_a_state_files_model_fingerprint_follows_a_rewrite_with_the_old_mtime(tiny_llama, tmp_path):
    from selfextend_gguf import _core
    from selfextend_gguf.engine.state_file import model_fingerprint
    path = tmp_path / "model.gguf"
    data = bytearray(tiny_llama.path.read_bytes())
    path.write_bytes(bytes(data))
    before = model_fingerprint(str(path))

    old = os.stat(path)
    data[_core.gguf_header_size(str(path))] ^= 0xFF        # the first byte of the first sampled weight block
    path.write_bytes(bytes(data))
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns))
    after = model_fingerprint(str(path))
    assert after["header_sha256"] == before["header_sha256"]
    assert after["weights_sample_sha256"] != before["weights_sample_sha256"]
