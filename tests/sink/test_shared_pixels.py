"""A result's pixels left in shared memory for the sink (sink.source_frames.SourceFrames.copy_out),
against a real ring (common.shm): copied and the slot released at once; a slot already reused, a
ring on another host or one that is not there, and a forged ref give nothing, each counted."""

from __future__ import annotations

import json
import os
import traceback

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


OTHER_USER = 65534  # nobody


def test_another_users_ring_is_said_to_be_so(ring) -> None:
    """A sink run as another user than the workers' (mode 0600 rings): the truth, not "gone". A
    real second user: the copy is asked in a child process that has become nobody (root alone
    can; forked, so it needs no file of this checkout)."""
    if os.geteuid() != 0:
        pytest.skip("only root can run a process as another user")
    ref = ring.put(np.zeros((H, W, 3), np.uint8))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: another user, then the sink's copy; its answer (or its error) down the pipe
        code = 1
        try:
            os.setgroups([])
            os.setgid(OTHER_USER)
            os.setuid(OTHER_USER)
            frames = SourceFrames(Counters())
            _, why = frames.copy_out(ref, (W, H, 3), "bgr")
            os.write(write, json.dumps([why, frames.counters.get("snapshot_pixels", "shm_denied")]).encode())
            code = 0
        except BaseException:
            os.write(write, traceback.format_exc().encode())
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as answer:
        said = answer.read()
    assert os.waitpid(pid, 0)[1] == 0, said
    assert json.loads(said) == ["shm_denied", 1]
    assert ring.free() == 1  # not released: that user cannot; its lease frees it


def test_a_real_sink_copies_the_pixels_frees_the_slot_and_frees_a_malformed_ones_too(daemons, zctx,
                                                                                     tmp_path) -> None:
    """As a worker on its host sends them: a result naming its frame's slot, which the sink copies
    out and gives back; and one naming a slot while saying its pixels are raw (two fields that
    disagree): counted malformed, and its slot given back all the same, never left to the lease."""
    import time

    import zmq

    bind = f"ipc://{tmp_path}/results"
    daemons.start("sink", "sink", "--bind", bind, "--events", str(tmp_path / "events.jsonl"),
                  "--data-dir", str(tmp_path / "data"))
    push = zctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(bind)
    image = np.random.default_rng(2).integers(0, 255, (H, W, 3), np.uint8)
    person = [wire.Detection("person", 0.9, (1.0, 1.0, 30.0, 40.0))]
    with shm.Ring("sinkpix", 2, W * H * 3, lease_s=3600.0) as ring:  # only a release frees a slot here
        good, bad = ring.put(image), ring.put(image)
        assert ring.free() == 0
        for seq, ref, enc in ((0, good, "shm"), (1, bad, "raw")):
            push.send(wire.pack(wire.Result(camera="px", seq=seq, ts_ns=seq + 1, width=W, height=H, worker="w",
                                            detections=person, image=(W, H, 3), image_enc=enc, image_shm=ref)))
        deadline = time.monotonic() + 60
        while ring.free() < 2:  # the state awaited: both slots given back by the sink
            assert time.monotonic() < deadline, "the sink never gave the slots back"
            time.sleep(0.05)
    push.close()
    assert daemons.stop("sink") == 0
    stats = daemons.stats("sink")
    assert stats["snapshot_pixels"]["shm"] == 1 and stats["malformed"]["bad_pixels"] == 1
