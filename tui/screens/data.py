from .coming import ComingScreen


class DataScreen(ComingScreen):
    AREA = "data"
    TITLE_TEXT = "Data"
    PLAN = ("  • open JSONL / JSON / CSV / Parquet / saved datasets and detect the format\n"
            "  • point at bad rows by line, show each row through the chat template with the trained tokens\n"
            "  • token-length statistics against max length")
