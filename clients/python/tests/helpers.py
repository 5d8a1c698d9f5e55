"""Shared pieces of the file-protocol tests: lease files and counters made by hand, in temp dirs."""

import json
import os
import shutil
import tempfile
import time
import unittest

from mcp_lockd import file_protocol

ISO = file_protocol.format_time


def lease_document(resource, **fields):
    """A valid version-2 lease document of `resource`, live for a minute, with `fields` over it."""
    now = time.time_ns() // 1_000_000
    document = {
        "version": 2,
        "resource": resource,
        "holder": "hand-made",
        "acquired_at": ISO(now - 60_000),
        "renewed_at": ISO(now - 60_000),
        "ttl": 30,
        "expires_at": ISO(now + 60_000),
        "fencing_token": 7,
        "pid": 4242,
        "hostname": "elsewhere",
    }
    document.update(fields)
    return document


def once_at(step, action):
    """A file_protocol._test_hook that calls action(token) the first time `step` is reached;
    `hook.fired` lists the tokens it was called with."""

    def hook(at, resource, token):
        if at == step and not hook.fired:
            hook.fired.append(token)
            action(token)

    hook.fired = []
    return hook


class LockDirTest(unittest.TestCase):
    """A fresh lock dir per test, with helpers to make its files by hand."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="mcp-lockd-py-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def write_lease(self, resource, text, mtime_ago_s=None):
        """Writes R.lock (temp + rename, so no reader sees it torn); `text` may be a dict."""
        if isinstance(text, dict):
            text = json.dumps(text)
        temp = self.path(f".{resource}.hand.tmp")
        with open(temp, "w", encoding="utf-8") as f:
            f.write(text)
        if mtime_ago_s is not None:
            then = time.time() - mtime_ago_s
            os.utime(temp, (then, then))
        os.rename(temp, self.path(f"{resource}.lock"))

    def write_expired(self, resource, token, holder="expired-holder"):
        now = time.time_ns() // 1_000_000
        self.write_lease(resource, lease_document(resource, holder=holder, fencing_token=token, expires_at=ISO(now - 1_000)))

    def make_fence_dir(self, resource, token):
        os.mkdir(self.path(f"{resource}.lock.fence"))
        open(os.path.join(self.path(f"{resource}.lock.fence"), str(token)), "w").close()

    def write_v1_fence(self, resource, token):
        with open(self.path(f"{resource}.lock.fence"), "w", encoding="utf-8") as f:
            json.dump({"version": 1, "resource": resource, "fencing_token": token}, f)

    def fence(self, resource):
        return os.listdir(self.path(f"{resource}.lock.fence"))

    def lease(self, resource):
        with open(self.path(f"{resource}.lock"), encoding="utf-8") as f:
            return json.load(f)

    def assert_no_junk(self):
        """Only lease files and counters are left: no temp file, no guard."""
        junk = [n for n in os.listdir(self.dir) if n.startswith(".") or n.endswith(".guard")]
        self.assertEqual(junk, [])
