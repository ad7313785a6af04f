"""Snapshots of the home screen and help. The demo model cache is made first so the model line
is the same on every machine."""

from tui.app import TunedeckApp


async def _settle(pilot):
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def test_home_80x24(snap_compare, demo_model_dir):
    assert snap_compare(TunedeckApp(), terminal_size=(80, 24), run_before=_settle)


def test_home_160x48(snap_compare, demo_model_dir):
    assert snap_compare(TunedeckApp(), terminal_size=(160, 48), run_before=_settle)


def test_help_80x24(snap_compare, demo_model_dir):
    assert snap_compare(TunedeckApp(), terminal_size=(80, 24), press=["question_mark"], run_before=_settle)


def test_light_and_high_contrast_themes(snap_compare, demo_model_dir):
    async def high_contrast(pilot):
        pilot.app.theme = "tunedeck-high-contrast"
        await _settle(pilot)

    assert snap_compare(TunedeckApp(), terminal_size=(100, 30), run_before=high_contrast)
