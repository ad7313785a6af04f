from .coming import ComingScreen


class RunsScreen(ComingScreen):
    AREA = "runs"
    TITLE_TEXT = "Runs"
    PLAN = ("  • history of runs, re-attach, resume, export\n"
            "  • evaluation against prompting and retrieval baselines")
