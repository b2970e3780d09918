"""Every daemon's /metrics, scraped during a run, says what its --stats file says at exit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import free_port, scrape, tcp, value, wait_log
from camwire.extractor.daemon import by_counter

DAEMONS = ("extractor", "ventilator", "classifier", "sink", "recorder")


def leaves(node: Any) -> float:
    if isinstance(node, dict):
        return sum(leaves(v) for v in node.values())
    return node if isinstance(node, (int, float)) and not isinstance(node, bool) else 0


def test_metrics_scraped_during_a_run_match_the_stats(daemons, sample_clip: Path, tmp_path: Path) -> None:
    ports = {name: free_port() for name in DAEMONS}
    frontend, backend, results, events, frames = tcp(), tcp(), tcp(), tcp(), tcp()
    config = tmp_path / "camwire.toml"
    config.write_text(f'[sockets]\nfrontend = "{frontend}"\nbackend = "{backend}"\nresults = "{results}"\n'
                      f'events = "{events}"\nframes = "{frames}"\n\n'
                      f'[extractor]\npublish_enc = "passthrough"\npublish_wait = 30\n\n'
                      f'[sink]\nevents = "{tmp_path / "events.jsonl"}"\ndata_dir = "{tmp_path / "data"}"\n\n'
                      f'[recorder]\ndir = "{tmp_path / "ring"}"\nsegment = 4\n\n'
                      f'[cameras.cam]\nurl = "{sample_clip}"\nevery = 2\n')
    common = ("--config", str(config), "--metrics-port")
    daemons.start("sink", "sink", *common, str(ports["sink"]))
    daemons.start("ventilator", "ventilator", *common, str(ports["ventilator"]))
    daemons.start("classifier", "classifier", *common, str(ports["classifier"]), "--detector", "covered",
                  "--name", "w1")
    daemons.start("recorder", "recorder", *common, str(ports["recorder"]))
    daemons.start("extractor", "extractor", *common, str(ports["extractor"]))

    # all of the clip has been through every daemon: the counters stand still from here on
    wait_log(daemons.tmp / "sink.log", lambda r: r["event"] == "camera ended")
    wait_log(daemons.tmp / "recorder.log", lambda r: r["event"] == "camera ended")
    scraped = {name: scrape(port) for name, port in ports.items()}
    for name in DAEMONS:
        assert daemons.stop(name) == 0
    stats = {name: daemons.stats(name) for name in DAEMONS}
    stats["extractor"] = by_counter(stats["extractor"])

    for daemon, metrics in scraped.items():  # every counter scraped is the stats file's count
        prefix = f"camwire_{daemon}_"
        for name in (n for n in metrics if n.startswith(prefix) and n.endswith("_total")):
            key = name[len(prefix):-len("_total")]
            assert value(metrics, name) == leaves(stats[daemon][key]), f"{daemon}: {name}"

    ex, vent, worker, sink, rec = (scraped[n] for n in DAEMONS)
    assert value(ex, "camwire_extractor_decoded_total", camera="cam") == 300
    assert value(ex, "camwire_extractor_sent_total", camera="cam") == 150
    assert value(ex, "camwire_extractor_published_total", camera="cam") == 300
    assert value(vent, "camwire_ventilator_completed_total", camera="cam") == 150
    assert value(worker, "camwire_classifier_processed_total", camera="cam") == 150
    assert value(sink, "camwire_sink_results_total", camera="cam") == 150
    assert value(rec, "camwire_recorder_written_total", camera="cam") == 300
    # histograms: one inference per batch, one latency per result and per event
    assert value(worker, "camwire_inference_seconds_count", detector="covered") == stats["classifier"]["batches"]
    assert value(sink, "camwire_result_latency_seconds_count", camera="cam") == 150
    detected = sum(n for t, n in stats["sink"]["events"].items() if t not in ("camera_online", "camera_offline"))
    assert detected > 0 and value(sink, "camwire_event_latency_seconds_count", camera="cam") == detected
    # gauges
    assert "camwire_ventilator_backlog" in vent and value(vent, "camwire_ventilator_workers") == 1
    assert "camwire_extractor_decode_fps" in ex
