"""The qemu build scans the sealed image and refuses one that still holds secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from bake import build, imagescan
from fabkit.errors import ExternalError


def _image(tmp_path: Path) -> Path:
    image = tmp_path / "fabperf-monitor-0123456789ab.qcow2"
    image.write_bytes(b"QFI\xfb")
    return image


def test_an_image_with_findings_is_removed_and_fails(tmp_path, monkeypatch) -> None:
    image = _image(tmp_path)
    finding = imagescan.Finding(list(imagescan.Kind)[0], "/etc/ssh/ssh_host_ed25519_key",
                                "private key")
    monkeypatch.setattr(build.os, "geteuid", lambda: 0)
    monkeypatch.setattr(imagescan, "scan_qcow2", lambda path, **kw: [finding])
    with pytest.raises(ExternalError, match="failed the hygiene scan") as err:
        build._hygiene_scan(image, lambda m: None)
    assert "/etc/ssh/ssh_host_ed25519_key" in str(err.value)
    assert not image.exists()


def test_a_clean_image_is_kept(tmp_path, monkeypatch) -> None:
    image = _image(tmp_path)
    seen: list[Path] = []
    monkeypatch.setattr(build.os, "geteuid", lambda: 0)
    monkeypatch.setattr(imagescan, "scan_qcow2", lambda path, **kw: seen.append(path) or [])
    build._hygiene_scan(image, lambda m: None)
    assert seen == [image] and image.exists()


def test_without_root_the_scan_is_skipped_loudly(tmp_path, monkeypatch) -> None:
    image = _image(tmp_path)
    said: list[str] = []
    monkeypatch.setattr(build.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(imagescan, "scan_qcow2", lambda path, **kw: pytest.fail("must not mount"))
    build._hygiene_scan(image, said.append)
    assert image.exists() and "hygiene scan skipped" in said[0]


def test_an_error_in_the_scan_fails_that_image_only(tmp_path, monkeypatch) -> None:
    # issue 25: a read-only mount that could not be removed raised OSError (EROFS) out of the
    # scan, an internal error that ended `bake build` before the other images were baked. It
    # is now an ExternalError naming the image, which build_targets collects per image.
    image = _image(tmp_path)

    def erofs(path, **kw):  # type: ignore[no-untyped-def]
        raise OSError(30, "Read-only file system", ".bashrc")

    monkeypatch.setattr(build.os, "geteuid", lambda: 0)
    monkeypatch.setattr(imagescan, "scan_qcow2", erofs)
    with pytest.raises(ExternalError, match="fabperf-monitor-0123456789ab.qcow2: the hygiene "
                                            "scan could not run: .*Read-only file system"):
        build._hygiene_scan(image, lambda m: None)
