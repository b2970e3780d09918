"""Frames through shared memory on one host (common.shm): an extractor whose ventilator is on
its host puts pixels in its ring and sends headers; every frame still gets its result; a worker
on "another host" (one that says it maps no shared memory) gets them inline from the ventilator;
nothing is left in /dev/shm after the daemons exit, or after one is killed and another starts;
frames resized for detection say the source's size."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from camwire.common import shm, wire
from camwire.common.config import ConfigError, load_config
from camwire.common.pixels import decode_frame
from conftest import Pull
from test_ventilator_daemon import EVERY, clip_passes_whole

SHM = Path(shm.DIRECTORY)


def rings_of(camera: str) -> list[str]:
    return sorted(p.name for p in SHM.glob(f"camwire-{camera}-*"))


def test_frames_go_through_shared_memory_and_every_one_gets_its_result(pipeline_factory, daemons,
                                                                        sample_clip: Path) -> None:
    p = pipeline_factory(until="shmcam")
    p.worker("worker-1", "covered")
    p.extractor("shmcam", str(sample_clip), extra=EVERY)
    sent = clip_passes_whole(p, daemons, camera="shmcam")
    extractor = daemons.stats("extractor-shmcam")["shmcam"]
    assert extractor["shm"]["used"] == sent  # tcp://127.0.0.1 is this host: the ring, every frame
    assert daemons.stop("worker-1") == 0 and daemons.stop("ventilator") == 0
    assert daemons.stats("worker-1")["processed"] == {"shmcam": sent}
    assert "shm" not in daemons.stats("worker-1")  # no slot failed to read
    assert rings_of("shmcam") == []  # the extractor unlinked its ring when it finished


def test_a_worker_on_another_host_gets_the_pixels_inline(pipeline_factory, daemons, sample_clip: Path,
                                                         monkeypatch) -> None:
    """A worker whose shared memory is not the extractor's (its host id differs: here forced with
    CAMWIRE_SHM_HOST, as a worker on another machine would say) gets each frame copied out of the
    ring by the ventilator, which gives the slot back."""
    p = pipeline_factory(until="farcam")
    monkeypatch.setenv("CAMWIRE_SHM_HOST", "elsewhere")
    p.worker("worker-far", "covered")
    monkeypatch.delenv("CAMWIRE_SHM_HOST")
    p.extractor("farcam", str(sample_clip), extra=EVERY)
    sent = clip_passes_whole(p, daemons, camera="farcam")
    assert daemons.stop("worker-far") == 0 and daemons.stop("ventilator") == 0
    assert daemons.stats("extractor-farcam")["farcam"]["shm"]["used"] == sent
    assert daemons.stats("ventilator")["shm"] == {"inlined": sent}
    assert daemons.stats("worker-far")["processed"] == {"farcam": sent}


def test_a_killed_extractors_ring_is_reclaimed_by_the_next_one(daemons, zctx, sample_clip: Path) -> None:
    """Its pool ring and, its frames resized for detection, its source ring (sink.source_frames)."""
    pull = Pull(zctx)
    daemons.start("extractor-k1", "extractor", "--camera", "killed", "--source", str(sample_clip), "--push",
                  pull.addr, "--realtime", "--detect-size", "160")
    pull.until(lambda m: isinstance(m, wire.FrameHeader) and m.shm is not None and m.source_shm is not None)
    assert len(rings_of("killed")) == 2
    daemons.procs["extractor-k1"].send_signal(signal.SIGKILL)
    assert daemons.wait("extractor-k1") == -signal.SIGKILL
    assert len(rings_of("killed")) == 2  # nobody unlinked them: their owner died
    daemons.start("extractor-k2", "extractor", "--camera", "other", "--source", str(sample_clip), "--push",
                  pull.addr, "--realtime")
    pull.until(lambda m: isinstance(m, wire.FrameHeader) and m.camera == "other")
    assert rings_of("killed") == []  # the next extractor reclaimed it at its start
    assert daemons.stop("extractor-k2") == 0
    assert rings_of("other") == []


def test_frames_resized_for_detection_say_the_sources_size(daemons, zctx, sample_clip: Path) -> None:
    pull = Pull(zctx)
    daemons.start("extractor", "extractor", "--camera", "small", "--source", str(sample_clip), "--push", pull.addr,
                  "--detect-size", "160", "--shm", "off", *EVERY)
    assert daemons.wait("extractor") == 0
    pull.until(lambda m: isinstance(m, wire.Eos))
    frames = pull.frames("small")
    assert frames and all((f.width, f.height, f.source) == (160, 90, (640, 360)) for f in frames)
    header, image = decode_frame(pull.last_frame)
    assert image.shape == (90, 160, 3) and np.asarray(image).std() > 0  # the picture, smaller


def test_no_ring_is_made_when_the_ventilator_is_on_another_host(daemons, zctx, sample_clip: Path) -> None:
    """``--shm auto`` (the default) uses shared memory only when --push cannot leave this host."""
    from camwire.extractor.daemon import shm_slots
    from camwire.common.settings import ExtractorSettings

    def slots(**kw) -> int:
        return shm_slots(ExtractorSettings(**{"camera": "c", "source": ["x"], **kw}))

    assert slots(push="tcp://10.1.2.3:5555") == 0
    assert slots(push="tcp://127.0.0.1:5555") == 8 and slots(push="ipc:///run/camwire/frontend") == 8
    assert slots(push="tcp://10.1.2.3:5555", shm="on") == 8
    assert slots(push="ipc:///x", shm="off") == 0 and slots(push="ipc:///x", enc="lz4") == 0
    assert os.environ.get("CAMWIRE_SHM_HOST") is None


@pytest.mark.parametrize("keys, line, says", [
    ("detect_size = 8", 3, "cameras.a.detect_size: a long side in pixels, 16 to 16384, not 8"),
    ('detect_size = "640"', 3, "cameras.a.detect_size: wrong type str"),
    ("weight = 0", 3, "cameras.a.weight: a share above 0 and at most 1000, not 0"),
    ("weight = -2.5", 3, "cameras.a.weight: a share above 0"),
])
def test_a_cameras_pool_keys_are_refused_at_their_line(tmp_path: Path, keys: str, line: int, says: str) -> None:
    path = tmp_path / "camwire.toml"
    path.write_text(f'[cameras.a]\nurl = "rtsp://10.0.0.5/s"\n{keys}\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.line == line and says in err.value.reason


def test_a_cameras_pool_keys_reach_the_extractor_and_the_ventilator(tmp_path: Path) -> None:
    from camwire.classifier.ventilator import weights_of
    from camwire.common.settings import ExtractorSettings
    from camwire.extractor.daemon import specs_from_config

    path = tmp_path / "camwire.toml"
    path.write_text('[cameras.a]\nurl = "rtsp://10.0.0.5/s"\ndetect_size = 416\nweight = 3\n'
                    '[cameras.b]\nurl = "rtsp://10.0.0.6/s"\n')
    cfg = load_config(path)
    specs = {s.name: s for s in specs_from_config(cfg, ExtractorSettings(push="ipc:///x"))}
    assert specs["a"].detect_size == 416 and specs["b"].detect_size is None
    assert specs["a"].shm_slots == 8  # --push ipc://: this host
    assert weights_of(cfg) == {"a": 3.0}


@pytest.fixture
def small_shm(tmp_path: Path):
    """A real 3 MB tmpfs for every daemon's rings (CAMWIRE_SHM_DIR): a full /dev/shm, as a
    container's 64 MB one is with a few 1080p cameras. Needs root (CI runs as root)."""
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where = tmp_path / "shm"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", str(where)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.mark.parametrize("resized", [False, True])
def test_a_full_shared_memory_stops_nothing(pipeline_factory, daemons, sample_clip: Path, small_shm: Path,
                                           monkeypatch, resized: bool) -> None:
    """Rings in a 3 MB tmpfs. At the source's 640x360 the pool's ring (8 BGR frames, 5.5 MB) does
    not fit: every frame goes by the socket, counted ``shm/unavailable``. Resized to 160 px for
    detection the pool's ring fits, and the source ring (16 YUV frames, 5.5 MB, more than a third
    of what is free) is not made: ``shm/source_unavailable``, snapshots at the detection size.
    Either way every frame gets its result, and nothing is left in the tmpfs."""
    monkeypatch.setenv("CAMWIRE_SHM_DIR", str(small_shm))
    camera = "resized" if resized else "full"
    p = pipeline_factory(until=camera)
    p.worker("worker-1", "covered")
    p.extractor(camera, str(sample_clip), extra=(*EVERY, *(("--detect-size", "160") if resized else ())))
    sent = clip_passes_whole(p, daemons, camera=camera)
    counted = daemons.stats(f"extractor-{camera}")[camera]["shm"]
    if resized:
        assert counted == {"used": sent, "source_unavailable": 1}
    else:
        assert counted == {"unavailable": 1}
    assert daemons.stop("worker-1") == 0 and daemons.stop("ventilator") == 0
    assert daemons.stats("worker-1")["processed"] == {camera: sent}
    assert list(small_shm.iterdir()) == []
