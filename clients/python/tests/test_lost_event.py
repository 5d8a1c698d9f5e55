import threading
import time
import unittest

from mcp_lockd.lost_event import LostEvent


class LostEventTest(unittest.TestCase):
    def test_not_set_without_a_deadline_or_a_mark(self):
        event = LostEvent()
        self.assertFalse(event.is_set())
        self.assertFalse(event.wait(0.05))
        self.assertIsNone(event.reason)

    def test_counts_as_set_once_its_deadline_passes_with_nobody_setting_it(self):
        event = LostEvent()
        event._extend(time.monotonic() + 0.2)
        self.assertFalse(event.is_set())
        started = time.monotonic()
        self.assertTrue(event.wait(5))  # wakes by itself at the deadline
        waited = time.monotonic() - started
        self.assertGreaterEqual(waited, 0.15)
        self.assertLess(waited, 1.0)
        self.assertTrue(event.is_set())
        self.assertEqual(event.reason, "unconfirmed")

    def test_a_waiter_follows_a_deadline_moved_later(self):
        event = LostEvent()
        event._extend(time.monotonic() + 0.2)
        woke = []
        waiter = threading.Thread(target=lambda: woke.append((event.wait(5), time.monotonic())))
        started = time.monotonic()
        waiter.start()
        time.sleep(0.1)
        event._extend(time.monotonic() + 0.4)  # a renewal
        waiter.join(5)
        self.assertTrue(woke[0][0])
        self.assertGreaterEqual(woke[0][1] - started, 0.45)

    def test_extend_never_moves_the_deadline_earlier(self):
        event = LostEvent()
        late = time.monotonic() + 10
        event._extend(late)
        event._extend(late - 5)
        self.assertEqual(event.deadline, late)

    def test_wait_with_a_timeout_before_the_deadline_returns_false(self):
        event = LostEvent()
        event._extend(time.monotonic() + 5)
        self.assertFalse(event.wait(0.05))

    def test_the_first_reason_wins(self):
        event = LostEvent()
        self.assertTrue(event._mark("expired"))
        self.assertFalse(event._mark("closed"))
        self.assertEqual(event.reason, "expired")
        self.assertTrue(event.wait())

    def test_a_marked_event_wakes_a_waiter_at_once(self):
        event = LostEvent()
        event._extend(time.monotonic() + 30)
        threading.Timer(0.05, lambda: event._mark("expired")).start()
        started = time.monotonic()
        self.assertTrue(event.wait(5))
        self.assertLess(time.monotonic() - started, 1.0)

    def test_disarm_forgets_the_deadline(self):
        event = LostEvent()
        event._extend(time.monotonic() + 0.05)
        event._disarm()
        time.sleep(0.1)
        self.assertFalse(event.is_set())


if __name__ == "__main__":
    unittest.main()
