"""The whole app on one page: a model picker above four tabs, Live, Read aloud, File and Adapt.

``notebooks/app.ipynb`` shows an :class:`App`, and ``make app`` serves that notebook with Voila.
Picking another model swaps it in every tab once it has loaded; a live recording carries on, its
running session finished on the old model and continued on the new one.

Usage
-----
::

    App(prompts=read_prompts("data/text"), data=AdaptData(text_dir=Path("data/text"), noise_dir=Path("data/noise")))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import ipywidgets as w

from asrkit.adapt import AdaptData
from asrkit.audio import AudioLimits
from asrkit.config import Config
from asrkit.contracts import ASRModel
from asrkit.widgets.adapt import AdaptView
from asrkit.widgets.file_mode import FileTranscriber
from asrkit.widgets.live import LiveOptions, LiveTranscriber
from asrkit.widgets.picker import ModelPicker
from asrkit.widgets.read_aloud import ReadAloud

TITLES = ("Live", "Read aloud", "File", "Adapt")
# The page flows down to a phone's width: the tabs' titles shrink to fit, and notes keep a reading line height.
STYLE = """<style>
.asrkit-model-note .widget-html-content{line-height:1.4}
.asrkit-app .lm-TabBar-tab{min-width:0;flex:1 1 auto}
</style>"""
# Largest upload, bytes: an upload travels to the kernel as one websocket message, so this must stay
# below the server's websocket_max_message_size (voila.json); ASR_MAX_BYTES lowers it further.
MAX_UPLOAD_BYTES = 48 * 2**20


@dataclass(frozen=True)
class AppOptions:
    """Settings of the app page."""

    # the live and read-aloud tabs' streaming and redrawing
    live: LiveOptions = LiveOptions()
    # largest file the File tab accepts, bytes (also bounded by ASR_MAX_BYTES)
    max_upload_bytes: int = MAX_UPLOAD_BYTES


class App(w.VBox):
    """Model picker and the Live, Read aloud, File and Adapt tabs.

    Parameters
    ----------
    prompts : sequence of str
        Sentences the read-aloud tab offers (see :func:`~asrkit.widgets.read_aloud.read_prompts`).
    config : Config, optional
        Model, device and audio limits; from the ``ASR_*`` environment variables when not given.
    options : AppOptions
    data : AdaptData, optional
        The Adapt tab's sentence prompts, the sentences kept out of them, and augmentation noise.
    """

    def __init__(
        self,
        *,
        prompts: Sequence[str] = (),
        config: Config | None = None,
        options: AppOptions = AppOptions(),
        data: AdaptData = AdaptData(),
    ) -> None:
        config = config or Config.from_env()
        limits = config.limits
        self.picker = ModelPicker(config=config)
        model = self.picker.model
        self.live = LiveTranscriber(model, options=options.live, limits=limits)
        self.read_aloud = ReadAloud(model, prompts=prompts, options=options.live, limits=limits)
        upload_limits = AudioLimits(
            max_bytes=min(limits.max_bytes, options.max_upload_bytes), max_duration_s=limits.max_duration_s
        )
        self.files = FileTranscriber(model, limits=upload_limits)
        self.adapt = AdaptView(data=data, config=config)
        self.tabs = w.Tab(children=[self.live, self.read_aloud, self.files, self.adapt], titles=TITLES)
        self.tabs.add_class("asrkit-app")
        self.picker.on_change(self._swap)
        # an adapted model joins the menu at once, and a deleted one leaves it
        self.adapt.on_adapted(lambda _: self.picker.refresh())
        self.adapt.on_deleted(lambda _: self.picker.refresh())
        super().__init__([w.HTML(STYLE), self.picker, self.tabs], layout=w.Layout(width="100%"))

    def _swap(self, model: ASRModel) -> None:
        for tab in (self.live, self.read_aloud, self.files):
            tab.use_model(model)
