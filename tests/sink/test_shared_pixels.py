"""A result's pixels left in shared memory for the sink (sink.source_frames.SourceFrames.copy_out),
against a real ring (common.shm): copied and the slot released at once; a slot already reused, a
ring on another host or one that is not there, and a forged ref give nothing, each counted."""

from __future__ import annotations

import numpy as np
import pytest

from camwire.common import shm, wire
from camwire.common.counters import Counters
from camwire.sink.source_frames import SourceFrames

W, H = 64, 48


@pytest.fixture
def ring():
    with shm.Ring("sharedpix", 2, W * H * 3) as r:
        yield r


def test_the_pixels_are_copied_and_the_slot_freed(ring) -> None:
    image = np.random.default_rng(1).integers(0, 255, (H, W, 3), np.uint8)
    ref = ring.put(image)
    assert ring.free() == 1  # the worker left it held
    frames = SourceFrames(Counters())
    data, why = frames.copy_out(ref, (W, H, 3), "bgr")
    assert why == "shm" and data == image.tobytes()
    assert ring.free() == 2  # released by the sink
    assert frames.counters.get("snapshot_pixels", "shm") == 1
    frames.close()


def test_a_reused_slot_a_far_ring_and_a_forged_ref_give_nothing(ring) -> None:
    frames, image = SourceFrames(Counters()), np.zeros((H, W, 3), np.uint8)
    old = ring.put(image)
    ring.release(old)
    ring.put(image)
    newer = ring.put(image)  # round the ring: the old slot holds a newer frame
    assert newer.slot == old.slot
    assert frames.copy_out(old, (W, H, 3), "bgr") == (None, "shm_gone")
    far = wire.ShmRef(host="another-host", ring=old.ring, slot=0, gen=1)
    assert frames.copy_out(far, (W, H, 3), "bgr") == (None, "shm_elsewhere")
    gone = wire.ShmRef(host=old.host, ring="camwire-nosuch-1-abc", slot=0, gen=1)
    assert frames.copy_out(gone, (W, H, 3), "bgr") == (None, "shm_gone")
    assert frames.copy_out(newer, (W * 2, H, 3), "bgr") == (None, "bad_slot")  # more than the slot holds
    assert frames.counters.get("snapshot_pixels", "shm_gone") == 2
    assert frames.counters.get("snapshot_pixels", "shm_elsewhere") == 1
    assert frames.counters.get("malformed", "bad_slot") == 1
    frames.close()
