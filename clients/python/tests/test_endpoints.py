"""parse_addresses: the address list syntax, the same as the TypeScript client's (src/client/address-list.ts)."""

import unittest

from mcp_lockd.endpoints import parse_addresses
from mcp_lockd.errors import InvalidArgumentError


class ParseAddressesTest(unittest.TestCase):
    def test_one_address_or_several_replicas(self):
        self.assertEqual(parse_addresses("127.0.0.1:50051"), ["127.0.0.1:50051"])
        self.assertEqual(parse_addresses(" a:1 , [::1]:2,unix:/run/x.sock "), ["a:1", "[::1]:2", "unix:/run/x.sock"])
        self.assertEqual(parse_addresses("dns:lockd.internal:443"), ["dns:lockd.internal:443"])

    def test_grpc_list_targets_stay_whole(self):
        self.assertEqual(parse_addresses("ipv4:127.0.0.1:1,127.0.0.1:2"), ["ipv4:127.0.0.1:1,127.0.0.1:2"])

    def test_bad_lists_name_the_entry(self):
        for text, message in [
            ("", "address 1 of 1 is empty"),
            ("a:1,", "address 2 of 2 is empty"),
            ("a:1,,b:2", "address 2 of 3 is empty"),
            ("a:1,a:1", "'a:1' is listed twice"),
            ("a:1,nohost", "'nohost': expected HOST:PORT"),
            ("a:1\n", None),
        ]:
            if message is None:
                self.assertEqual(parse_addresses(text), ["a:1"])  # surrounding whitespace is trimmed
                continue
            with self.assertRaises(InvalidArgumentError, msg=text) as caught:
                parse_addresses(text)
            self.assertIn(message, str(caught.exception))
            self.assertEqual(caught.exception.field, "address")

    def test_host_port_is_matched_whole(self):
        for text in ("a:1x", "a:123456", "http://a:1", "a b:1"):
            with self.assertRaises(InvalidArgumentError, msg=text):
                parse_addresses(text)


if __name__ == "__main__":
    unittest.main()
