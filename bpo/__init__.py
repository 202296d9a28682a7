"""Black-box Prompt Optimization (BPO): data construction, optimizer training and evaluation."""

__version__ = "0.1.0"
