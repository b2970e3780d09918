"""camwire's settings: one typed model, one Struct per section of camwire.toml.

A setting is declared once, as a field of its section's Struct (common.settings.model): its
type, default, units and help. The daemon's flags are generated from it, camwire.toml's
``[section]`` keys are read through it, ``camwire run`` hands its children the same values, and
each daemon is given the validated Struct (never an argparse Namespace). check-config and a
reload judge a file through the same model (common.config), so a wrong type or an unknown key
is refused at its line wherever it is met.

- ``shared``: what several sections have (the file and umask, metrics and CURVE keys, and the
  groups ``camwire run`` hands on: sampling, detector options, recording);
- one module per section: ``extractor``, ``pool`` (ventilator, classifier), ``sink``,
  ``recorder``, ``web``, ``run``;
- ``values``: how a flag's text becomes a value where common.units does not say.
"""

from __future__ import annotations

from camwire.common.settings.extractor import ExtractorSettings
from camwire.common.settings.model import Settings
from camwire.common.settings.pool import ClassifierSettings, VentilatorSettings
from camwire.common.settings.recorder import RecorderSettings
from camwire.common.settings.run import RunSettings
from camwire.common.settings.sink import SinkSettings
from camwire.common.settings.web import WebSettings

# section of camwire.toml (and command) -> its settings
SECTIONS: dict[str, type[Settings]] = {
    "extractor": ExtractorSettings, "ventilator": VentilatorSettings, "classifier": ClassifierSettings,
    "sink": SinkSettings, "recorder": RecorderSettings, "web": WebSettings, "run": RunSettings,
}
DAEMONS = ("extractor", "ventilator", "classifier", "sink", "recorder", "web")
