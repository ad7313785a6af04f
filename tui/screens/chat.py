from .coming import ComingScreen


class ChatScreen(ComingScreen):
    AREA = "chat"
    TITLE_TEXT = "Chat"
    PLAN = "  • chat with the fine-tuned adapter beside the base model, tokens streaming"
