from .coming import ComingScreen


class TrainScreen(ComingScreen):
    AREA = "train"
    TITLE_TEXT = "Train"
    PLAN = ("  • start a detached training run that survives closing the terminal\n"
            "  • live loss, eval loss, learning rate, throughput, ETA, GPU memory and utilisation")
