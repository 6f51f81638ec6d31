"""The package's PEP 517 build backend, standard library only: a pure-Python wheel (or an editable one, or an sdist)
of src/compile_trigger_client, so that `pip install ./clients/python` needs no download and no build tool — not
even `wheel`, which setuptools older than 70.1 needs to build any wheel and which many interpreters lack."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "compile_trigger_client"
TAG = "py3-none-any"


def _project() -> dict[str, str]:
    """`name`, `version`, `description`, `requires-python` of pyproject.toml's [project] table."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    try:
        import tomllib
    except ImportError:  # Python 3.10: the four one-line strings are read directly
        table = text.split("[project]", 1)[1].split("\n[", 1)[0]
        return dict(re.findall(r'^([a-z-]+)\s*=\s*"([^"]*)"', table, re.M))
    return {k: v for k, v in tomllib.loads(text)["project"].items() if isinstance(v, str)}


def _names() -> tuple[str, str]:
    project = _project()
    return project["name"].replace("-", "_"), project["version"]


def _metadata() -> str:
    project = _project()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return (
        "Metadata-Version: 2.1\n"
        f"Name: {project['name']}\n"
        f"Version: {project['version']}\n"
        f"Summary: {project['description']}\n"
        "License: MIT\n"
        f"Requires-Python: {project['requires-python']}\n"
        "Description-Content-Type: text/markdown\n\n"
        f"{readme}"
    )


def _dist_info() -> str:
    name, version = _names()
    return f"{name}-{version}.dist-info"


def _package_files() -> list[tuple[str, bytes]]:
    source = ROOT / "src" / PACKAGE
    return [
        (f"{PACKAGE}/{path.relative_to(source).as_posix()}", path.read_bytes())
        for path in sorted(source.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    ]


def _write_wheel(directory: str, files: list[tuple[str, bytes]]) -> str:
    """A wheel of `files` plus its .dist-info (METADATA, WHEEL, RECORD with each file's hash)."""
    name, version = _names()
    dist_info = _dist_info()
    files = files + [
        (f"{dist_info}/METADATA", _metadata().encode()),
        (f"{dist_info}/WHEEL", f"Wheel-Version: 1.0\nGenerator: {PACKAGE}-backend\nRoot-Is-Purelib: true\nTag: {TAG}\n".encode()),
    ]
    record = io.StringIO()
    for path, data in files:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.write(f"{path},sha256={digest},{len(data)}\n")
    record.write(f"{dist_info}/RECORD,,\n")
    filename = f"{name}-{version}-{TAG}.whl"
    with zipfile.ZipFile(os.path.join(directory, filename), "w", zipfile.ZIP_DEFLATED) as wheel:
        for path, data in files + [(f"{dist_info}/RECORD", record.getvalue().encode())]:
            wheel.writestr(zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
    return filename


def get_requires_for_build_wheel(config_settings=None):  # noqa: ARG001 (PEP 517's signature)
    return []


get_requires_for_build_sdist = get_requires_for_build_wheel
get_requires_for_build_editable = get_requires_for_build_wheel


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):  # noqa: ARG001
    target = Path(metadata_directory) / _dist_info()
    target.mkdir(parents=True, exist_ok=True)
    (target / "METADATA").write_text(_metadata(), encoding="utf-8")
    return target.name


prepare_metadata_for_build_editable = prepare_metadata_for_build_wheel


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):  # noqa: ARG001
    return _write_wheel(wheel_directory, _package_files())


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):  # noqa: ARG001
    """`pip install -e`: a .pth file putting src/ on the path."""
    return _write_wheel(wheel_directory, [(f"{PACKAGE}.pth", f"{ROOT / 'src'}\n".encode())])


def build_sdist(sdist_directory, config_settings=None):  # noqa: ARG001
    name, version = _names()
    base = f"{name}-{version}"
    filename = f"{base}.tar.gz"
    with tarfile.open(os.path.join(sdist_directory, filename), "w:gz") as sdist:
        for relative in ("pyproject.toml", "README.md", "_build", "src"):
            sdist.add(ROOT / relative, arcname=f"{base}/{relative}",
                      filter=lambda info: None if "__pycache__" in info.name else info)
        metadata = _metadata().encode()
        info = tarfile.TarInfo(f"{base}/PKG-INFO")
        info.size = len(metadata)
        sdist.addfile(info, io.BytesIO(metadata))
    return filename
