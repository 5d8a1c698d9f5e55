"""Unit tests of mcp_lockd that need no service: /usr/bin/python3 -m unittest discover -s tests -t . (from clients/python)."""
