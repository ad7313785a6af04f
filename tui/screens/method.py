from .coming import ComingScreen


class MethodScreen(ComingScreen):
    AREA = "method"
    TITLE_TEXT = "Method"
    PLAN = ("  • help decide between prompting, RAG, LoRA, QLoRA and full fine-tuning, with reasons\n"
            "  • the memory each method needs for the chosen model against the GPUs found")
