"""How the package is used: with the standard library alone, and copied elsewhere."""

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # clients/python


def run_python(code, path):
    env = {**os.environ, "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, cwd=path, timeout=60)


class PackageTest(unittest.TestCase):
    def test_every_error_class_is_exported(self):
        # `from mcp_lockd.errors import *` and the package itself name every error a caller may catch.
        import mcp_lockd
        from mcp_lockd import errors

        defined = {name for name, value in vars(errors).items() if isinstance(value, type) and issubclass(value, errors.LockError)}
        self.assertEqual(defined - set(errors.__all__), set())
        self.assertEqual(defined - set(dir(mcp_lockd)), set())

    def test_file_lock_needs_only_the_standard_library(self):
        result = run_python(
            """
            import sys, tempfile
            sys.modules["grpc"] = None  # any import of grpc now fails
            sys.modules["google.protobuf"] = None
            import mcp_lockd
            with mcp_lockd.FileLock(tempfile.mkdtemp(), "r", ttl=5) as lease:
                print(lease.fencing_token)
            try:
                mcp_lockd.LockClient
            except ImportError:
                print("LockClient needs grpc")
            """,
            PACKAGE_ROOT,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.split("\n")[:2], ["1", "LockClient needs grpc"])

    def test_the_package_works_when_copied_anywhere(self):
        with tempfile.TemporaryDirectory(prefix="mcp-lockd-copy-") as elsewhere:
            shutil.copytree(os.path.join(PACKAGE_ROOT, "mcp_lockd"), os.path.join(elsewhere, "mcp_lockd"),
                            ignore=shutil.ignore_patterns("__pycache__"))
            result = run_python(
                """
                import mcp_lockd
                from mcp_lockd import LockClient, ServiceLease
                from mcp_lockd._gen import lock_pb2_grpc
                print(mcp_lockd.__file__)
                """,
                elsewhere,
            )
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertTrue(result.stdout.startswith(elsewhere), result.stdout)


if __name__ == "__main__":
    unittest.main()
