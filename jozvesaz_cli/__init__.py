"""jozvesaz: batch speech transcriber for lectures, classes and meetings."""

__version__ = "0.1.0"
