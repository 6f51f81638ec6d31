"""The package installs with no network: `pip install --no-index ./clients/python` into a fresh venv (no system
site-packages, so no setuptools or wheel), then imports from there."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import unittest
import zipfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def venv_with_pip_available() -> bool:
    try:
        import ensurepip  # noqa: F401
        import venv  # noqa: F401
    except ImportError:
        return False
    return True


class InstallTest(unittest.TestCase):
    def test_the_wheel_holds_the_package_and_its_metadata(self) -> None:
        sys.path.insert(0, str(PROJECT / "_build"))
        try:
            import backend
        finally:
            sys.path.remove(str(PROJECT / "_build"))
        with tempfile.TemporaryDirectory() as directory:
            names = zipfile.ZipFile(os.path.join(directory, backend.build_wheel(directory))).namelist()
        self.assertIn("compile_trigger_client/__init__.py", names)
        self.assertIn("compile_trigger_client/py.typed", names)
        self.assertIn("compile_trigger_client-0.1.0.dist-info/RECORD", names)
        self.assertFalse([name for name in names if "__pycache__" in name])

    @unittest.skipUnless(venv_with_pip_available(), "venv or ensurepip is missing (Debian: apt-get install python3-venv)")
    def test_pip_installs_it_offline_into_a_fresh_venv(self) -> None:
        with tempfile.TemporaryDirectory() as directory:
            subprocess.run([sys.executable, "-m", "venv", directory], check=True, capture_output=True)
            python = os.path.join(directory, "bin", "python")
            env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
            for isolation in ([], ["--no-build-isolation"]):
                install = subprocess.run([python, "-m", "pip", "install", "--no-index", "--force-reinstall", *isolation,
                                          str(PROJECT)], env=env, capture_output=True, text=True)
                self.assertEqual(install.returncode, 0, install.stdout + install.stderr)
            imported = subprocess.run([python, "-c", "import compile_trigger_client as c, "
                                       "compile_trigger_client.compile_trigger as m; print(c.__file__)"],
                                      cwd=directory, capture_output=True, text=True, check=True)
            self.assertIn("site-packages", imported.stdout)


if __name__ == "__main__":
    unittest.main()
