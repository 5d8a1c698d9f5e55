"""The committed stubs (mcp_lockd/_gen/) are exactly what generate.sh makes from proto/."""

import filecmp
import os
import subprocess
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = os.path.dirname(HERE)  # clients/python
COMMITTED = os.path.join(PACKAGE_ROOT, "mcp_lockd", "_gen")
GENERATE = os.path.join(PACKAGE_ROOT, "generate.sh")
HINT = "mcp_lockd/_gen/ is out of date with proto/: run clients/python/generate.sh and commit the result"


def python_files(directory):
    return sorted(name for name in os.listdir(directory) if name.endswith(".py"))


class GeneratedStubsTest(unittest.TestCase):
    def test_committed_stubs_match_a_fresh_generation(self):
        with tempfile.TemporaryDirectory(prefix="mcp-lockd-pygen-") as out:
            result = subprocess.run([GENERATE, out], capture_output=True, text=True, timeout=120)
            self.assertEqual(result.returncode, 0, f"generate.sh failed:\n{result.stdout}\n{result.stderr}")
            fresh = python_files(out)
            self.assertEqual(fresh, ["__init__.py", "lock_pb2.py", "lock_pb2_grpc.py"])
            self.assertEqual(python_files(COMMITTED), fresh, HINT)
            for name in fresh:
                self.assertTrue(filecmp.cmp(os.path.join(out, name), os.path.join(COMMITTED, name), shallow=False), f"{name}: {HINT}")

    def test_the_stubs_import_relatively(self):
        with open(os.path.join(COMMITTED, "lock_pb2_grpc.py"), encoding="utf-8") as f:
            text = f.read()
        self.assertIn("from . import lock_pb2 as ", text)
        self.assertNotIn("from mcplockd", text)


if __name__ == "__main__":
    unittest.main()
